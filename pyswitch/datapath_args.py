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
