"""Result types shared by both datapaths (docs/DATAPATH.md), so that their answers compare equal."""
from __future__ import annotations

import struct
from typing import NamedTuple

from . import consts
from .actions import Action

_TUPLE = struct.Struct("!B3x4s4sHH")     # struct ps_conn_tuple: proto, pad, src, dst, sport, dport
CONN_TUPLE_SIZE = _TUPLE.size


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


class GsoPlan(NamedTuple):
    """How a GSO super-frame is cut into segments (`struct ps_gso`, from `gso_plan`)."""
    l3_ofs: int         # the IP header
    l4_ofs: int         # the TCP or UDP header
    hdr_size: int       # every header up to the payload, copied into each segment
    seg_payload: int    # payload bytes per segment but the last (the vnet's gso_size)
    payload: int        # payload bytes in all
    n_segs: int         # segments: at least one
    ipv4: bool          # False: IPv6
    proto: int          # 6 TCP, 17 UDP


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


class ConnTuple(NamedTuple):
    """One direction of a connection (`struct ps_conn_tuple`): what a TCP/UDP packet's headers hold."""
    proto: int          # 6 TCP, 17 UDP
    src: bytes          # 4 bytes
    dst: bytes          # 4 bytes
    sport: int
    dport: int

    def pack(self) -> bytes:
        """The 16 bytes of `struct ps_conn_tuple`; ValueError for a field that does not fit."""
        proto, src, dst, sport, dport = self
        # Every new connection packs two tuples: the common case (exact types, in range) is checked inline,
        # anything else goes through the checks that name the field.
        if type(proto) is int and type(sport) is int and type(dport) is int and type(src) is bytes \
                and type(dst) is bytes and len(src) == 4 and len(dst) == 4 and 0 <= proto < 256 \
                and 0 <= sport < 65536 and 0 <= dport < 65536:
            return _TUPLE.pack(proto, src, dst, sport, dport)
        return _TUPLE.pack(_uint(proto, 8, "protocol"), _addr4(src, "source"), _addr4(dst, "destination"),
                           _uint(sport, 16, "source port"), _uint(dport, 16, "destination port"))

    @classmethod
    def unpack(cls, raw) -> ConnTuple:
        proto, src, dst, sport, dport = _TUPLE.unpack(bytes(raw))
        return cls(proto, src, dst, sport, dport)


class Conn(NamedTuple):
    """A connection (`struct ps_conn`), as conn_add takes it and conn_get / conn_dump return it."""
    client: ConnTuple           # as the client sends it: client -> VIP
    reply: ConnTuple | None     # nat/fullnat: as the backend's reply arrives; None for dsr/ipip/gre
    backend: bytes              # dsr: routed toward; ipip/gre: the outer destination (4 bytes)
    tunnel_src: bytes           # ipip/gre: the outer source (4 bytes)
    mode: int                   # consts.CONN_*
    state: int                  # consts.CS_*; in conn_add the initial state
    vip_id: int
    backend_id: int             # the slow path's tag, returned in events
    packets: int = 0            # both directions
    bytes: int = 0
    created_ms: int = 0
    used_ms: int = 0
    flags: int = 0              # consts.CONN_F_HOLD, CONN_F_SPLICED; conn_add takes CONN_F_HOLD alone


class ConnEvent(NamedTuple):
    """Something the slow path should know about a connection (`struct ps_conn_event`)."""
    kind: int           # consts.CE_*
    vip_id: int
    backend_id: int
    state: int          # the connection's state then
    rtt_us: int         # CE_RTT: microseconds from conn_add to the backend's SYN+ACK
    client: ConnTuple


