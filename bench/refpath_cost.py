"""CPU cost of the Python datapath per forwarded frame, without system calls: memory ports, one L2 flow.

    .venv/bin/python bench/refpath_cost.py [--frames 4096] [--rounds 15] [--datapaths python,c]
    sudo .venv/bin/python bench/refpath_cost.py --io

--io measures instead what an afpacket port's I/O costs the Python datapath per frame (below).

No namespaces and no root. One datapath with two memory ports, and the flow the L2 stage installs between two
hosts on access ports (in_port, VLAN, source and destination MAC -> OUTPUT to the other port). Each round injects
--frames frames on port 0 and times dp.run() until the port is empty; taking the outputs from port 1 is outside
the timer. The timer is the thread's CPU time, not the wall clock, so that other work on a shared machine
disturbs it less. The figure is the median of --rounds rounds, in nanoseconds per frame, and the rate one core
would reach if nothing but run() cost anything (on real ports add a recvmsg and a sendmsg per frame:
bench/pps.py).

Traffic:
    udp 256 flows      bench/pps.py's 60-byte frames (64 on the wire), UDP source ports walking through 256 values
    tcp, every frame new  60-byte TCP segments of 16 connections whose sequence numbers change in every frame,
                       so no two frames have the same bytes (real traffic: nothing can be remembered by content)
    tcp 1514 bytes     full-size TCP segments, the same way

--io (root): a veth pair in a throwaway namespace (psw-{PSW_BENCH_ID}cost), the far end with an address, so that
the frames, addressed to it, go up its IPv4 and UDP stack as h2's do in bench/pps.py. Rows: reading bench/pps.py's
frames from the RX ring (refpath/io.py), reading them with one recvmsg() and PACKET_AUXDATA each (what refpath/io.py
did before it read the ring), sending them with one sendmsg() each (AfPacketIO.transmit), and, for reference, with
one sendmmsg() per 64 through ctypes (what C does; Python's socket module has no sendmmsg). Thread CPU time per
frame, which includes the kernel's work done in the call: for sending, the far end's whole receive path.

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pyswitch import actions as A, refpath  # noqa: E402
from pyswitch.pipeline.l2 import L2_MATCH, L2_PRIORITY  # noqa: E402
from pyswitch.refpath.csum import csum  # noqa: E402

H1_MAC, H2_MAC = bytes.fromhex("020000000011"), bytes.fromhex("020000000012")
H1_IP, H2_IP = bytes([198, 51, 100, 11]), bytes([198, 51, 100, 12])
IN_PORT, OUT_PORT = 0, 1
NOW_MS = 1000                               # one clock for every run: recency updates cost what they cost


def ipv4(proto: int, payload: bytes) -> bytes:
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0, H1_IP, H2_IP))
    header[10:12] = struct.pack("!H", csum(bytes(header)))
    return bytes(header) + payload


def ethernet(packet: bytes) -> bytes:
    frame = H2_MAC + H1_MAC + b"\x08\x00" + packet
    return frame + bytes(max(0, 60 - len(frame)))


def udp_frames(n: int, flows: int = 256) -> list[bytes]:
    """What bench/pps.py's trafgen sends: 18 bytes of payload, UDP checksum 0."""
    return [ethernet(ipv4(17, struct.pack("!HHHH", 0x1000 + i % flows, 9, 26, 0) + bytes(18))) for i in range(n)]


