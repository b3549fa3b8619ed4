"""Port kinds: how a configured port becomes something a datapath can attach.

Each kind opens its device (`open`), tells the datapath how to attach it
(`attach`) and gives back what it created (`close`).  The datapaths do the
per-packet I/O themselves (csrc/io.c, pyswitch/refpath/io.py).
"""
from __future__ import annotations

from ..config import PortConfig
from .afpacket import AfPacketPort
from .afxdp import AfXdpPort
from .base import Port, PortError
from .memory import MemoryPort
from .tap import TapPort

__all__ = ["AfPacketPort", "AfXdpPort", "MemoryPort", "Port", "PortError", "TapPort", "make_port"]


def make_port(config: PortConfig, port_no: int, ring_frames: int):
    if config.type == "afpacket":
        return AfPacketPort(config, port_no, ring_frames)
    if config.type == "afxdp":
        return AfXdpPort(config, port_no, ring_frames)
    if config.type == "tap":
        return TapPort(config, port_no)
    if config.type == "memory":
        return MemoryPort(config, port_no)
    raise PortError(f"port {config.name}: unknown type {config.type!r}")
