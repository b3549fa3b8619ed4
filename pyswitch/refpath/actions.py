"""Flow actions: the twin of csrc/actions.c (docs/DATAPATH.md "Actions").

One executor serves both `actions_apply` (no ports: outputs are returned) and the datapath (outputs go to port
transmit queues, UPCALLs to the upcall queue): it runs the list and hands what leaves to a `Sink`, the twin of
struct ps_sink. The executor owns no routing tables: a ROUTE calls `sink.route(frame, vnet, via)`, which routes and
emits the bytearray in place (and returns True: the list goes on) or upcalls or drops it (False: the list ends);
LB and LB_REPLY call `sink.lb(frame, vnet, action)` the same way, and a DECAP that fails calls
`sink.drop(reason)` and ends the list.

Outputs before the first action that changes the frame send the frame as it came, without a copy: most flows are
one OUTPUT. The first change makes a working copy; the outputs after it send a snapshot of that copy, taken once
per change, as C copies only bytes a later action could still change (its `stable` outputs).
"""
from __future__ import annotations

import errno
import struct

from .. import consts
from ..actions import Action
from ..datapath_types import FlowTableError, Output
from . import nat, tunnel

VNET = struct.Struct("<BBHHHH")     # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (little-endian)
GSO_TYPE_MASK = 0x7F                # gso_type without the ECN flag: non-zero means a GSO frame
ETH_ALEN = 6
ETH_HDR_LEN = 14
VLAN_TAG_LEN = 4
VLAN_TAGGED_HDR_LEN = 18            # POP_VLAN needs a whole tagged Ethernet header
_VLAN_TPIDS = (consts.ETH_TYPE_VLAN, consts.ETH_TYPE_QINQ)
_KNOWN_ACTIONS = frozenset((consts.ACT_OUTPUT, consts.ACT_FLOOD, consts.ACT_SET_ETH_SRC, consts.ACT_SET_ETH_DST,
                            consts.ACT_PUSH_VLAN, consts.ACT_POP_VLAN, consts.ACT_UPCALL, consts.ACT_ROUTE,
                            consts.ACT_SET_IPV4_SRC, consts.ACT_SET_IPV4_DST, consts.ACT_SET_TP_SRC,
                            consts.ACT_SET_TP_DST, consts.ACT_LB, consts.ACT_LB_REPLY, consts.ACT_DECAP))
DROP_DECAP = "decap"                # drop(reason): DECAP refused the packet


def validate_actions(actions) -> tuple[Action, ...]:
    """What ps_ft_put refuses with EINVAL: more than MAX_ACTIONS, unknown types, OUTPUT to a port >= MAX_PORTS."""
    actions = tuple(Action(*a) for a in actions)
    if len(actions) > consts.MAX_ACTIONS:
        raise FlowTableError(errno.EINVAL, f"more than {consts.MAX_ACTIONS} actions")
    for act in actions:
        if act.type not in _KNOWN_ACTIONS:
            raise FlowTableError(errno.EINVAL, f"unknown action type {act.type}")
        if act.type == consts.ACT_OUTPUT and act.arg >= consts.MAX_PORTS:
            raise FlowTableError(errno.EINVAL, f"output to port {act.arg} >= {consts.MAX_PORTS}")
    return actions


class Vnet:
    """A virtio_net_hdr being rewritten. Only the fields actions touch get names."""

    __slots__ = ("flags", "gso_type", "hdr_len", "gso_size", "csum_start", "csum_offset")

    def __init__(self, raw: bytes):
        (self.flags, self.gso_type, self.hdr_len, self.gso_size,
         self.csum_start, self.csum_offset) = VNET.unpack_from(raw)

    def pack(self) -> bytes:
        return VNET.pack(self.flags, self.gso_type, self.hdr_len, self.gso_size, self.csum_start, self.csum_offset)

    def grow(self, delta: int) -> None:
        """Shift the header offsets for `delta` bytes inserted (or removed, if negative) before L3.

        csum_start moves only when it is in use (NEEDS_CSUM); hdr_len only for a GSO frame that has one.
        The fields are 16-bit: they wrap upward like C's uint16_t and stop at 0 downward (the contract's
        "never below 0").
        """
        if self.flags & consts.VNET_F_NEEDS_CSUM:
            self.csum_start = max(0, self.csum_start + delta) & 0xFFFF
        if self.gso_type & GSO_TYPE_MASK and self.hdr_len != 0:
            self.hdr_len = max(0, self.hdr_len + delta) & 0xFFFF


