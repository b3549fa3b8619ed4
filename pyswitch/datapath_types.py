"""Result types shared by both datapaths (docs/DATAPATH.md), so that their answers compare equal."""
from __future__ import annotations

from typing import NamedTuple

from .actions import Action


class ParseResult(NamedTuple):
    error: int          # consts.PE_*
    key: bytes          # 64-byte flow key
    l3_ofs: int
    l4_ofs: int


class Output(NamedTuple):
    port: int           # consts.UPCALL_PORT for an UPCALL action
    frame: bytes
    vnet: bytes         # 10-byte virtio_net_hdr
    userdata: int


class FlowInfo(NamedTuple):
    key: bytes
    mask: bytes
    priority: int
    idle_timeout_ms: int
    cookie: int
    packets: int
    bytes: int
    used_ms: int
    actions: tuple[Action, ...]


class Upcall(NamedTuple):
    in_port: int
    reason: int         # consts.UPCALL_*
    userdata: int
    key: bytes
    vnet: bytes
    data: bytes


class FlowTableError(OSError):
    """A put the flow table refused; errno says why (EINVAL bad actions, ENOSPC too many subtables)."""
