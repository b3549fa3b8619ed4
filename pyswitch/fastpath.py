"""The C fast path (csrc/), wrapped: the only module that imports pyswitch._fastpath.

Same names, signatures and answers as the pure-Python twin in pyswitch/refpath/
(docs/DATAPATH.md is the contract).  Buffers the C calls fill are allocated once
per object, so a call costs one cffi crossing plus the conversion of its result.
"""
from __future__ import annotations

import errno as _errno
import os
import struct

from . import __version__, consts
from .actions import Action
from .datapath_args import addr16, mac6, port_bitmap
from .l7 import http_types as l7
from .datapath_types import (CONN_TUPLE_SIZE, Conn, ConnEvent, ConnTuple, FlowInfo, FlowTableError, GsoPlan,
                             CaptureRecord, Output, ParseResult, RingBackend, Splice, SpliceResult, SpliceStats, Upcall, conn_max,
                             conn_timeouts, conn_wire, ring_backend_wire, ring_changes, splice_from_wire,
                             splice_max, splice_wire)

try:
    from ._fastpath import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"pyswitch._fastpath is not built ({exc}); rebuild with pip install .") from exc

_BUILT_VERSION = ffi.string(lib.ps_version()).decode()
if _BUILT_VERSION != __version__:
    raise ImportError(
        f"pyswitch._fastpath was built for pyswitch {_BUILT_VERSION}, but this is pyswitch {__version__}; "
        "rebuild with pip install ."
    )

_VNET_ZERO = bytes(consts.VNET_HDR_SIZE)
_FT_STAT_NAMES = ("flows", "max_flows", "subtables", "inserts", "modifies", "deletes", "expired",
                  "evictions", "refused", "emc_hits", "masked_hits", "misses")
_DP_STAT_NAMES = ("rx_packets", "tx_packets", "upcalls", "upcall_dropped", "bad_port", "routed", "route_dropped",
                  "martian", "decap_errors")
_CT_STAT_NAMES = ("conns", "max_conns", "inserts", "deletes", "expired", "evictions", "refused", "hits", "misses",
                  "reply_misses", "events_dropped", "bytes_used", "bytes_per_conn", "splices", "max_splices",
                  "splice_refused", "splice_rewritten", "splice_dropped", "l7_upcalls")
_RING_STAT_NAMES = ("rings", "slots_written", "scheduled", "bytes_used")
_VIP_GUARD_STAT_NAMES = ("embryonic", "embryonic_evicted", "embryonic_refused", "upcalls_limited")
_PORT_STAT_NAMES = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_dropped", "rx_errors", "tx_dropped")
_DUMP_CHUNK = 256            # flows (connections, events) copied out per ps_ft_dump() (ps_dp_conn_*) call
_DATA_SIZES = {consts.ACT_SET_ETH_SRC: 6, consts.ACT_SET_ETH_DST: 6,     # action type: bytes of data it carries
               consts.ACT_SET_IPV4_SRC: 4, consts.ACT_SET_IPV4_DST: 4}


def _key_bytes(key, what="key") -> bytes:
    if len(key) != consts.KEY_SIZE:
        raise ValueError(f"a flow {what} is {consts.KEY_SIZE} bytes, not {len(key)}")
    return bytes(key)


def _vnet_bytes(vnet) -> bytes:
    if vnet is None:
        return _VNET_ZERO
    if len(vnet) != consts.VNET_HDR_SIZE:
        raise ValueError(f"a vnet header is {consts.VNET_HDR_SIZE} bytes, not {len(vnet)}")
    return bytes(vnet)


class _ActionBuffer:
    """A preallocated `struct ps_action[16]` that Action tuples are written into."""

    def __init__(self):
        self.array = ffi.new("struct ps_action[]", consts.MAX_ACTIONS)
        self._held = None           # the tuple the array holds now: the slow path executes one again and again

    def fill(self, actions) -> int:
        """Writes `actions` and returns their count; more than MAX_ACTIONS is refused by C (-EINVAL)."""
        n = len(actions)
        if actions is self._held:   # only ever a tuple, which cannot have changed since
            return n
        self._held = actions if type(actions) is tuple else None
        if n > consts.MAX_ACTIONS:
            return n
        array = self.array
        for i, a in enumerate(actions):
            c = array[i]
            c.type = a.type
            c.arg = a.arg
            c.arg32 = a.arg32
            data = bytes(a.data[:16])
            c.data = data + bytes(16 - len(data))
            c.ports = a.ports
        return n


def _actions_from_c(array, n) -> tuple[Action, ...]:
    """Action tuples from C: data is the 6-byte address for SET_ETH_*, the 4-byte one for SET_IPV4_*, else empty."""
    out = []
    for i in range(n):
        c = array[i]
        data = bytes(ffi.buffer(c.data, _DATA_SIZES.get(c.type, 0)))
        out.append(Action(c.type, c.arg, c.arg32, data, c.ports))
    return tuple(out)


# struct ps_flow_info and struct ps_action, read with one unpack each instead of a cffi access per field (a dump of
# 65536 flows, which the L2 stage's refresh reads, took 4.3 us a flow that way).  Checked against the build.
_FLOW_INFO_HEAD = struct.Struct(f"={consts.KEY_SIZE}s{consts.KEY_SIZE}sIIQQQqII")
_ACTION = struct.Struct("=HHI16sQ")
assert _FLOW_INFO_HEAD.size == ffi.offsetof("struct ps_flow_info", "actions") and \
    _ACTION.size == ffi.sizeof("struct ps_action") and \
    [ffi.offsetof("struct ps_flow_info", f) for f in ("priority", "cookie", "used_ms", "n_actions")] == \
    [2 * consts.KEY_SIZE, 2 * consts.KEY_SIZE + 8, 2 * consts.KEY_SIZE + 32, 2 * consts.KEY_SIZE + 40], \
    "struct ps_flow_info changed: update _FLOW_INFO_HEAD"


_FLOW_INFO_SIZE = ffi.sizeof("struct ps_flow_info")


def _flow_info(info) -> FlowInfo:
    """The flow `info` (a `struct ps_flow_info *`) points at."""
    raw = ffi.buffer(info, _FLOW_INFO_SIZE)
    key, mask, priority, idle_timeout_ms, cookie, packets, nbytes, used_ms, n_actions, _pad = \
        _FLOW_INFO_HEAD.unpack_from(raw)
    actions = []
    for i in range(n_actions):
        type_, arg, arg32, data, ports = _ACTION.unpack_from(raw, _FLOW_INFO_HEAD.size + i * _ACTION.size)
        actions.append(Action(type_, arg, arg32, data[:_DATA_SIZES.get(type_, 0)], ports))
    return FlowInfo(key, mask, priority, idle_timeout_ms, cookie, packets, nbytes, used_ms, tuple(actions))


# Function-level twins.