def push_vlan(frame: bytearray, vnet: Vnet, tci: int, tpid: int = consts.ETH_TYPE_VLAN) -> None:
    """Insert a tag at offset 12. Also used by the AF_PACKET port to restore a tag the kernel stripped."""
    frame[12:12] = struct.pack("!HH", tpid, tci & 0xFFFF)
    vnet.grow(VLAN_TAG_LEN)


def pop_vlan(frame: bytearray, vnet: Vnet) -> None:
    if len(frame) >= VLAN_TAGGED_HDR_LEN and (frame[12] << 8 | frame[13]) in _VLAN_TPIDS:
        del frame[12:16]
        vnet.grow(-VLAN_TAG_LEN)


class Sink:
    """Where the executor's results go (struct ps_sink). Frames and vnet headers given to emit and upcall are
    bytes the sink may keep."""

    def emit(self, port: int, frame: bytes, vnet: bytes) -> None:
        raise NotImplementedError

    def upcall(self, frame: bytes, vnet: bytes, userdata: int) -> None:
        raise NotImplementedError

    def route(self, work: bytearray, vnet: Vnet, via: bytes | None) -> bool:
        raise NotImplementedError

    def lb(self, work: bytearray, vnet: Vnet, action: Action) -> bool:
        raise NotImplementedError

    def drop(self, reason: str) -> None:
        raise NotImplementedError


_OUTPUT = consts.ACT_OUTPUT
_FLOOD = consts.ACT_FLOOD
_UPCALL = consts.ACT_UPCALL
_MAX_PORTS = consts.MAX_PORTS


