"""A `tap` port: a TAP device that pyswitch creates, optionally moves into a
host's namespace and addresses there, and removes when it closes the fd.

The fd carries a virtio_net_hdr before each frame (IFF_VNET_HDR), and
TUNSETOFFLOAD lets the kernel hand us TSO super-frames and partial checksums,
so TCP through a TAP port keeps the host's default offloads.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import struct

from pyroute2 import IPRoute, NetNS

from .base import Port, PortError

TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002            # Ethernet frames, not IP packets
IFF_NO_PI = 0x1000          # no 4-byte packet information prefix
IFF_VNET_HDR = 0x4000       # a virtio_net_hdr before each frame
TUN_F_CSUM = 0x01           # we accept partial checksums
TUN_F_TSO4 = 0x02           # ...and TCP super-frames
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
VNET_HDR_SIZE = 10


class TapPort(Port):
    kind = "tap"

    def __init__(self, config, port_no: int):
        super().__init__(config, port_no)
        self.fd = -1
        self.mac = config.mac       # the first device's MAC, given to a device made again (hosts' ARP caches hold it)

    def open(self) -> None:
        if self.config.netns and not os.path.exists(f"/run/netns/{self.config.netns}"):
            raise PortError(f"port {self.name}: network namespace {self.config.netns!r} does not exist")
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise PortError(f"port {self.name}: /dev/net/tun is missing (load the tun module)") from None
        try:
            ifreq = struct.pack("16sH22x", self.device.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
            fcntl.ioctl(self.fd, TUNSETIFF, ifreq)
            fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_SIZE))
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)
            self._configure_link()
        except OSError as exc:
            self.close()
            if exc.errno == 16:  # EBUSY
                raise PortError(f"port {self.name}: interface {self.device!r} already exists") from None
            raise PortError(f"port {self.name}: cannot set up TAP device {self.device!r}: {exc.strerror}") from None

    def _configure_link(self) -> None:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.device)[0]
            mtu = ipr.get_links(index)[0].get_attr("IFLA_MTU") or 1500
            self.max_frame = self.max_frame_for(mtu)
            if self.mac:
                ipr.link("set", index=index, address=self.mac)
            else:
                self.mac = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
            if self.config.netns:
                ipr.link("set", index=index, net_ns_fd=self.config.netns)
            else:
                self._address_and_up(ipr, index)
                return
        with NetNS(self.config.netns) as ns:
            index = ns.link_lookup(ifname=self.device)[0]
            self._address_and_up(ns, index)

    def _address_and_up(self, ipr, index: int) -> None:
        for text in self.config.address:
            iface = ipaddress.ip_interface(text)
            ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        ipr.link("set", index=index, state="up")

    def attach(self, datapath) -> None:
        datapath.add_port(self.port_no, "tap", self.fd, 0, self.max_frame)

    def present(self) -> bool:
        """A TAP device deleted under us (`ip link del`) leaves our fd detached: TUNGETIFF fails with EBADFD."""
        if self.fd < 0:
            return False
        try:
            fcntl.ioctl(self.fd, TUNGETIFF, bytes(40))
            return True
        except OSError:
            return False

    def reopenable(self) -> bool:
        """pyswitch owns the device, so it makes it again, as soon as the namespace it lives in exists."""
        return not self.config.netns or os.path.exists(f"/run/netns/{self.config.netns}")

    def close(self) -> None:
        """Closing the only fd of a non-persistent TAP device removes the device, wherever it lives."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