_parse_key = ffi.new("struct ps_flow_key *")
_parse_result = ffi.new("struct ps_parse_result *")
_parse_key_buf = ffi.buffer(_parse_key)


def parse(frame, in_port=0, max_frame=0, is_gso=False) -> ParseResult:
    error = lib.ps_parse(frame, len(frame), in_port, max_frame, 1 if is_gso else 0, _parse_key, _parse_result)
    return ParseResult(error, _parse_key_buf[:], _parse_result.l3_ofs, _parse_result.l4_ofs)


def csum(data, initial=0) -> int:
    return lib.ps_csum(data, len(data), initial)


def csum_update16(check, old, new) -> int:
    return lib.ps_csum_update16(check, old, new)


def csum_update32(check, old, new) -> int:
    return lib.ps_csum_update32(check, old, new)


_apply_actions = _ActionBuffer()


def actions_apply(frame, vnet, in_port, actions) -> list[Output]:
    frame = bytes(frame)
    n = _apply_actions.fill(actions)
    # Enough room for every output at its largest: each OUTPUT/UPCALL emits once, a FLOOD once per port.
    n_out = 0
    n_push = 0
    for a in actions:
        if a.type in (consts.ACT_OUTPUT, consts.ACT_UPCALL, consts.ACT_ROUTE, consts.ACT_LB, consts.ACT_LB_REPLY):
            n_out += 1
        elif a.type == consts.ACT_FLOOD:
            n_out += bin(a.ports).count("1")
        elif a.type == consts.ACT_PUSH_VLAN:
            n_push += 1
    n_out = max(n_out, 1)
    out_buf = ffi.new("uint8_t[]", n_out * (len(frame) + 4 * n_push) + 1)
    out_ports = ffi.new("uint16_t[]", n_out)
    out_sizes = ffi.new("uint32_t[]", n_out)
    out_vnets = ffi.new("struct ps_vnet_hdr[]", n_out)
    out_userdata = ffi.new("uint32_t[]", n_out)
    vnet_c = ffi.from_buffer("struct ps_vnet_hdr *", bytearray(_vnet_bytes(vnet)))
    count = lib.ps_actions_apply(frame, len(frame), vnet_c, in_port, _apply_actions.array, n,
                                 out_buf, len(out_buf), out_ports, out_sizes, out_vnets, out_userdata, n_out)
    if count == -_errno.EINVAL:
        raise FlowTableError(_errno.EINVAL, "invalid action list (unknown type, more than 16 actions, "
                                            "or OUTPUT to a port >= 64)")
    if count < 0:
        raise MemoryError("actions_apply: outputs did not fit")
    outputs = []
    ofs = 0
    buf = ffi.buffer(out_buf)
    vnets = ffi.buffer(out_vnets)
    for i in range(count):
        size = out_sizes[i]
        outputs.append(Output(out_ports[i], buf[ofs:ofs + size],
                              vnets[i * consts.VNET_HDR_SIZE:(i + 1) * consts.VNET_HDR_SIZE], out_userdata[i]))
        ofs += size
    return outputs


# Software offloads for frames without a vnet header (offload.c): bytes in, bytes out, OSError(errno) refusals.

def _offload_errno(r, what):
    if r < 0:
        raise OSError(-r, f"{what}: {os.strerror(-r)}")


def offload_rx_csum(frame, vnet=None) -> bytes:
    """`ps_offload_rx_csum`: `vnet` (10 bytes, default all zero) with NEEDS_CSUM, csum_start and csum_offset set if
    `frame`'s TCP/UDP checksum field holds its pseudo-header's sum, as a partial checksum does; else `vnet`."""
    out = bytearray(_vnet_bytes(vnet))
    lib.ps_offload_rx_csum(bytes(frame), len(frame), ffi.from_buffer("struct ps_vnet_hdr *", out))
    return bytes(out)


def offload_csum(frame, vnet) -> bytes:
    """`ps_offload_csum`: `frame` with the partial checksum `vnet` describes completed; OSError(EINVAL) if its
    field lies outside the frame."""
    out = bytearray(frame)
    vnet_c = ffi.from_buffer("struct ps_vnet_hdr *", bytearray(_vnet_bytes(vnet)))
    _offload_errno(lib.ps_offload_csum(ffi.from_buffer("uint8_t[]", out), len(out), vnet_c), "offload_csum")
    return bytes(out)


def _splice_flags(splice: Splice) -> int:
    return ((consts.SPLICE_SET_SRC if splice.src is not None else 0)
            | (consts.SPLICE_SET_DST if splice.dst is not None else 0)
            | (consts.SPLICE_SET_SPORT if splice.sport is not None else 0)
            | (consts.SPLICE_SET_DPORT if splice.dport is not None else 0)
            | (consts.SPLICE_TIMESTAMPS if splice.timestamps else 0))


def tcp_splice_rewrite(frame, vnet, splice: Splice) -> SpliceResult:
    """`ps_tcp_splice_rewrite`: `frame` rewritten for one direction of a spliced connection, the result code
    (consts.SPLICE_*) and what this call counted. `vnet`: 10 bytes or None."""
    for name in ("src", "dst"):
        value = getattr(splice, name)
        if value is not None and len(value) != 4:
            raise ValueError(f"Splice.{name}: an IPv4 address is 4 bytes, not {len(value)}")
    out = bytearray(frame)
    sp = ffi.new("struct ps_splice *")
    sp.src = bytes(splice.src or bytes(4))
    sp.dst = bytes(splice.dst or bytes(4))
    sp.sport = splice.sport or 0
    sp.dport = splice.dport or 0
    sp.seq_delta = splice.seq_delta & 0xFFFFFFFF
    sp.ack_delta = splice.ack_delta & 0xFFFFFFFF
    sp.tsval_delta = splice.tsval_delta & 0xFFFFFFFF
    sp.tsecr_delta = splice.tsecr_delta & 0xFFFFFFFF
    sp.flags = _splice_flags(splice)
    stats = ffi.new("struct ps_splice_stats *")
    vnet_c = ffi.from_buffer("struct ps_vnet_hdr *", bytearray(_vnet_bytes(vnet)))
    result = lib.ps_tcp_splice_rewrite(ffi.from_buffer("uint8_t[]", out), len(out), vnet_c, sp, stats)
    return SpliceResult(result, bytes(out), SpliceStats(*(getattr(stats, f) for f in SpliceStats._fields)))


def tcp_splice_check(frame) -> int:
    """`ps_tcp_splice_check`: the result code tcp_splice_rewrite would give `frame` (with any splice), reading
    only: what LB asks of a spliced connection's segment before it forwards it."""
    frame = bytes(frame)
    return lib.ps_tcp_splice_check(frame, len(frame))