def execute(frame: bytes, vnet: bytes, in_port: int, actions, sink: Sink) -> None:
    """Run `actions` on `frame` (bytes) and its 10-byte `vnet`, changing only a copy, and give the results to
    `sink`.

    Ambiguities, each resolved the simplest way and listed in the report:
    - SET_ETH_SRC/DST and PUSH_VLAN act only on a frame holding a whole Ethernet header (14 bytes), as POP_VLAN
      needs a whole tagged one (18); on a shorter frame they do nothing.
    - Unknown action types do nothing here (ps_ft_put and actions_apply refuse them first).
    - SET_ETH_* data shorter than 6 bytes is zero-padded, as C's data[16] is; SET_IPV4_* data shorter than 4 too.
    """
    out, out_vnet = frame, vnet     # what an output sends now; None once an action changed the working copy
    work = v = None                 # the working copy and its header, made by the first action that may change it
    via = None                      # set by DECAP with DECAP_DELIVER for a later ROUTE
    for act in actions:
        t = act.type
        if t == _OUTPUT:
            if out is None:
                out, out_vnet = bytes(work), v.pack()
            sink.emit(act.arg, out, out_vnet)
            continue
        if t == _FLOOD:
            bitmap = act.ports & ~(1 << in_port) if in_port < _MAX_PORTS else act.ports
            if bitmap:
                if out is None:
                    out, out_vnet = bytes(work), v.pack()
                port = 0
                while bitmap:
                    if bitmap & 1:
                        sink.emit(port, out, out_vnet)
                    bitmap >>= 1
                    port += 1
            continue
        if t == _UPCALL:
            if out is None:
                out, out_vnet = bytes(work), v.pack()
            sink.upcall(out, out_vnet, act.arg32 & 0xFFFFFFFF)
            continue
        # Every other action may change the frame or its header.
        if work is None:
            work, v = bytearray(frame), Vnet(vnet)
        out = None
        if t == consts.ACT_SET_ETH_DST:
            if len(work) >= ETH_HDR_LEN:
                work[0:6] = (bytes(act.data[:ETH_ALEN]) + bytes(ETH_ALEN))[:ETH_ALEN]
        elif t == consts.ACT_SET_ETH_SRC:
            if len(work) >= ETH_HDR_LEN:
                work[6:12] = (bytes(act.data[:ETH_ALEN]) + bytes(ETH_ALEN))[:ETH_ALEN]
        elif t == consts.ACT_SET_IPV4_SRC:
            nat.ipv4_set_addr(work, v, nat.IPV4_SRC_OFS, (bytes(act.data[:4]) + bytes(4))[:4])
        elif t == consts.ACT_SET_IPV4_DST:
            nat.ipv4_set_addr(work, v, nat.IPV4_DST_OFS, (bytes(act.data[:4]) + bytes(4))[:4])
        elif t == consts.ACT_SET_TP_SRC:
            nat.l4_set_port(work, v, nat.TP_SRC_OFS, act.arg & 0xFFFF)
        elif t == consts.ACT_SET_TP_DST:
            nat.l4_set_port(work, v, nat.TP_DST_OFS, act.arg & 0xFFFF)
        elif t == consts.ACT_PUSH_VLAN:
            if len(work) >= ETH_HDR_LEN:
                push_vlan(work, v, act.arg)
        elif t == consts.ACT_POP_VLAN:
            pop_vlan(work, v)
        elif t == consts.ACT_ROUTE:
            if not sink.route(work, v, via):
                return
        elif t in (consts.ACT_LB, consts.ACT_LB_REPLY):
            if not sink.lb(work, v, act):
                return
        elif t == consts.ACT_DECAP:
            outer_dst = tunnel.outer_destination(work)
            if not tunnel.decap(work, v):
                sink.drop(DROP_DECAP)
                return
            if act.arg & consts.DECAP_DELIVER:
                via = outer_dst


class _ApplySink(Sink):
    """actions_apply's sink: every output, an UPCALL's too, goes into one list."""

    def __init__(self):
        self.outputs: list[Output] = []

    def emit(self, port, frame, vnet):
        self.outputs.append(Output(port, frame, vnet, 0))

    def upcall(self, frame, vnet, userdata):
        self.outputs.append(Output(consts.UPCALL_PORT, frame, vnet, userdata))

    def route(self, work, v, via):
        self.outputs.append(Output(consts.UPCALL_PORT, bytes(work), v.pack(), 0))
        return False

    def lb(self, work, v, act):
        userdata = act.arg32 & 0xFFFFFFFF if act.type == consts.ACT_LB else 0
        self.outputs.append(Output(consts.UPCALL_PORT, bytes(work), v.pack(), userdata))
        return False

    def drop(self, reason):
        pass


def actions_apply(frame, vnet: bytes, in_port: int, actions) -> list[Output]:
    """`ps_actions_apply`: the datapath's executor without ports; an UPCALL is an output to UPCALL_PORT.

    Like C, it refuses (FlowTableError EINVAL) an action list that ps_ft_put would refuse. Without routing tables
    a ROUTE can only ask the slow path: an UPCALL-style output with userdata 0, after which the list ends as after
    any ROUTE that upcalls. Without a connection table LB asks as a missed lookup does (userdata: the VIP id) and
    LB_REPLY as ROUTE does; a failed DECAP just ends the list (there are no counters).
    """
    actions = validate_actions(actions)
    sink = _ApplySink()
    execute(bytes(frame), _vnet_bytes(vnet), in_port, actions, sink)
    return sink.outputs


def _vnet_bytes(vnet) -> bytes:
    """A vnet header as the executor takes it: 10 bytes (fastpath.py raises the same ValueError)."""
    if len(vnet) != consts.VNET_HDR_SIZE:
        raise ValueError(f"a vnet header is {consts.VNET_HDR_SIZE} bytes, not {len(vnet)}")
    return bytes(vnet)