def conn_wire(conn: Conn) -> tuple[bytes, bytes, bytes, bytes, int, int, int, int, int]:
    """The fields of `conn` as both datapaths store them: (client, reply, backend, tunnel_src, mode, state, vip_id,
    backend_id, flags), tuples packed to 16 bytes (reply None: zeros), addresses 4 bytes (empty: zeros), a mode name
    (consts.CONN_MODES) as its number. ValueError for what does not fit the C struct; what fits but the table
    refuses (an unknown mode, state or flag) is the table's EINVAL."""
    reply = _NO_TUPLE if conn.reply is None else ConnTuple.pack(conn.reply)
    client = ConnTuple.pack(conn.client)
    backend, tunnel_src = conn.backend or _NO_ADDRESS, conn.tunnel_src or _NO_ADDRESS
    mode, state, vip_id, backend_id, flags = conn.mode, conn.state, conn.vip_id, conn.backend_id, conn.flags
    if type(backend) is bytes and type(tunnel_src) is bytes and len(backend) == 4 and len(tunnel_src) == 4 \
            and type(mode) is int and type(state) is int and type(vip_id) is int and type(backend_id) is int \
            and type(flags) is int and 0 <= mode < 256 and 0 <= state < 256 and 0 <= vip_id < 1 << 32 \
            and 0 <= backend_id < 1 << 32 and 0 <= flags < 1 << 16:
        return client, reply, backend, tunnel_src, mode, state, vip_id, backend_id, flags
    return (client, reply, _addr4(backend, "backend"), _addr4(tunnel_src, "tunnel source"),
            _uint(consts.CONN_MODES.get(mode, mode), 8, "mode"), _uint(state, 8, "state"),
            _uint(vip_id, 32, "VIP id"), _uint(backend_id, 32, "backend id"), _uint(flags, 16, "flags"))


_NO_TUPLE = bytes(CONN_TUPLE_SIZE)             # a dsr/ipip/gre connection's reply tuple
_NO_ADDRESS = bytes(4)


class RingBackend(NamedTuple):
    """A backend a Maglev ring slot can name (`struct ps_ring_backend`): what LB needs to add its connection."""
    address: bytes              # 4 bytes: nat's new destination, dsr's next hop, the tunnel's end
    port: int                   # nat: the new destination port; dsr/ipip/gre keep the VIP's
    mode: int                   # consts.CONN_NAT, CONN_DSR, CONN_IPIP or CONN_GRE
    backend_id: int             # the slow path's tag for the connection and its events
    tunnel_src: bytes = bytes(4)    # ipip/gre: the outer source


def ring_backend_wire(b: RingBackend) -> tuple[bytes, bytes, int, int, int]:
    """(address, tunnel_src, port, mode, backend_id) as both datapaths store them. ValueError for what does not
    fit the C struct; a mode that fits but no ring takes is the ring's EINVAL."""
    b = RingBackend(*b)
    return (_addr4(b.address, "backend"), _addr4(b.tunnel_src, "tunnel source"), _uint(b.port, 16, "port"),
            _uint(b.mode, 8, "mode"), _uint(b.backend_id, 32, "backend id"))


def ring_changes(changes) -> list[tuple[int, int]]:
    """ring_write's (slot, value) pairs as C takes them: 32-bit slots; values backend indexes, -1 as RING_EMPTY."""
    out = []
    for slot, value in changes:
        if value == -1:
            value = consts.RING_EMPTY
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < consts.RING_MAX_BACKENDS:
            raise ValueError(f"ring slot value {value!r} is neither -1 nor a backend index "
                             f"0..{consts.RING_MAX_BACKENDS - 1}")
        out.append((_uint(slot, 32, "ring slot"), value))
    return out


def conn_max(max_conns) -> int:
    """conn_config's bound as C takes it (a uint32); its range is the table's EINVAL."""
    return _uint(max_conns, 32, "max_conns")


def splice_max(max_splices) -> int:
    """splice_config's bound as C takes it (a uint32); its range is the table's EINVAL."""
    return _uint(max_splices, 32, "max_splices")


def conn_timeouts(timeouts_ms) -> dict[int, int]:
    """conn_config's {state: ms}, checked: states CS_SYN..CS_UDP, 32-bit values."""
    out = {}
    for state, ms in dict(timeouts_ms).items():
        if state not in consts.CT_TIMEOUTS_MS:
            raise ValueError(f"no connection state {state!r} (1..{consts.CS_COUNT - 1})")
        out[state] = _uint(ms, 32, f"timeout of state {state}")
    return out