def _gso_plan(frame, vnet):
    plan = ffi.new("struct ps_gso *")
    vnet_c = ffi.from_buffer("struct ps_vnet_hdr *", bytearray(_vnet_bytes(vnet)))
    _offload_errno(lib.ps_gso_plan(bytes(frame), len(frame), vnet_c, plan), "gso_plan")
    return plan


def gso_plan(frame, vnet) -> GsoPlan:
    """`ps_gso_plan`: how the GSO super-frame `frame` is cut as `vnet` says; OSError(EOPNOTSUPP) for a GSO type
    other than TCPV4, TCPV6, UDP_L4, OSError(EINVAL) for a frame that is not what `vnet` says."""
    p = _gso_plan(frame, vnet)
    return GsoPlan(p.l3_ofs, p.l4_ofs, p.hdr_size, p.seg_payload, p.payload, p.n_segs, bool(p.ipv4), p.proto)


def gso_segments(frame, vnet) -> list[bytes]:
    """Every segment of the GSO super-frame `frame` (`ps_gso_plan`, then `ps_gso_segment` for each), in order;
    refused as `gso_plan` refuses."""
    frame = bytes(frame)
    plan = _gso_plan(frame, vnet)
    out = ffi.new("uint8_t[]", plan.hdr_size + plan.seg_payload)
    buf = ffi.buffer(out)
    return [buf[:lib.ps_gso_segment(frame, plan, k, out)] for k in range(plan.n_segs)]


# L7: the first bytes of a client's stream (csrc/http.c, csrc/tls_sni.c; docs/L7.md).  A request keeps
# its C struct (HttpRequest.native), which http_find_header and http_find_cookie read again.
def _span(ofs, size):
    return None if ofs == l7.HTTP_ABSENT else (ofs, size)


def _stream_bytes(data) -> bytes:
    # cffi passes only bytes as `const uint8_t *`; the twin takes any bytes-like, so this does too.
    return data if type(data) is bytes else bytes(data)


# struct ps_http_request up to headers[]: verdict, reason, head_size, method, path, query, host (ofs, len each),
# version_minor, content_length, chunked, n_headers.  Checked against the compiled layout, like _CONN_HEAD.
_HTTP_HEAD = struct.Struct("=iiIIIIIIIIIiqiI")
assert ffi.offsetof("struct ps_http_request", "headers") == _HTTP_HEAD.size == 64, "struct ps_http_request changed"


def http_parse_request(data, max_head=0) -> l7.HttpRequest:
    """The request head at the start of `data` (ps_http_parse_request), reading at most `max_head` bytes."""
    data = _stream_bytes(data)
    req = ffi.new("struct ps_http_request *")
    verdict = lib.ps_http_parse_request(data, len(data), max_head, req)
    if verdict != l7.HTTP_COMPLETE:
        return l7.HttpRequest(verdict, req.reason)
    buf = ffi.buffer(req)
    (verdict, reason, head_size, method_ofs, method_len, path_ofs, path_len, query_ofs, query_len, host_ofs,
     host_len, version_minor, content_length, chunked, n_headers) = _HTTP_HEAD.unpack_from(buf)
    # One unpack of the used part of headers[] instead of four cffi attribute reads per field.
    v = struct.unpack_from(f"={4 * n_headers}I", buf, _HTTP_HEAD.size)
    headers = tuple([l7.HttpHeader((v[i], v[i + 1]), (v[i + 2], v[i + 3])) for i in range(0, len(v), 4)])
    return l7.HttpRequest(verdict, reason, head_size, (method_ofs, method_len), (path_ofs, path_len),
                          _span(query_ofs, query_len), _span(host_ofs, host_len), version_minor, content_length,
                          chunked == 1, headers, native=req)


def _native(request, data):
    if request.native is None:
        raise ValueError("the request was not parsed by pyswitch.fastpath.http_parse_request, or is not complete")
    if len(data) < request.head_size:   # C reads the spans it found: other, shorter bytes would be read past
        raise ValueError(f"{len(data)} bytes given, the request's head was {request.head_size}")
    return request.native


def http_find_header(data, request, name, start=0) -> int:
    """The index in request.headers of the first field at or after `start` named `name` (any case), or -1."""
    name = bytes(name)
    data = _stream_bytes(data)
    return lib.ps_http_find_header(data, _native(request, data), name, len(name), start)


_cookie_value = ffi.new("uint32_t[2]")


def http_find_cookie(data, request, name):
    """The (offset, length) of the first cookie named `name` in any Cookie field, or None."""
    name = bytes(name)
    data = _stream_bytes(data)
    if not lib.ps_http_find_cookie(data, _native(request, data), name, len(name), _cookie_value, _cookie_value + 1):
        return None
    return (_cookie_value[0], _cookie_value[1])


_sni = ffi.new("struct ps_tls_sni *")


def tls_client_hello_sni(data) -> l7.TlsSni:
    """The first host_name of the ClientHello in the TLS record at the start of `data` (ps_tls_client_hello_sni)."""
    data = _stream_bytes(data)
    verdict = lib.ps_tls_client_hello_sni(data, len(data), _sni)
    if verdict == l7.TLS_SNI:
        return l7.TlsSni(verdict, 0, _sni.hello_size, (_sni.name_ofs, _sni.name_len))
    if verdict == l7.TLS_NO_SNI:
        return l7.TlsSni(verdict, 0, _sni.hello_size)
    return l7.TlsSni(verdict, _sni.reason)


# struct ps_conn up to its counters, the part conn_add reads: client, reply, backend, tunnel_src, mode, state, flags,
# vip_id, backend_id, pad.  Checked against the compiled layout, so a change to the struct fails here, loudly.
_CONN_HEAD = struct.Struct("=16s16s4s4sBBHIII")
assert [ffi.offsetof("struct ps_conn", f) for f in ("reply", "backend", "tunnel_src", "mode", "state", "flags",
                                                    "vip_id", "backend_id", "pad", "packets")] == \
    [16, 32, 36, 40, 41, 42, 44, 48, 52, _CONN_HEAD.size], "struct ps_conn changed: update _CONN_HEAD"


def _tuple_into(ptr, field, raw: bytes) -> None:
    ffi.memmove(ffi.addressof(ptr, field), raw, CONN_TUPLE_SIZE)


def _tuple_from(ptr, field) -> ConnTuple:
    return ConnTuple.unpack(ffi.buffer(ffi.addressof(ptr, field), CONN_TUPLE_SIZE))


def _conn_from_c(c) -> Conn:
    reply = bytes(ffi.buffer(ffi.addressof(c, "reply"), CONN_TUPLE_SIZE))
    return Conn(_tuple_from(c, "client"), None if reply == bytes(CONN_TUPLE_SIZE) else ConnTuple.unpack(reply),
                bytes(ffi.buffer(c.backend, 4)), bytes(ffi.buffer(c.tunnel_src, 4)), c.mode, c.state, c.vip_id,
                c.backend_id, c.packets, c.bytes, c.created_ms, c.used_ms, c.flags)