def tcp_frames(n: int, size: int, conns: int = 16) -> list[bytes]:
    """ACK segments of `conns` connections, each frame carrying a new sequence number (and so new bytes)."""
    frames = []
    payload = bytes(max(0, size - 14 - 20 - 20))
    for i in range(n):
        seq = 1000 + (i // conns) * max(1, len(payload))
        tcp = struct.pack("!HHIIBBHHH", 40000 + i % conns, 80, seq & 0xFFFFFFFF, 7, 5 << 4, 0x10, 65535, 0, 0)
        frames.append(ethernet(ipv4(6, tcp + payload)))
    return frames


TRAFFIC = {
    "udp 256 flows": lambda n: udp_frames(n),
    "tcp, every frame new": lambda n: tcp_frames(n, 60),
    "tcp 1514 bytes": lambda n: tcp_frames(n, 1514),
}


def make_dp(impl):
    dp = impl.Datapath()
    dp.add_port(IN_PORT, "memory")
    dp.add_port(OUT_PORT, "memory")
    return dp


def cost_ns(impl, frames: list[bytes], rounds: int) -> float:
    """Median nanoseconds of dp.run() per frame over `rounds` rounds of all `frames`."""
    dp = make_dp(impl)
    key = refpath.parse(frames[0], IN_PORT).key
    dp.flow_put(key, L2_MATCH, L2_PRIORITY, [A.output(OUT_PORT)], now_ms=0)
    per_frame = []
    for _ in range(rounds):
        for frame in frames:
            dp.inject(IN_PORT, frame)
        start = time.thread_time_ns()
        while dp.run(NOW_MS):
            pass
        per_frame.append((time.thread_time_ns() - start) / len(frames))
        sent = dp.take(OUT_PORT)
        if len(sent) != len(frames):            # a benchmark of a broken datapath would be no benchmark
            raise SystemExit(f"{impl.__name__}: {len(sent)} of {len(frames)} frames forwarded")
    dp.close()
    return statistics.median(per_frame)


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_char_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_IoVec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def sendmmsg_sender(fd: int, batch: int):
    """A function sending up to `batch` (frame, vnet) pairs with one sendmmsg(2) (vnet, frame as two iovecs)."""
    sendmmsg = ctypes.CDLL(None, use_errno=True).sendmmsg
    msgs, iovs = (_MMsgHdr * batch)(), (_IoVec * (2 * batch))()
    for i in range(batch):
        msgs[i].hdr.iov = ctypes.cast(ctypes.byref(iovs, 2 * i * ctypes.sizeof(_IoVec)), ctypes.POINTER(_IoVec))
        msgs[i].hdr.iovlen = 2
        iovs[2 * i].len = 10

    def send(queue) -> int:
        for i, (frame, vnet) in enumerate(queue):
            iovs[2 * i].base = vnet
            iovs[2 * i + 1].base = frame
            iovs[2 * i + 1].len = len(frame)
        return sendmmsg(fd, msgs, len(queue), socket.MSG_DONTWAIT)
    return send


IO_NETNS = f"psw-{os.environ.get('PSW_BENCH_ID', 'b0')}cost"
IO_PORT, IO_PEER = "pswcost0", "pswcost1"


def io_costs(rounds: int) -> None:
    """The --io rows, run inside IO_NETNS (see the module docstring)."""
    from pyswitch.refpath import io as rio
    port = rio.AfPacketIO(socket.if_nametoindex(IO_PORT))
    plain = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(rio.ETH_P_ALL))
    plain.setsockopt(rio.SOL_PACKET, rio.PACKET_VNET_HDR, 1)
    plain.setsockopt(rio.SOL_PACKET, 8, 1)          # PACKET_AUXDATA
    plain.bind((IO_PORT, 0))
    plain.setblocking(False)
    sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)     # protocol 0: sends, receives nothing
    sender.bind((IO_PEER, 0))
    peer_mac = bytes.fromhex(Path(f"/sys/class/net/{IO_PEER}/address").read_text().strip().replace(":", ""))
    frame = peer_mac + udp_frames(1)[0][6:]
    burst = 200                                     # fits the ring (256) and the socket buffer

    def drain_plain():
        """Empties the plain socket, which also sees what `port` sends."""
        while True:
            try:
                plain.recvmsg(rio.RX_BUF_SIZE, socket.CMSG_SPACE(20))
            except BlockingIOError:
                return

    send_batch = sendmmsg_sender(port.fileno(), 64)
    rows = {"ring read (refpath/io.py)": [], "recvmsg + PACKET_AUXDATA (before)": [], "sendmsg (transmit)": [],
            "sendmmsg x64, ctypes (reference)": []}
    for _ in range(rounds):
        drain_plain()
        for _ in range(burst):
            sender.send(frame)
        time.sleep(0.01)
        start, n = time.thread_time_ns(), 0
        while got := port.recv(64):
            n += len(got)
        rows["ring read (refpath/io.py)"].append((time.thread_time_ns() - start) / max(n, 1))
        start, n = time.thread_time_ns(), 0
        while True:                                 # the loop refpath/io.py had, without the tag restore
            try:
                data, ancdata, flags, _addr = plain.recvmsg(rio.RX_BUF_SIZE, socket.CMSG_SPACE(20))
            except BlockingIOError:
                break
            if flags & socket.MSG_TRUNC or len(data) < rio.VNET_LEN:
                continue
            _vnet, _frame = data[:rio.VNET_LEN], data[rio.VNET_LEN:]
            for level, kind, cdata in ancdata:
                if level == rio.SOL_PACKET and kind == 8 and len(cdata) >= 20:
                    struct.unpack_from("=IIIHHHH", cdata)
            n += 1
        rows["recvmsg + PACKET_AUXDATA (before)"].append((time.thread_time_ns() - start) / max(n, 1))
        queue = [(frame, bytes(10))] * burst
        start = time.thread_time_ns()
        port.transmit(queue)
        rows["sendmsg (transmit)"].append((time.thread_time_ns() - start) / burst)
        start, n = time.thread_time_ns(), 0
        for first in range(0, burst, 64):
            n += max(0, send_batch(queue[first:first + 64]))
        rows["sendmmsg x64, ctypes (reference)"].append((time.thread_time_ns() - start) / max(n, 1))
    print(f"{'afpacket I/O, 60-byte frames':<36} {'ns/frame':>9}")
    for name, values in rows.items():
        print(f"{name:<36} {statistics.median(values):>9.0f}")


def run_io(rounds: int) -> int:
    """Sets up IO_NETNS, runs io_costs() inside it and removes it."""
    subprocess.run(["ip", "netns", "add", IO_NETNS], check=True)
    try:
        ip = ["ip", "-n", IO_NETNS]
        subprocess.run(ip + ["link", "add", IO_PORT, "type", "veth", "peer", "name", IO_PEER], check=True)
        for dev in (IO_PORT, IO_PEER):
            subprocess.run(ip + ["link", "set", dev, "up"], check=True)
        subprocess.run(ip + ["addr", "add", "198.51.100.12/24", "dev", IO_PEER], check=True)
        return subprocess.run(["ip", "netns", "exec", IO_NETNS, sys.executable, __file__, "--io-inside",
                               "--rounds", str(rounds)]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", IO_NETNS], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4096, help="frames per round (a memory port holds 4096)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--datapaths", default="python", help="python, c or both, comma-separated")
    parser.add_argument("--io", action="store_true", help="measure afpacket I/O instead (root)")
    parser.add_argument("--io-inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.io_inside:
        io_costs(args.rounds)
        return 0
    if args.io:
        return run_io(args.rounds)

    impls = {"python": refpath}
    if "c" in args.datapaths.split(","):
        from pyswitch import fastpath
        impls["c"] = fastpath
    print(f"{'datapath':<9} {'traffic':<22} {'ns/frame':>9} {'kpps (run() only)':>18}")
    for name in args.datapaths.split(","):
        for traffic, make in TRAFFIC.items():
            ns = cost_ns(impls[name], make(args.frames), args.rounds)
            print(f"{name:<9} {traffic:<22} {ns:>9.0f} {1e6 / ns:>18.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