def _uint(value, bits: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{what} {value!r} is not a {bits}-bit unsigned integer")
    return value


def _addr4(addr, what: str) -> bytes:
    if not isinstance(addr, (bytes, bytearray, memoryview)) or len(addr) != 4:
        raise ValueError(f"the {what} address must be 4 bytes, not {addr!r}")
    return bytes(addr)


class FlowTableError(OSError):
    """A put the flow table refused; errno says why (EINVAL bad actions, ENOSPC too many subtables)."""


class Splice(NamedTuple):
    """One direction of a spliced TCP connection (`struct ps_splice`; docs/L7.md).

    None leaves an address or port as it is; deltas are added modulo 2**32 (a negative one wraps), and
    `timestamps` says whether both sides use timestamps, so TSval and TSecr are shifted.
    """
    src: bytes | None = None     # 4 bytes: the new IPv4 source
    dst: bytes | None = None     # 4 bytes: the new IPv4 destination
    sport: int | None = None
    dport: int | None = None
    seq_delta: int = 0           # added to the sequence number
    ack_delta: int = 0           # added to the acknowledgement number (with ACK set) and every SACK edge
    tsval_delta: int = 0
    tsecr_delta: int = 0         # added to TSecr (with ACK set)
    timestamps: bool = False


def splice_wire(splice: Splice) -> tuple[bytes, bytes, int, int, int, int, int, int, int]:
    """The fields of `splice` as `struct ps_splice` holds them: (src, dst, sport, dport, seq_delta, ack_delta,
    tsval_delta, tsecr_delta, flags), an address or port left as it is stored as zeros with its SET flag clear,
    deltas modulo 2**32. ValueError for what does not fit the C struct."""
    splice = Splice(*splice)
    flags = consts.SPLICE_TIMESTAMPS if splice.timestamps else 0
    src = dst = _NO_ADDRESS
    sport = dport = 0
    if splice.src is not None:
        src, flags = _addr4(splice.src, "splice source"), flags | consts.SPLICE_SET_SRC
    if splice.dst is not None:
        dst, flags = _addr4(splice.dst, "splice destination"), flags | consts.SPLICE_SET_DST
    if splice.sport is not None:
        sport, flags = _uint(splice.sport, 16, "splice source port"), flags | consts.SPLICE_SET_SPORT
    if splice.dport is not None:
        dport, flags = _uint(splice.dport, 16, "splice destination port"), flags | consts.SPLICE_SET_DPORT
    deltas = []
    for name in ("seq_delta", "ack_delta", "tsval_delta", "tsecr_delta"):
        value = getattr(splice, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"Splice.{name} {value!r} is not an integer")
        deltas.append(value & 0xFFFFFFFF)
    return (src, dst, sport, dport, *deltas, flags)


def splice_from_wire(seq_delta: int, ack_delta: int, tsval_delta: int, tsecr_delta: int, flags: int) -> Splice:
    """The Splice a connection's stored deltas make (conn_get_splice): it sets no address or port."""
    return Splice(seq_delta=seq_delta, ack_delta=ack_delta, tsval_delta=tsval_delta, tsecr_delta=tsecr_delta,
                  timestamps=bool(flags & consts.SPLICE_TIMESTAMPS))


class SpliceStats(NamedTuple):
    """`struct ps_splice_stats`: what one or more rewrites did."""
    rewritten: int = 0
    not_tcp: int = 0
    bad_header: int = 0
    bad_options: int = 0
    sack_blocks: int = 0
    timestamps: int = 0


class SpliceResult(NamedTuple):
    result: int                  # consts.SPLICE_*
    frame: bytes
    stats: SpliceStats


class CaptureRecord(NamedTuple):
    """One frame a capture copied (`struct ps_capture_record`)."""
    capture: int        # the slot, 0..MAX_CAPTURES-1
    direction: int      # consts.TAP_IN or TAP_OUT
    port_no: int
    wire_len: int       # the frame's size; `data` may hold fewer bytes (the snap length)
    ts_ns: int          # CLOCK_REALTIME when copied
    data: bytes
