"""Flow keys and masks: the 64-byte `struct ps_flow_key` as Python sees it.

A key is `bytes` (what both datapaths take); `FlowKey` is its readable form.
Masks are keys too: a 1 bit must match. `FlowKey.mask_of("in_port", ...)`
builds a mask with every bit of the named fields set.
"""
from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from . import consts

# Field layout, in the order of csrc/pyswitch.h.
_LAYOUT = struct.Struct("!HH6s6sHBBBB2x16s16sHHH2x")
assert _LAYOUT.size == consts.KEY_SIZE

_FIELD_WIDTH = {  # bytes per field, for building masks
    "in_port": 2, "vlan_tci": 2, "eth_dst": 6, "eth_src": 6, "eth_type": 2, "nw_proto": 1,
    "nw_tos": 1, "nw_ttl": 1, "nw_frag": 1, "nw_src": 16, "nw_dst": 16, "tp_src": 2,
    "tp_dst": 2, "tcp_flags": 2,
}


class FlowKey(NamedTuple):
    """A key's fields, in layout order.  A named tuple, not a dataclass: every upcall unpacks one, and a frozen
    dataclass's __init__ costs five times as much."""
    in_port: int = 0
    vlan_tci: int = 0
    eth_dst: bytes = bytes(6)
    eth_src: bytes = bytes(6)
    eth_type: int = 0
    nw_proto: int = 0
    nw_tos: int = 0
    nw_ttl: int = 0
    nw_frag: int = 0
    nw_src: bytes = bytes(16)
    nw_dst: bytes = bytes(16)
    tp_src: int = 0
    tp_dst: int = 0
    tcp_flags: int = 0

    def pack(self) -> bytes:
        return _LAYOUT.pack(*self)

    @classmethod
    def unpack(cls, key: bytes) -> "FlowKey":
        return cls._make(_LAYOUT.unpack(key))

    @staticmethod
    def mask_of(*names: str, vlan_vid_only: bool = False) -> bytes:
        """A mask with all bits of the named fields set.

        vlan_vid_only: for "vlan_tci", match the VID and the present bit, not the PCP.
        """
        values = {}
        for name in names:
            width = _FIELD_WIDTH[name]
            if name in ("eth_dst", "eth_src", "nw_src", "nw_dst"):
                values[name] = b"\xff" * width
            elif name == "vlan_tci" and vlan_vid_only:
                values[name] = 0x1FFF
            else:
                values[name] = (1 << (8 * width)) - 1
        return FlowKey(**values).pack()

    def describe(self, mask: bytes | None = None) -> str:
        """`field=value` pairs for the fields the mask covers (all non-zero ones without a mask)."""
        m = FlowKey.unpack(mask) if mask is not None else None
        parts = []
        for name, value in zip(self._fields, self):
            covered = getattr(m, name) if m is not None else value
            if isinstance(covered, bytes):
                covered = any(covered)      # an address's mask (or value) of all zero bytes covers nothing
            if not covered:
                continue
            parts.append(f"{name}={_show(name, value, self.eth_type)}")
        return ",".join(parts) or "any"


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_bytes(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def _show(name: str, value, eth_type: int) -> str:
    if name in ("eth_dst", "eth_src"):
        return mac_str(value)
    if name in ("nw_src", "nw_dst"):
        if eth_type == consts.ETH_TYPE_IPV6:
            return str(ipaddress.IPv6Address(value))
        return str(ipaddress.IPv4Address(value[:4]))
    if name in ("eth_type", "vlan_tci", "tcp_flags"):
        return f"0x{value:04x}"
    return str(value)


def apply_mask(key: bytes, mask: bytes) -> bytes:
    return (int.from_bytes(key, "big") & int.from_bytes(mask, "big")).to_bytes(consts.KEY_SIZE, "big")
