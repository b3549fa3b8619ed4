"""Port I/O: the twin of csrc/io.c. Each class moves (frame, vnet) pairs; the datapath counts them.

Every port reads and writes a 10-byte virtio_net_hdr in front of each frame: AF_PACKET with PACKET_VNET_HDR, TAP
with IFF_VNET_HDR, and memory ports because the differential tests compare vnet headers too. A port keeps only
the counters the datapath cannot see: rx_dropped (lost before we read them), rx_errors (frames we could not take
whole) and tx_dropped (sends that failed).

AF_PACKET reads the same TPACKET_V2 RX ring as C, mapped with mmap: a frame costs no system call, only reading
its header, copying it out (Python keeps frames as bytes) and handing the slot back. The ring header carries the
VLAN tag the kernel stripped, which is put back into the frame. Transmission is one sendmsg() per frame: Python's
socket module has no sendmmsg().
"""
from __future__ import annotations

import mmap
import os
import socket
import struct
import time
from collections import deque

from .. import consts
from .actions import Vnet, push_vlan

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6       # struct tpacket_stats; the kernel resets it on every read
PACKET_COPY_THRESH = 7      # also queue a frame the ring truncates, whole, on the socket (TP_STATUS_COPY)
PACKET_VERSION = 10
PACKET_VNET_HDR = 15
PACKET_QDISC_BYPASS = 20    # transmit straight to the driver: we are the switch, no local qdisc wanted
PACKET_IGNORE_OUTGOING = 23 # do not see our own transmissions again
PACKET_MR_PROMISC = 1
TPACKET_V2 = 1
ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33         # SO_RCVBUF past the sysctl's cap (the socket module does not name it)

TP_STATUS_KERNEL = 0                # the slot is the kernel's to fill
TP_STATUS_USER = 0x1                # the slot holds a frame for us
TP_STATUS_COPY = 0x2                # ...truncated; the whole frame waits on the socket
TP_STATUS_VLAN_VALID = 0x10         # tp_vlan_tci holds a tag the kernel stripped
TP_STATUS_VLAN_TPID_VALID = 0x40    # ...and tp_vlan_tpid its TPID

TPACKET2_HDR = struct.Struct("=IIIHHIIHH")      # tp_status, tp_len, tp_snaplen, tp_mac, tp_net, tp_sec, tp_nsec,
                                                # tp_vlan_tci, tp_vlan_tpid (struct tpacket2_hdr)
TP_STATUS = struct.Struct("=I")                 # tp_status alone, to hand a slot back
TPACKET_REQ = struct.Struct("=IIII")            # tp_block_size, tp_block_nr, tp_frame_size, tp_frame_nr
TPACKET_STATS = struct.Struct("=II")            # tp_packets, tp_drops
PACKET_MREQ = struct.Struct("=iHH8s")           # mr_ifindex, mr_type, mr_alen, mr_address
TPACKET_ALIGNMENT = 16

# The ring's geometry, as csrc/ps_consts.h has it (without C's PACKET_RESERVE headroom: Python copies frames out).
RING_FRAMES_DEFAULT = 256       # PS_RING_FRAMES_DEFAULT: ring frames when add_port is given 0
RING_SNAP_MIN = 1522            # PS_RING_SNAP_MIN: a ring frame holds at least this much of a frame
RING_BLOCK_MAX = 1 << 20        # PS_RING_BLOCK_MAX: several frames share a block of up to this many bytes
RING_HDR_ROOM = 128             # PS_RING_HDR_ROOM: tpacket2_hdr, sockaddr_ll and the kernel's alignment
RX_COPY_RCVBUF = 8 << 20        # PS_RX_COPY_RCVBUF: the socket buffer that holds TP_STATUS_COPY frames
RING_HOLE_GRACE_S = 0.001       # how long an empty slot before a filled one is waited for (AfPacketIO._passed_over)

VNET_LEN = consts.VNET_HDR_SIZE
ETH_HDR_LEN = 14
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

    def clear_error(self) -> bool:
        """Read and so clear the fd's pending error after poll reported POLLERR (ps_fd_clear_error); False if
        it is no socket, whose error cannot be read away (a TAP fd whose device was deleted)."""
        return True

    def rx_ready(self) -> bool:
        """Whether frames are known to be waiting without asking the kernel (a ring or a memory queue)."""
        return False

    def recv(self, max_frames: int) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    def transmit(self, frames: list[tuple[bytes, bytes]]) -> tuple[int, int]:
        """Send a port's queued (frame, vnet) pairs in order (io.c's afpacket_tx, tap_tx, memory_tx); count the
        ones that fail in tx_dropped and return (frames sent, their bytes)."""
        raise NotImplementedError

    def _send_each(self, send, frames) -> tuple[int, int]:
        """transmit() for a port that sends one frame per call: send((vnet, frame)) for each, failures counted."""
        sent = size = 0
        for frame, vnet in frames:
            try:
                send((vnet, frame))
            except OSError:
                self.tx_dropped += 1
                continue
            sent += 1
            size += len(frame)
        return sent, size

    def update_stats(self) -> None:
        """Bring rx_dropped up to date (kernel counters)."""

    def close(self) -> None:
        pass


