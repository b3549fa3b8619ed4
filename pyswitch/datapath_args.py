"""Argument checks shared by both datapaths, so that they refuse the same calls with the same words."""
from __future__ import annotations


def addr16(addr) -> bytes:
    """Neighbor and gateway addresses are 16 bytes in the tables: IPv4 in the first 4, the rest zero."""
    if len(addr) not in (4, 16):
        raise ValueError(f"an address is 4 (IPv4) or 16 bytes, not {len(addr)}")
    return bytes(addr).ljust(16, b"\0")


def mac6(mac) -> bytes:
    """A MAC address; empty means all zero."""
    if len(mac) not in (0, 6):
        raise ValueError(f"a MAC address is 6 bytes, not {len(mac)}")
    return bytes(mac).ljust(6, b"\0")


def port_bitmap(ports) -> int:
    """A set of port numbers as the datapath's 64-bit bitmap; a number out of 0..63 is a ValueError."""
    bitmap = 0
    for port_no in ports:
        if isinstance(port_no, bool) or not isinstance(port_no, int) or not 0 <= port_no < 64:
            raise ValueError(f"port {port_no!r} is not 0..63")
        bitmap |= 1 << port_no
    return bitmap
