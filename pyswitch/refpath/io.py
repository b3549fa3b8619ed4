"""Port I/O: the twin of csrc/io.c. Each class moves (frame, vnet) pairs; the datapath counts them.

Every port reads and writes a 10-byte virtio_net_hdr in front of each frame: AF_PACKET with PACKET_VNET_HDR, TAP
with IFF_VNET_HDR, and memory ports because the differential tests compare vnet headers too. A port keeps only
the counters the datapath cannot see: rx_dropped (lost before we read them), rx_errors (frames we could not take
whole) and tx_dropped (sends that failed).

AF_PACKET here is a plain socket read with recvmsg(), not C's RX ring: the frames and counters are the same, only
slower. struct tpacket_auxdata carries the VLAN tag the kernel stripped, which is put back into the frame.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from collections import deque

from .. import consts
from .actions import Vnet, push_vlan

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_STATISTICS = 6       # struct tpacket_stats; the kernel resets it on every read
PACKET_AUXDATA = 8          # ask for struct tpacket_auxdata with each recvmsg()
PACKET_VNET_HDR = 15
PACKET_QDISC_BYPASS = 20    # transmit straight to the driver: we are the switch, no local qdisc wanted
PACKET_IGNORE_OUTGOING = 23 # do not see our own transmissions again
PACKET_MR_PROMISC = 1
ETH_P_ALL = 0x0003

TP_STATUS_VLAN_VALID = 0x10         # tp_vlan_tci holds a tag the kernel stripped
TP_STATUS_VLAN_TPID_VALID = 0x40    # ...and tp_vlan_tpid its TPID

TPACKET_AUXDATA = struct.Struct("=IIIHHHH")     # tp_status, tp_len, tp_snaplen, tp_mac, tp_net, vlan_tci, vlan_tpid
TPACKET_STATS = struct.Struct("=II")            # tp_packets, tp_drops
PACKET_MREQ = struct.Struct("=iHH8s")           # mr_ifindex, mr_type, mr_alen, mr_address

VNET_LEN = consts.VNET_HDR_SIZE
RX_BUF_SIZE = VNET_LEN + consts.FRAME_MAX       # a larger frame is truncated and counted in rx_errors
MEMORY_QUEUE_LEN = 4096                         # frames in each memory queue before drops


class PortIO:
    """What the datapath needs from a port."""

    def __init__(self):
        self.rx_dropped = 0
        self.rx_errors = 0
        self.tx_dropped = 0

    def fileno(self) -> int:
        return -1

    def recv(self, max_frames: int) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    def send(self, frame: bytes, vnet: bytes) -> bool:
        raise NotImplementedError

    def update_stats(self) -> None:
        """Bring rx_dropped up to date (kernel counters)."""

    def close(self) -> None:
        pass


class AfPacketIO(PortIO):
    def __init__(self, ifindex: int):
        super().__init__()
        ifname = socket.if_indextoname(ifindex)          # raises OSError for an unknown index
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            PACKET_MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, bytes(8)))
            # Protocol 0 keeps the socket's ETH_P_ALL.
            sock.bind((ifname, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self._ancbufsize = socket.CMSG_SPACE(TPACKET_AUXDATA.size)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, max_frames: int) -> list[tuple[bytes, bytes]]:
        frames = []
        recvmsg = self.sock.recvmsg
        while len(frames) < max_frames:
            try:
                data, ancdata, flags, _addr = recvmsg(RX_BUF_SIZE, self._ancbufsize)
            except (BlockingIOError, InterruptedError):
                break
            if flags & socket.MSG_TRUNC or len(data) < VNET_LEN:
                self.rx_errors += 1
                continue
            vnet = data[:VNET_LEN]
            frame = data[VNET_LEN:]
            for level, kind, cdata in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= TPACKET_AUXDATA.size:
                    status, _len, _snaplen, _mac, _net, tci, tpid = TPACKET_AUXDATA.unpack_from(cdata)
                    if status & TP_STATUS_VLAN_VALID and len(frame) >= 12:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = consts.ETH_TYPE_VLAN
                        work = bytearray(frame)
                        v = Vnet(vnet)
                        push_vlan(work, v, tci, tpid)
                        frame, vnet = bytes(work), v.pack()
            frames.append((frame, vnet))
        return frames

    def send(self, frame: bytes, vnet: bytes) -> bool:
        try:
            self.sock.sendmsg([vnet, frame])
        except OSError:
            self.tx_dropped += 1
            return False
        return True

    def update_stats(self) -> None:
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, TPACKET_STATS.size)
        except OSError:
            return
        self.rx_dropped += TPACKET_STATS.unpack(raw)[1]

    def close(self) -> None:
        self.sock.close()


class TapIO(PortIO):
    """An open TAP fd with IFF_VNET_HDR; its owner closes it."""

    def __init__(self, fd: int):
        super().__init__()
        os.fstat(fd)                                    # EBADF now rather than on the first read
        os.set_blocking(fd, False)
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def recv(self, max_frames: int) -> list[tuple[bytes, bytes]]:
        frames = []
        while len(frames) < max_frames:
            try:
                data = os.read(self.fd, RX_BUF_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno == errno.EIO:                # the interface is down
                    break
                raise
            if len(data) < VNET_LEN:
                self.rx_errors += 1
                continue
            frames.append((data[VNET_LEN:], data[:VNET_LEN]))
        return frames

    def send(self, frame: bytes, vnet: bytes) -> bool:
        try:
            os.writev(self.fd, [vnet, frame])
        except OSError:
            self.tx_dropped += 1
            return False
        return True


class MemoryIO(PortIO):
    """Two bounded queues: `inject` feeds the datapath's receive side, `take` drains what it sent.

    A full receive queue counts rx_dropped (like a full kernel ring), a full transmit queue tx_dropped.
    """

    def __init__(self, max_frames: int = MEMORY_QUEUE_LEN):
        super().__init__()
        self.max_frames = max_frames
        self.rx_queue: deque[tuple[bytes, bytes]] = deque()
        self.tx_queue: deque[tuple[bytes, bytes]] = deque()

    def inject(self, frame, vnet=bytes(VNET_LEN)) -> bool:
        if len(self.rx_queue) >= self.max_frames:
            self.rx_dropped += 1
            return False
        self.rx_queue.append((bytes(frame), bytes(vnet)))
        return True

    def take(self) -> list[tuple[bytes, bytes]]:
        out = list(self.tx_queue)
        self.tx_queue.clear()
        return out

    def recv(self, max_frames: int) -> list[tuple[bytes, bytes]]:
        q = self.rx_queue
        return [q.popleft() for _ in range(min(max_frames, len(q)))]

    def send(self, frame: bytes, vnet: bytes) -> bool:
        if len(self.tx_queue) >= self.max_frames:
            self.tx_dropped += 1
            return False
        self.tx_queue.append((frame, vnet))
        return True
