"""An `afpacket` port: an existing interface (say, the root-namespace end of a
veth pair) read and written through an AF_PACKET socket that the datapath opens.

pyswitch does not own the interface: it only brings it up and never changes its
addresses, offloads or MTU.  The hosts' TSO/GSO stay on; the datapath carries
super-frames whole with PACKET_VNET_HDR.
"""
from __future__ import annotations

import errno
import os
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .base import Port, PortError, operstate


class AfPacketPort(Port):
    kind = "afpacket"

    def __init__(self, config, port_no: int, ring_frames: int):
        super().__init__(config, port_no)
        self.ring_frames = ring_frames
        self.ifindex = 0

    def open(self) -> None:
        try:
            self.ifindex = socket.if_nametoindex(self.device)
        except OSError:
            raise PortError(f"port {self.name}: interface {self.device!r} does not exist") from None
        with IPRoute() as ipr:
            link = ipr.get_links(self.ifindex)[0]
            mtu = link.get_attr("IFLA_MTU") or 1500
            if not link["flags"] & 1:  # IFF_UP: a down interface would swallow what we send
                try:
                    ipr.link("set", index=self.ifindex, state="up")
                except NetlinkError as exc:
                    why = "needs CAP_NET_ADMIN" if exc.code in (errno.EPERM, errno.EACCES) else \
                        f"failed: {os.strerror(exc.code)}"
                    raise PortError(f"port {self.name}: interface {self.device!r} is down, and bringing it up "
                                    f"{why}") from None
        self.max_frame = self.max_frame_for(mtu)

    def attach(self, datapath) -> None:
        datapath.add_port(self.port_no, "afpacket", self.ifindex, self.ring_frames, self.max_frame)

    def close(self) -> None:
        """Nothing to give back: the datapath closes its socket in del_port."""

    def present(self) -> bool:
        """The interface may have been deleted, or deleted and made again under the same name: either way the
        socket bound to the old ifindex hears nothing any more."""
        try:
            return socket.if_nametoindex(self.device) == self.ifindex
        except OSError:
            return False

    def reopenable(self) -> bool:
        try:
            socket.if_nametoindex(self.device)
            return True
        except OSError:
            return False

    def running(self) -> bool:
        # "unknown" is what interfaces without carrier reporting (tun, dummy) say while up.
        return operstate(self.device) in ("up", "unknown")
