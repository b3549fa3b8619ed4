"""An `afxdp` port: an existing interface (a veth end, like an `afpacket` port's) read and written through AF_XDP
sockets, one per receive queue, that the C datapath opens (csrc/xdp.c).

The datapath attaches a small XDP program to the interface that redirects every frame it receives to those
sockets, through a BPF link that only lives as long as the switch process: the program leaves the interface
when the port closes, and also when the process dies, even by SIGKILL.  Native (driver) mode when the driver
can, else generic mode; `show ports` says which (`xdp_mode`).  veth runs it natively up to an MTU of about 3500.

Frames are single UMEM chunks (2048 or 4096 bytes, so an MTU of at most 3690), never super-frames.  A VLAN tag
that a host's VLAN sub-interface leaves to the veth's VLAN offload is socket buffer metadata, not in the frame XDP
sees, and is lost (an afpacket port restores it); tags in the frame's bytes, as between two switches, cross.

Attaching XDP natively to a veth end makes the kernel turn off TSO on its peer, so hosts behind an afxdp port
send MTU-sized frames (with partial checksums, which the datapath recognises); this is the one change pyswitch
causes on such an interface, and it is undone when the program leaves.  Generic mode changes nothing, so a
sender there must turn TSO off itself, or its super-frames are dropped (counted in rx_dropped).

The Python datapath has no AF_XDP: under `datapath = "python"` the interface is opened as an afpacket port
instead (the same frames go in and out, at AF_PACKET's speed), and the switch says so in its log.
"""
from __future__ import annotations

import errno
import logging

from .afpacket import AfPacketPort
from .base import PortError

log = logging.getLogger("pyswitch")


class AfXdpPort(AfPacketPort):
    kind = "afxdp"

    def __init__(self, config, port_no: int, ring_frames: int):
        super().__init__(config, port_no, ring_frames)
        self.xdp_mode = None        # "native" or "generic" once attached; None when opened as afpacket

    def attach(self, datapath) -> None:
        if datapath.kind == "python":
            log.warning("port %s: the Python datapath has no AF_XDP; %s is opened as an afpacket port instead",
                        self.name, self.device)
            super().attach(datapath)
            return
        try:
            datapath.add_port(self.port_no, "afxdp", self.ifindex, self.ring_frames, self.max_frame)
        except OSError as exc:
            raise PortError(f"port {self.name}: cannot open {self.device!r} with AF_XDP: {_why(exc)}") from None
        self.xdp_mode = datapath.port_xdp_mode(self.port_no)
        log.info("port %s: XDP program attached to %s in %s mode", self.name, self.device, self.xdp_mode)
        if self.xdp_mode == "generic":
            log.warning("port %s: generic XDP leaves the sender's TSO/GSO on, and a super-frame does not fit an "
                        "AF_XDP frame: such frames are dropped (rx_dropped) unless the sender turns TSO off",
                        self.name)

    def details(self) -> dict:
        return {"xdp_mode": self.xdp_mode}


def _why(exc: OSError) -> str:
    if exc.errno == errno.EBUSY:
        return "the interface already has an XDP program or AF_XDP socket (pyswitch never replaces one)"
    if exc.errno == errno.EMSGSIZE:
        return "its MTU is too large for AF_XDP's 4096-byte frames (an MTU of at most 3690)"
    if exc.errno == errno.ERANGE:
        return "it has more receive queues than an afxdp port serves (16; fewer with ethtool -L)"
    if exc.errno in (errno.EPERM, errno.EACCES):
        return "permission denied (needs CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW: run it as root)"
    if exc.errno == errno.ENOBUFS:
        # The kernel charges a UMEM to the user's RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.
        return ("its UMEM is more memory than RLIMIT_MEMLOCK lets this user lock (give the switch CAP_IPC_LOCK, "
                "or raise ulimit -l before dropping root)")
    return exc.strerror or str(exc)