_NO_HOLE = (-1, 0.0)


def _align_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


class AfPacketIO(PortIO):
    """An AF_PACKET socket on one interface with a TPACKET_V2 RX ring (csrc/io.c's afpacket_open and afpacket_rx).

    The ring is read and handed back as C does; its memory is shared with the kernel, which writes a slot and
    then sets TP_STATUS_USER, and takes the slot back when we set TP_STATUS_KERNEL. Python has no memory
    barriers: the reads of a slot follow the read of its status, and the status is written after them, in
    program order, which x86 keeps.
    """

    def __init__(self, ifindex: int, ring_frames: int = RING_FRAMES_DEFAULT, max_frame: int = 0):
        super().__init__()
        ifname = socket.if_indextoname(ifindex)          # raises OSError for an unknown index
        # Protocol 0 receives nothing until bind() names ETH_P_ALL and the interface, so no frame of another
        # interface slips into the ring.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            # The vnet header must be enabled before the ring exists: the kernel lays the ring frames out with it.
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            frame_size, per_block, block_size, n_blocks = self._ring_geometry(ring_frames, max_frame)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING,
                            TPACKET_REQ.pack(block_size, n_blocks, frame_size, n_blocks * per_block))
            self.ring = mmap.mmap(sock.fileno(), block_size * n_blocks, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            sock.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            PACKET_MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, bytes(8)))
            sock.bind((ifname, ETH_P_ALL))
            # The copies of oversized frames count against the receive buffer (SO_RCVBUFFORCE needs
            # CAP_NET_ADMIN; without it the sysctl caps SO_RCVBUF).
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RX_COPY_RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RX_COPY_RCVBUF)
            sock.setblocking(False)
        except OSError:
            if hasattr(self, "ring"):
                self.ring.close()
            sock.close()
            raise
        self.sock = sock
        # The offset of every slot, in ring order: frames never straddle blocks.
        self._slots = [block * block_size + i * frame_size for block in range(n_blocks) for i in range(per_block)]
        self._head = 0                                  # the next slot the kernel fills
        self._hole = _NO_HOLE                           # (slot, since when) of an empty slot before a filled one

    @staticmethod
    def _ring_geometry(ring_frames: int, max_frame: int) -> tuple[int, int, int, int]:
        """(frame_size, frames per block, block_size, blocks) as afpacket_open() computes them: a frame holds
        the headers, the vnet header and one frame of the port's MTU; a bigger one comes whole through the
        socket (TP_STATUS_COPY)."""
        page = mmap.PAGESIZE
        snap = min(max(max_frame, RING_SNAP_MIN), consts.FRAME_MAX)
        frame_size = _align_up(RING_HDR_ROOM + VNET_LEN + snap, TPACKET_ALIGNMENT)
        per_block = max(1, RING_BLOCK_MAX // frame_size)
        if ring_frames == 0:
            ring_frames = RING_FRAMES_DEFAULT
        per_block = min(per_block, ring_frames)
        block_size = _align_up(per_block * frame_size, page)
        n_blocks = (ring_frames + per_block - 1) // per_block
        return frame_size, per_block, block_size, n_blocks

    def fileno(self) -> int:
        return self.sock.fileno()

    def clear_error(self) -> bool:
        # An interface that goes down leaves ENETDOWN on the socket, which poll reports at once until it is read.
        self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return True

    def rx_ready(self) -> bool:
        # A filled slot after an empty head may be a hole to pass by (_passed_over), as in C.
        slots, head = self._slots, self._head
        after = head + 1 if head + 1 < len(slots) else 0
        return (TP_STATUS.unpack_from(self.ring, slots[head])[0] | TP_STATUS.unpack_from(self.ring, slots[after])[0]) \
            & TP_STATUS_USER != 0

    def recv(self, max_frames: int) -> list[tuple[bytes, bytes]]:
        frames = []
        ring = self.ring
        slots = self._slots
        head = self._head
        read_header = TPACKET2_HDR.unpack_from
        release = TP_STATUS.pack_into
        while len(frames) < max_frames:
            slot = slots[head]
            status, length, snaplen, mac, _net, _sec, _nsec, tci, tpid = read_header(ring, slot)
            if not status & TP_STATUS_USER:
                if self._passed_over(head):
                    head = head + 1 if head + 1 < len(slots) else 0
                    continue
                break
            head = head + 1 if head + 1 < len(slots) else 0
            if status & TP_STATUS_COPY:
                release(ring, slot, TP_STATUS_KERNEL)
                frame, vnet = self._recv_copy()
                if frame is None:
                    self.rx_errors += 1
                    continue
            elif snaplen < length or snaplen < ETH_HDR_LEN:
                # Too big for the ring, and the socket had no room for a copy.
                release(ring, slot, TP_STATUS_KERNEL)
                self.rx_errors += 1
                continue
            else:
                # The kernel writes the virtio_net_hdr right before the MAC header.
                start = slot + mac
                vnet = ring[start - VNET_LEN:start]
                frame = ring[start:start + snaplen]
                release(ring, slot, TP_STATUS_KERNEL)
            if status & TP_STATUS_VLAN_VALID:
                if not status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = consts.ETH_TYPE_VLAN
                # Put back the tag the kernel stripped, with the vnet header moved as PUSH_VLAN moves it.
                work = bytearray(frame)
                v = Vnet(vnet)
                push_vlan(work, v, tci, tpid)
                frame, vnet = bytes(work), v.pack()
            frames.append((frame, vnet))
        self._head = head
        if self._hole[0] != head:
            self._hole = _NO_HOLE                       # a hole seen before was read or skipped since
        return frames

    def _passed_over(self, head: int) -> bool:
        """Whether the kernel went past the empty slot `head` and filled the next one, and the slot stayed empty
        for RING_HOLE_GRACE_S: then the reader moves on too.

        Seen on Linux 6.18 with a ring kept full by a fast sender: now and then the kernel fills a slot after an
        empty one and comes back to the empty one only on its next lap, right after the slot before it. Under
        load that lap takes a millisecond; at light load it takes a ring's worth of frames, and a reader that
        waited at the hole would hold every frame after it for seconds. A slot a slower writer on another CPU is
        still filling fills within microseconds, so the grace lets it; if it fills later still, it is read on
        the next lap, late but not lost.
        """
        slots = self._slots
        after = slots[head + 1 if head + 1 < len(slots) else 0]
        if not TP_STATUS.unpack_from(self.ring, after)[0] & TP_STATUS_USER:
            return False
        now = time.monotonic()
        slot, since = self._hole
        if slot != head:
            self._hole = (head, now)
            return False
        if now - since < RING_HOLE_GRACE_S:
            return False
        self._hole = _NO_HOLE
        return True

    def _recv_copy(self) -> tuple[bytes, bytes] | tuple[None, None]:
        """The whole copy of a frame the ring holds truncated (TP_STATUS_COPY), read from the socket: the
        virtio_net_hdr, then the frame. (None, None) if there is none whole."""
        try:
            data, _ancdata, flags, _addr = self.sock.recvmsg(RX_BUF_SIZE)
        except (BlockingIOError, InterruptedError):
            return None, None
        if flags & socket.MSG_TRUNC or len(data) < VNET_LEN + ETH_HDR_LEN:
            return None, None
        return data[VNET_LEN:], data[:VNET_LEN]

    def transmit(self, frames):
        return self._send_each(self.sock.sendmsg, frames)

    def update_stats(self) -> None:
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, TPACKET_STATS.size)
        except OSError:
            return
        self.rx_dropped += TPACKET_STATS.unpack(raw)[1]

    def close(self) -> None:
        self.ring.close()
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

    def clear_error(self) -> bool:
        # A TAP fd is no socket: the POLLERR it reports (its device was deleted) stays, as getsockopt() fails in C.
        return False

    def recv(self, max_frames: int) -> list[tuple[bytes, bytes]]:
        frames = []
        while len(frames) < max_frames:
            try:
                data = os.read(self.fd, RX_BUF_SIZE)
            except OSError:
                # As tap_rx: nothing more now.  EAGAIN (empty), EIO (the interface is down), EBADFD (the device
                # was deleted: the slow path's port watch notices and detaches the port).
                break
            if len(data) < VNET_LEN:
                self.rx_errors += 1
                continue
            frames.append((data[VNET_LEN:], data[:VNET_LEN]))
        return frames

    def transmit(self, frames):
        fd = self.fd
        return self._send_each(lambda buffers: os.writev(fd, buffers), frames)


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

    def rx_ready(self) -> bool:
        return bool(self.rx_queue)

    def recv(self, max_frames: int) -> list[tuple[bytes, bytes]]:
        q = self.rx_queue
        return [q.popleft() for _ in range(min(max_frames, len(q)))]

    def transmit(self, frames):
        room = max(0, self.max_frames - len(self.tx_queue))
        taken = frames[:room]
        self.tx_queue.extend(taken)
        self.tx_dropped += len(frames) - len(taken)
        return len(taken), sum(len(frame) for frame, _vnet in taken)