def _splice_into(sp, splice: Splice) -> None:
    """Writes `splice` into the `struct ps_splice *` `sp` (ValueError for what does not fit it)."""
    src, dst, sport, dport, seq_delta, ack_delta, tsval_delta, tsecr_delta, flags = splice_wire(splice)
    sp.src, sp.dst, sp.sport, sp.dport = src, dst, sport, dport
    sp.seq_delta, sp.ack_delta, sp.tsval_delta, sp.tsecr_delta = seq_delta, ack_delta, tsval_delta, tsecr_delta
    sp.flags = flags


def _splice_from_c(sp) -> Splice:
    return splice_from_wire(sp.seq_delta, sp.ack_delta, sp.tsval_delta, sp.tsecr_delta, sp.flags)


def _now_arg(now_ms) -> int:
    """None and -1 both mean "read the monotonic clock" (C's -1)."""
    return -1 if now_ms is None else now_ms


def _uint(value, bits, what) -> int:
    """Out-of-range arguments are the contract's EINVAL (ValueError), not cffi's OverflowError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{what} {value!r} is not a {bits}-bit unsigned integer")
    return value


_TAKE_BUF_LIMIT = 1 << 32            # take()'s buffer grows by doubling up to the largest size C can report


def _port_no(value) -> int:
    """A port number C's uint16_t cannot hold names no port: C is handed one it refuses as it refuses port 64
    (-EINVAL or -ENOENT), so the error is the twin's rather than cffi's OverflowError."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF:
        return value
    return 0xFFFF


def _ip4(addr, what="prefix") -> bytes:
    if len(addr) != 4:
        raise ValueError(f"an IPv4 {what} is 4 bytes, not {len(addr)}")
    return bytes(addr)




def _ring_errno(r, what):
    """A ring call's negative errno as the contract's exception: EINVAL ValueError, the rest OSError."""
    if r == -_errno.EINVAL:
        raise ValueError(f"{what}: invalid argument")
    if r < 0:
        raise OSError(-r, f"{what}: {os.strerror(-r)}")


def _route_errno(r, what):
    """Turns a negative errno from an LPM or routing-table call into the contract's exception."""
    if r == -_errno.EINVAL:
        raise ValueError(f"{what}: invalid argument")
    if r < 0:
        raise OSError(-r, f"{what}: {os.strerror(-r)}")
    return r


class Lpm:
    """An IPv4 longest-prefix-match table of its own (`struct ps_lpm`, DIR-24-8)."""

    def __init__(self, max_routes=65536, max_tbl8=4096):
        lpm = lib.ps_lpm_new(max_routes, max_tbl8)
        if lpm == ffi.NULL:
            raise MemoryError(f"cannot create an LPM of {max_routes} routes and {max_tbl8} tbl8 groups")
        self._lpm = ffi.gc(lpm, lib.ps_lpm_free)

    def add(self, prefix, plen, nh_id):
        r = lib.ps_lpm_add(self._lpm, _ip4(prefix), _uint(plen, 8, "plen"), _uint(nh_id, 32, "next-hop id"))
        _route_errno(r, f"route {bytes(prefix).hex()}/{plen} -> {nh_id}")

    def delete(self, prefix, plen) -> bool:
        r = lib.ps_lpm_del(self._lpm, _ip4(prefix), _uint(plen, 8, "plen"))
        return _route_errno(r, f"route {bytes(prefix).hex()}/{plen}") == 1

    def lookup(self, addr) -> int:
        return lib.ps_lpm_lookup(self._lpm, _ip4(addr, "address"))

    def __len__(self):
        return lib.ps_lpm_count(self._lpm)


class _FlowTableOps:
    """Flow table calls shared by FlowTable (its own table) and Datapath (the datapath's table)."""

    _ft = ffi.NULL

    def _ft_init(self):
        self._actions = _ActionBuffer()
        self._key = ffi.new("struct ps_flow_key *")
        self._mask = ffi.new("struct ps_flow_key *")
        self._key_buf = ffi.buffer(self._key)
        self._mask_buf = ffi.buffer(self._mask)
        self._info = ffi.new("struct ps_flow_info *")
        self._dump = ffi.new("struct ps_flow_info[]", _DUMP_CHUNK)
        self._next = ffi.new("uint32_t *")
        self._cookies = ffi.new("uint64_t[]", 1024)
        self._ft_stats = ffi.new("struct ps_ft_stats *")

    def _load(self, key, mask=None):
        self._key_buf[:] = _key_bytes(key)
        if mask is not None:
            self._mask_buf[:] = _key_bytes(mask, "mask")

    def _put(self, key, mask, priority, actions, idle_timeout_ms=0, cookie=0, now_ms=-1) -> int:
        self._load(key, mask)
        n = self._actions.fill(actions)
        r = lib.ps_ft_put(self._ft, self._key, self._mask, priority, self._actions.array, n,
                          idle_timeout_ms, cookie, now_ms)
        if r < 0:
            why = "no room: too many subtables, or every flow permanent" if r == -_errno.ENOSPC else "invalid actions"
            raise FlowTableError(-r, f"flow table refused the flow: {why} ({os.strerror(-r)})")
        return r

    def _delete(self, key, mask, priority) -> bool:
        self._load(key, mask)
        return lib.ps_ft_del(self._ft, self._key, self._mask, priority) == 1

    def _delete_loose(self, key, mask) -> int:
        self._load(key, mask)
        return lib.ps_ft_del_loose(self._ft, self._key, self._mask)

    def _flush(self):
        lib.ps_ft_flush(self._ft)

    def _lookup(self, key, size, now_ms=-1):
        self._load(key)
        if lib.ps_ft_lookup(self._ft, self._key, size, now_ms, self._info):
            return _flow_info(self._info)
        return None

    def _expire(self, now_ms=-1, max_flows=1024) -> list[int]:
        if max_flows > len(self._cookies):
            self._cookies = ffi.new("uint64_t[]", max_flows)
        n = lib.ps_ft_expire(self._ft, now_ms, self._cookies, max_flows)
        return list(self._cookies[0:n])

    def _dump_all(self) -> list[FlowInfo]:
        flows = []
        cursor = 0
        while True:
            n = lib.ps_ft_dump(self._ft, cursor, self._dump, _DUMP_CHUNK, self._next)
            flows.extend(_flow_info(self._dump + i) for i in range(n))
            cursor = self._next[0]
            if cursor == 0:
                return flows

    def _ft_stats_dict(self) -> dict:
        lib.ps_ft_get_stats(self._ft, self._ft_stats)
        s = self._ft_stats
        return {name: getattr(s, name) for name in _FT_STAT_NAMES}


class FlowTable(_FlowTableOps):
    """A flow table of its own (`struct ps_flowtable`), outside any datapath."""

    def __init__(self, max_flows=65536, emc_entries=8192):
        ft = lib.ps_ft_new(max_flows, emc_entries)
        if ft == ffi.NULL:
            raise ValueError(f"cannot create a flow table of {max_flows} flows (max_flows must be >= 1)")
        self._ft = ffi.gc(ft, lib.ps_ft_free)
        self._ft_init()

    put = _FlowTableOps._put
    delete = _FlowTableOps._delete
    delete_loose = _FlowTableOps._delete_loose
    flush = _FlowTableOps._flush
    lookup = _FlowTableOps._lookup
    expire = _FlowTableOps._expire
    dump = _FlowTableOps._dump_all
    stats = _FlowTableOps._ft_stats_dict

    def __len__(self):
        lib.ps_ft_get_stats(self._ft, self._ft_stats)
        return self._ft_stats.flows


class Datapath(_FlowTableOps):
    """The C datapath (`struct ps_dp`): ports, one flow table, the batch loop.

    `workers` > 1 runs the ports on that many C threads (csrc/workers.c, docs/DATAPATH.md "Workers"); every
    call here then happens while they wait, and serve() is where they forward."""

    kind = "c"
    _dp = ffi.NULL              # until __init__ has one: close() and __del__ of a failed __init__ do nothing

    def __init__(self, max_flows=65536, emc_entries=8192, max_upcalls=256, workers=1):
        dp = lib.ps_dp_new(max_flows, emc_entries, max_upcalls)
        if dp == ffi.NULL:
            raise ValueError(f"cannot create a datapath of {max_flows} flows and {max_upcalls} upcalls")
        r = lib.ps_dp_set_workers(dp, _uint(workers, 32, "workers"))
        if r < 0:
            lib.ps_dp_free(dp)
            if r == -_errno.EINVAL:
                raise ValueError(f"workers must be 1 to {consts.MAX_WORKERS}, got {workers}")
            raise OSError(-r, f"cannot start {workers} datapath workers: {os.strerror(-r)}")
        self._dp = dp
        self._ft = lib.ps_dp_flowtable(dp)
        self._ft_init()
        self._upcalls = ffi.new("struct ps_upcall **")
        self._port_stats = ffi.new("struct ps_port_stats *")
        self._dp_stats = ffi.new("struct ps_dp_stats *")
        self._take_buf = ffi.new("uint8_t[]", consts.FRAME_MAX)
        self._take_vnet = ffi.new("struct ps_vnet_hdr *")
        self._inject_vnet = ffi.new("struct ps_vnet_hdr *")
        self._inject_vnet_buf = ffi.buffer(self._inject_vnet)
        self._nexthop = ffi.new("struct ps_nexthop *")
        self._neigh = ffi.new("struct ps_neigh *")
        self._conn = ffi.new("struct ps_conn *")
        self._conn_tuple = ffi.new("struct ps_conn_tuple *")
        self._conn_dump = ffi.new("struct ps_conn[]", _DUMP_CHUNK)
        self._conn_events = ffi.new("struct ps_conn_event[]", _DUMP_CHUNK)
        self._conn_timeouts = ffi.new("uint32_t[]", consts.CS_COUNT)
        self._ct_stats = ffi.new("struct ps_ct_stats *")
        self._splices = ffi.new("struct ps_splice[2]")      # to_backend, to_client
        self._ring_backend = ffi.new("struct ps_ring_backend *")
        self._ring_stats = ffi.new("struct ps_ring_stats *")
        self._vip_guard = ffi.new("struct ps_vip_guard *")
        self._vip_guard_stats = ffi.new("struct ps_vip_guard_stats *")
        self._capture_records = ffi.new("struct ps_capture_record **")
        self._u64_pair = ffi.new("uint64_t[2]")
        self._timeouts_set = dict(consts.CT_TIMEOUTS_MS)     # what C holds: ps_dp_conn_config() takes all of them
        self.workers = lib.ps_dp_n_workers(dp)

    def close(self):
        # Joins the worker threads before anything they use is freed.
        if self._dp != ffi.NULL:
            lib.ps_dp_free(self._dp)
            self._dp = ffi.NULL
            self._ft = ffi.NULL

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Ports.

    def add_port(self, port_no, kind, ifindex_or_fd=-1, ring_frames=256, max_frame=0):
        kind_no = consts.PORT_KINDS.get(kind)
        if kind_no is None:
            raise OSError(_errno.EINVAL, f"port {port_no}: unknown port kind {kind!r} "
                                         f"(one of {', '.join(consts.PORT_KINDS)})")
        r = lib.ps_dp_port_add(self._dp, _port_no(port_no), kind_no, ifindex_or_fd, ring_frames, max_frame)
        if r < 0:
            raise OSError(-r, f"cannot add {kind} port {port_no} ({ifindex_or_fd}): {os.strerror(-r)}")

    def del_port(self, port_no):
        r = lib.ps_dp_port_del(self._dp, _port_no(port_no))
        if r < 0:
            raise OSError(-r, f"cannot delete port {port_no}: {os.strerror(-r)}")

    def port_stats(self, port_no) -> dict:
        r = lib.ps_dp_port_get_stats(self._dp, _port_no(port_no), self._port_stats)
        if r < 0:
            raise OSError(-r, f"port {port_no}: {os.strerror(-r)}")
        s = self._port_stats
        return {name: getattr(s, name) for name in _PORT_STAT_NAMES}

    def port_xdp_mode(self, port_no) -> str | None:
        """How an afxdp port's XDP program is attached ("native" or "generic"); None for other kinds."""
        r = lib.ps_dp_port_xdp_mode(self._dp, _port_no(port_no))
        if r < 0:
            raise OSError(-r, f"port {port_no}: {os.strerror(-r)}")
        return consts.XDP_MODES.get(r)

    def add_wake_fd(self, fd):
        r = lib.ps_dp_add_wake_fd(self._dp, fd)
        if r < 0:
            raise OSError(-r, f"cannot add wake fd {fd}: {os.strerror(-r)}")

    def del_wake_fd(self, fd):
        r = lib.ps_dp_del_wake_fd(self._dp, fd)
        if r < 0:
            raise OSError(-r, f"cannot delete wake fd {fd}: {os.strerror(-r)}")

    # The batch loop.

    def poll(self, timeout_ms, now_ms=-1) -> int:
        r = lib.ps_dp_poll(self._dp, timeout_ms, now_ms)
        if r < 0:
            raise OSError(-r, f"datapath poll: {os.strerror(-r)}")
        return r

    def serve(self, timeout_ms, spin_us=0) -> int:
        r = lib.ps_dp_serve(self._dp, timeout_ms, spin_us)
        if r < 0:
            raise OSError(-r, f"datapath serve: {os.strerror(-r)}")
        return r

    def set_hold(self, hold_us: int) -> None:
        lib.ps_dp_set_hold(self._dp, hold_us)

    def run(self, now_ms=-1) -> int:
        return lib.ps_dp_run(self._dp, now_ms)

    def upcalls(self, start=0) -> list[Upcall]:
        n = lib.ps_dp_upcalls(self._dp, self._upcalls)
        array = self._upcalls[0]
        out = []
        for i in range(start, n):
            u = array[i]
            out.append(Upcall(
                u.in_port, u.reason, u.userdata,
                bytes(ffi.buffer(ffi.addressof(u, "key"), consts.KEY_SIZE)),
                bytes(ffi.buffer(ffi.addressof(u, "vnet"), consts.VNET_HDR_SIZE)),
                bytes(ffi.buffer(u.data, u.size)),
            ))
        return out

    def execute(self, in_port, frame, vnet, actions, now_ms=-1):
        n = self._actions.fill(actions)
        self._inject_vnet_buf[:] = _vnet_bytes(vnet)
        r = lib.ps_dp_execute(self._dp, _uint(in_port, 16, "in_port"), frame, len(frame), self._inject_vnet,
                              self._actions.array, n, now_ms)
        if r < 0:
            raise OSError(-r, f"execute: {os.strerror(-r)} ({len(actions)} actions, at most {consts.MAX_ACTIONS})")

    # Flows: the datapath's table.

    flow_put = _FlowTableOps._put
    flow_del = _FlowTableOps._delete
    flow_del_loose = _FlowTableOps._delete_loose
    flow_flush = _FlowTableOps._flush
    flow_lookup = _FlowTableOps._lookup
    flows = _FlowTableOps._dump_all
    expire = _FlowTableOps._expire

    # Taps: mirrors and captures (csrc/tap.h).

    def mirror_set(self, port_no, to_on_in=(), to_on_out=()) -> None:
        """Copies what port `port_no` receives out of the ports `to_on_in`, and what it sends out of `to_on_out`
        (both empty: no mirror).  ValueError for a target that is a source, or a source that is a target."""
        r = lib.ps_dp_mirror_set(self._dp, _port_no(port_no), port_bitmap(to_on_in), port_bitmap(to_on_out))
        if r < 0:
            raise ValueError(f"mirror of port {port_no} to {sorted(to_on_in)} (in) and {sorted(to_on_out)} (out): "
                             "ports out of range, or a mirror's target that is a source or a source that is a target")

    def capture_add(self, slot, port_no, directions, snaplen=consts.CAPTURE_MAX_SNAPLEN, program=()) -> None:
        """Starts capture `slot` on `port_no` for `directions` (TAP_IN | TAP_OUT) with the classic BPF `program`,
        a sequence of (code, jt, jf, k) (empty: every frame).  ValueError for a bad argument or program,
        OSError(EBUSY) for a slot in use."""
        insns = ffi.new("struct ps_bpf_insn[]", [tuple(i) for i in program]) if program else ffi.NULL
        r = lib.ps_dp_capture_add(self._dp, _uint(slot, 32, "capture slot"), _port_no(port_no),
                                  _uint(directions, 32, "directions"), _uint(snaplen, 32, "snaplen"), insns,
                                  len(program))
        if r == -_errno.EBUSY:
            raise OSError(_errno.EBUSY, f"capture slot {slot} is in use")
        if r < 0:
            raise ValueError(f"capture {slot} on port {port_no}: slot, port, directions {directions}, snaplen "
                             f"{snaplen} or the filter out of bounds")

    def capture_del(self, slot) -> bool:
        return lib.ps_dp_capture_del(self._dp, _uint(slot, 32, "capture slot")) == 0

    def capture_take(self) -> list[CaptureRecord]:
        """Every copy the captures made since the last take, buffer by buffer, each in the order made."""
        out = []
        for buffer in range(lib.ps_dp_capture_buffers(self._dp)):
            n = lib.ps_dp_capture_records(self._dp, buffer, self._capture_records)
            records = self._capture_records[0]
            for i in range(n):
                r = records[i]
                out.append(CaptureRecord(r.capture, r.direction, r.port_no, r.wire_len, r.ts_ns,
                                         bytes(ffi.buffer(r.data, r.cap_len))))
            lib.ps_dp_capture_clear(self._dp, buffer)
        return out

    def capture_counts(self, slot) -> tuple[int, int]:
        """(captured, dropped) of capture `slot` since it started: dropped copies found the buffer full."""
        if lib.ps_dp_capture_counts(self._dp, _uint(slot, 32, "capture slot"), self._u64_pair,
                                    self._u64_pair + 1) < 0:
            raise ValueError(f"capture slot {slot} is not 0..{consts.MAX_CAPTURES - 1}")
        return self._u64_pair[0], self._u64_pair[1]

    def stats(self) -> dict:
        lib.ps_dp_get_stats(self._dp, self._dp_stats)
        s = self._dp_stats
        out = {name: getattr(s, name) for name in _DP_STAT_NAMES}
        out.update(self._ft_stats_dict())
        out["parse_errors"] = {name: s.parse_errors[i]
                               for i, name in enumerate(consts.PARSE_ERROR_NAMES) if i > 0}
        return out

    def worker_stats(self) -> list[dict]:
        """Per worker: its datapath counters (as stats(), parse errors summed) and its flow-table lane's
        emc_hits, masked_hits and misses; one entry without workers."""
        s = self._dp_stats
        ft = self._ft_stats
        rows = []
        for worker in range(self.workers):
            lib.ps_dp_worker_get_stats(self._dp, worker, s, ft)
            row = {name: getattr(s, name) for name in _DP_STAT_NAMES}
            row["parse_errors"] = sum(s.parse_errors[i] for i in range(1, consts.PE_COUNT))
            row.update(emc_hits=ft.emc_hits, masked_hits=ft.masked_hits, misses=ft.misses)
            rows.append(row)
        return rows

    # Routing tables (docs/DATAPATH.md "Routing").

    def route_add(self, prefix, plen, nh_id):
        r = lib.ps_dp_route_add(self._dp, _ip4(prefix), _uint(plen, 8, "plen"), _uint(nh_id, 32, "next-hop id"))
        _route_errno(r, f"route {bytes(prefix).hex()}/{plen} -> {nh_id}")

    def route_del(self, prefix, plen) -> bool:
        r = lib.ps_dp_route_del(self._dp, _ip4(prefix), _uint(plen, 8, "plen"))
        return _route_errno(r, f"route {bytes(prefix).hex()}/{plen}") == 1

    def route_lookup(self, addr) -> int:
        return lib.ps_dp_route_lookup(self._dp, _ip4(addr, "address"))

    def nexthop_set(self, nh_id, kind, vlan, gateway=b"", src_mac=b""):
        nh = self._nexthop
        nh.kind = _uint(consts.NH_KINDS.get(kind, kind), 8, "next-hop kind")
        nh.vlan = _uint(vlan, 16, "VLAN")
        nh.gateway = addr16(gateway) if gateway else bytes(16)
        nh.src_mac = mac6(src_mac)
        r = lib.ps_dp_nexthop_set(self._dp, _uint(nh_id, 32, "next-hop id"), nh)
        _route_errno(r, f"next hop {nh_id} (kind {kind!r}, VLAN {vlan})")

    def nexthop_del(self, nh_id) -> bool:
        r = lib.ps_dp_nexthop_del(self._dp, _uint(nh_id, 32, "next-hop id"))
        return _route_errno(r, f"next hop {nh_id}") == 1

    def neigh_set(self, vlan, addr, mac, port, out_tci=0):
        ng = self._neigh
        ng.mac = mac6(mac)
        ng.port = _uint(port, 16, "port")
        ng.out_tci = _uint(out_tci, 16, "out_tci")
        r = lib.ps_dp_neigh_set(self._dp, _uint(vlan, 16, "VLAN"), addr16(addr), ng)
        _route_errno(r, f"neighbor {bytes(addr).hex()} on VLAN {vlan}")

    def neigh_del(self, vlan, addr) -> bool:
        r = lib.ps_dp_neigh_del(self._dp, _uint(vlan, 16, "VLAN"), addr16(addr))
        return _route_errno(r, f"neighbor {bytes(addr).hex()} on VLAN {vlan}") == 1

    def neigh_get(self, vlan, addr):
        """(mac, port, out_tci), or None if the neighbor is unknown."""
        r = lib.ps_dp_neigh_get(self._dp, _uint(vlan, 16, "VLAN"), addr16(addr), self._neigh)
        if _route_errno(r, f"neighbor {bytes(addr).hex()} on VLAN {vlan}") == 0:
            return None
        ng = self._neigh
        return bytes(ffi.buffer(ng.mac, 6)), ng.port, ng.out_tci

    # Connections (docs/DATAPATH.md "Connection table").

    def conn_config(self, max_conns, timeouts_ms=None):
        """The table's bound (None: keep it) and idle timeouts ({state: ms}; states left out keep theirs)."""
        if max_conns is None:
            max_conns = self.conn_stats()["max_conns"]
        timeouts = None
        if timeouts_ms is not None:
            timeouts = dict(self._timeouts_set)
            timeouts.update(conn_timeouts(timeouts_ms))
            for state, ms in timeouts.items():
                self._conn_timeouts[state] = ms
        r = lib.ps_dp_conn_config(self._dp, conn_max(max_conns), self._conn_timeouts if timeouts else ffi.NULL)
        if r < 0:
            raise OSError(-r, f"connection table: max_conns {max_conns}: {os.strerror(-r)}")
        if timeouts:
            self._timeouts_set = timeouts

    def conn_add(self, conn: Conn, now_ms=None):
        client, reply, backend, tunnel_src, mode, state, vip_id, backend_id, flags = conn_wire(conn)
        c = self._conn
        # One copy of everything conn_add reads (one per new connection: the slow path's hottest call).
        ffi.memmove(c, _CONN_HEAD.pack(client, reply, backend, tunnel_src, mode, state, flags, vip_id, backend_id,
                                       0), _CONN_HEAD.size)
        r = lib.ps_dp_conn_add(self._dp, c, _now_arg(now_ms))
        if r < 0:
            raise OSError(-r, f"cannot add connection {ConnTuple.unpack(client)}: {os.strerror(-r)}")

    def conn_del(self, client: ConnTuple) -> bool:
        ffi.memmove(self._conn_tuple, ConnTuple(*client).pack(), CONN_TUPLE_SIZE)
        return lib.ps_dp_conn_del(self._dp, self._conn_tuple) == 1

    def conn_get(self, tuple_: ConnTuple, by_reply=False):
        """The connection whose client (or, by_reply, reply) tuple is `tuple_`, or None."""
        ffi.memmove(self._conn_tuple, ConnTuple(*tuple_).pack(), CONN_TUPLE_SIZE)
        if lib.ps_dp_conn_get(self._dp, self._conn_tuple, 1 if by_reply else 0, self._conn) != 1:
            return None
        return _conn_from_c(self._conn)

    def conn_dump(self) -> list[Conn]:
        conns = []
        cursor = 0
        while True:
            n = lib.ps_dp_conn_dump(self._dp, cursor, self._conn_dump, _DUMP_CHUNK, self._next)
            conns.extend(_conn_from_c(self._conn_dump[i]) for i in range(n))
            cursor = self._next[0]
            if cursor == 0:
                return conns

    def conn_expire(self, now_ms=None) -> int:
        return lib.ps_dp_conn_expire(self._dp, _now_arg(now_ms))

    def conn_events(self) -> list[ConnEvent]:
        events = []
        while True:
            n = lib.ps_dp_conn_events(self._dp, self._conn_events, _DUMP_CHUNK)
            for i in range(n):
                e = self._conn_events[i]
                events.append(ConnEvent(e.kind, e.vip_id, e.backend_id, e.state, e.rtt_us,
                                        _tuple_from(e, "client")))
            if n < _DUMP_CHUNK:
                return events

    def conn_stats(self) -> dict:
        lib.ps_dp_conn_get_stats(self._dp, self._ct_stats)
        s = self._ct_stats
        out = {name: getattr(s, name) for name in _CT_STAT_NAMES}
        out["by_state"] = {consts.CONN_STATE_NAMES[i]: s.by_state[i] for i in range(1, consts.CS_COUNT)}
        return out

    # Hold and splice (docs/DATAPATH.md "Hold and splice").

    def conn_hold(self, client: ConnTuple, hold: bool) -> None:
        """Sets or clears CONN_F_HOLD of a nat/fullnat TCP connection: OSError ENOENT, EINVAL."""
        ffi.memmove(self._conn_tuple, ConnTuple(*client).pack(), CONN_TUPLE_SIZE)
        r = lib.ps_dp_conn_hold(self._dp, self._conn_tuple, 1 if hold else 0)
        if r < 0:
            raise OSError(-r, f"cannot {'hold' if hold else 'release'} connection {ConnTuple(*client)}: "
                              f"{os.strerror(-r)}")

    def conn_splice(self, client: ConnTuple, to_backend: Splice, to_client: Splice) -> None:
        """Joins the halves of a nat/fullnat TCP connection with these deltas and clears its HOLD: OSError ENOENT,
        EINVAL (not nat/fullnat TCP, or a splice that sets an address or port), ENOSPC (the splice table is full)."""
        _splice_into(self._splices + 0, to_backend)
        _splice_into(self._splices + 1, to_client)
        ffi.memmove(self._conn_tuple, ConnTuple(*client).pack(), CONN_TUPLE_SIZE)
        r = lib.ps_dp_conn_splice(self._dp, self._conn_tuple, self._splices + 0, self._splices + 1)
        if r < 0:
            raise OSError(-r, f"cannot splice connection {ConnTuple(*client)}: {os.strerror(-r)}")

    def conn_get_splice(self, client: ConnTuple) -> tuple[Splice, Splice] | None:
        """(to_backend, to_client) of a spliced connection, None if it is not spliced or there is none."""
        ffi.memmove(self._conn_tuple, ConnTuple(*client).pack(), CONN_TUPLE_SIZE)
        if lib.ps_dp_conn_get_splice(self._dp, self._conn_tuple, self._splices + 0, self._splices + 1) != 1:
            return None
        return _splice_from_c(self._splices[0]), _splice_from_c(self._splices[1])

    def splice_config(self, max_splices) -> None:
        """The splice table's bound: OSError EINVAL (not 1..CT_MAX_CONNS), EBUSY (below the splices in use)."""
        r = lib.ps_dp_splice_config(self._dp, splice_max(max_splices))
        if r < 0:
            raise OSError(-r, f"splice table: max_splices {max_splices}: {os.strerror(-r)}")

    # Maglev rings (docs/DATAPATH.md "Maglev rings").

    def ring_config(self, vip_id, size):
        """VIP `vip_id` gets a ring of `size` empty slots and no backends (replacing its ring); size 0 removes it."""
        r = lib.ps_dp_ring_config(self._dp, _uint(vip_id, 32, "VIP id"), _uint(size, 32, "ring size"))
        _ring_errno(r, f"ring of VIP {vip_id}: size {size}")

    def ring_backend(self, vip_id, index, backend: RingBackend):
        """Backend `index` of VIP `vip_id`'s ring: what a slot holding `index` schedules to."""
        address, tunnel_src, port, mode, backend_id = ring_backend_wire(backend)
        b = self._ring_backend
        b.address = address
        b.tunnel_src = tunnel_src
        b.port, b.mode, b.pad, b.backend_id = port, mode, 0, backend_id
        r = lib.ps_dp_ring_backend_set(self._dp, _uint(vip_id, 32, "VIP id"), _uint(index, 32, "backend index"), b)
        _ring_errno(r, f"ring of VIP {vip_id}: backend {index}")

    def ring_write(self, vip_id, changes):
        """Writes (slot, value) pairs, value a backend index or -1 (empty): all of them, or none."""
        pairs = ring_changes(changes)
        slots = ffi.new("uint32_t[]", [slot for slot, _v in pairs] or [0])
        values = ffi.new("uint16_t[]", [v for _s, v in pairs] or [0])
        r = lib.ps_dp_ring_write(self._dp, _uint(vip_id, 32, "VIP id"), slots, values, len(pairs))
        _ring_errno(r, f"ring of VIP {vip_id}: write")

    def ring_read(self, vip_id):
        """The whole ring of `vip_id`, -1 for an empty slot; None if it has none."""
        out = []
        buf = ffi.new("uint16_t[]", 4096)
        while True:
            n = lib.ps_dp_ring_read(self._dp, _uint(vip_id, 32, "VIP id"), len(out), buf, 4096)
            if n == -_errno.ENOENT:
                return None
            out.extend(-1 if v == consts.RING_EMPTY else v for v in ffi.unpack(buf, n))
            if n < 4096:
                return out

    def ring_stats(self) -> dict:
        lib.ps_dp_ring_get_stats(self._dp, self._ring_stats)
        return {name: getattr(self._ring_stats, name) for name in _RING_STAT_NAMES}

    # VIP guards (docs/DATAPATH.md "VIP guards").

    def vip_guard(self, vip_id, max_embryonic=0, upcall_rate=0, upcall_burst=0, upcall_threshold=0):
        """VIP `vip_id`'s flood limits (0: none): SYN-state connections it holds at most, CONN_MISS upcalls a
        second and the bucket's size, the rate applying only while it holds `upcall_threshold` SYN-state
        connections or more. ValueError for a bad id, rate or burst (a rate needs a burst)."""
        g = self._vip_guard
        g.max_embryonic = _uint(max_embryonic, 32, "max_embryonic")
        g.upcall_rate = _uint(upcall_rate, 32, "upcall_rate")
        g.upcall_burst = _uint(upcall_burst, 32, "upcall_burst")
        g.upcall_threshold = _uint(upcall_threshold, 32, "upcall_threshold")
        r = lib.ps_dp_vip_guard_set(self._dp, _uint(vip_id, 32, "VIP id"), g)
        _ring_errno(r, f"guard of VIP {vip_id}: upcall_rate {upcall_rate}, upcall_burst {upcall_burst}")

    def vip_guard_stats(self, vip_id) -> dict:
        r = lib.ps_dp_vip_guard_get_stats(self._dp, _uint(vip_id, 32, "VIP id"), self._vip_guard_stats)
        _ring_errno(r, f"guard of VIP {vip_id}")
        return {name: getattr(self._vip_guard_stats, name) for name in _VIP_GUARD_STAT_NAMES}

    # Memory ports.

    def inject(self, port_no, frame, vnet=_VNET_ZERO, worker=None):
        """Queues `frame` on a memory port; with workers, on `worker`'s side of it (None: the one the frame's
        symmetric flow hash picks, as the kernel's fanout would)."""
        self._inject_vnet_buf[:] = _vnet_bytes(vnet)
        if worker is None:
            r = lib.ps_dp_mem_inject(self._dp, _port_no(port_no), frame, len(frame), self._inject_vnet)
        else:
            r = lib.ps_dp_mem_inject_worker(self._dp, _uint(worker, 32, "worker"), _port_no(port_no), frame,
                                            len(frame), self._inject_vnet)
        if r < 0:
            raise OSError(-r, f"cannot inject into port {port_no}: {os.strerror(-r)}")

    def take(self, port_no) -> list[tuple[bytes, bytes]]:
        out = []
        buf = ffi.buffer(self._take_buf)
        vnet = ffi.buffer(self._take_vnet)
        while True:
            r = lib.ps_dp_mem_take(self._dp, _port_no(port_no), self._take_buf, len(self._take_buf),
                                   self._take_vnet)
            if r == -_errno.EAGAIN:
                return out
            if r == -_errno.ENOSPC and len(self._take_buf) < _TAKE_BUF_LIMIT:
                # A memory port transmits what it is given: a FRAME_MAX frame that actions grew (tags, a tunnel
                # header), or a larger one execute() was handed. Take it with a larger buffer rather than leave it
                # queued in front of every later frame.
                self._take_buf = ffi.new("uint8_t[]", 2 * len(self._take_buf))
                buf = ffi.buffer(self._take_buf)
                continue
            if r < 0:
                raise OSError(-r, f"cannot take from port {port_no}: {os.strerror(-r)}")
            out.append((buf[0:r], vnet[:]))
