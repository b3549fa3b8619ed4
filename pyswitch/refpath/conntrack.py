"""The connection table and the LB actions: the twin of csrc/conntrack.c (docs/DATAPATH.md "Connection table").

Two dicts index the connections: by client tuple (LB: a client's packet to a VIP) and by reply tuple (LB_REPLY: a
backend's answer; only nat and fullnat connections have one). Each state has an OrderedDict of its connections,
least recent first, with one idle timeout, so expiry and eviction look only at the front. A hit moves its
connection to the end when `now // LRU_GRANULE_MS` differs from that of its last use, and on every state change,
as C does. Tuples are the 16 bytes of `struct ps_conn_tuple`.

L7 delayed binding (docs/DATAPATH.md "Hold and splice"): a held connection's packets go up as UPCALL_L7; a spliced
one's packets get their direction's deltas after the NAT rewrite (splice.py). The splices are counted against
max_splices as C's side table is; they live on the entries here.
"""
from __future__ import annotations

import errno
from collections import OrderedDict
from itertools import islice

from .. import consts
from ..datapath_types import (CONN_TUPLE_SIZE, Conn, ConnEvent, ConnTuple, Splice, conn_wire, splice_from_wire,
                              splice_wire)
from . import nat, splice as splice_rewrite, tunnel
from .nat import IP_FRAG_OFF_MASK, IP_FRAG_OFS, IP_PROTO_OFS, IPPROTO_TCP, IPPROTO_UDP, ipv4_offset
from .route import DROP, FORWARD, UPCALL
from .vipguard import VipGuards

_STAT_KEYS = ("conns", "max_conns", "inserts", "deletes", "expired", "evictions", "refused", "hits", "misses",
              "reply_misses", "events_dropped", "splices", "max_splices", "splice_refused", "splice_rewritten",
              "splice_dropped", "l7_upcalls")
_ZERO_TUPLE = bytes(CONN_TUPLE_SIZE)
_L4_HDR_LEN = {IPPROTO_TCP: 20, IPPROTO_UDP: 8}
_TCP_STATES = (consts.CS_SYN, consts.CS_ESTABLISHED, consts.CS_FIN_WAIT, consts.CS_CLOSE)
_NAT_MODES = (consts.CONN_NAT, consts.CONN_FULLNAT)
_EVICT_FIRST = (consts.CS_CLOSE, consts.CS_SYN, consts.CS_FIN_WAIT)   # half-open and closing: evicted first
_ENCAP_PROTO = {consts.CONN_IPIP: tunnel.IPPROTO_IPIP, consts.CONN_GRE: tunnel.IPPROTO_GRE}
_CLOSING = (consts.CS_FIN_WAIT, consts.CS_CLOSE)     # counted as inactive by the slow path (CE_STATE)
_RTT_REPORTED = 1           # Entry.flags: the RTT was measured (and, unless held, queued)
_UNREPORTED = 2             # Entry.flags: a ring's TCP connection not yet past SYN: the slow path knows nothing
_PUBLIC_FLAGS = consts.CONN_F_HOLD | consts.CONN_F_SPLICED     # Entry.flags holds these too, as reported
_UINT32_MAX = 0xFFFFFFFF
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
TCP_FLAGS_MASK = 0x0FFF


class Entry:
    """One connection. `client` and `reply` are the packed tuples (the index keys)."""

    __slots__ = ("client", "reply", "backend", "tunnel_src", "mode", "state", "flags", "vip_id", "backend_id",
                 "packets", "bytes", "created_ms", "used_ms", "held_rtt_us", "splices")

    def conn(self) -> Conn:
        reply = None if self.reply == _ZERO_TUPLE else ConnTuple.unpack(self.reply)
        return Conn(ConnTuple.unpack(self.client), reply, self.backend, self.tunnel_src, self.mode, self.state,
                    self.vip_id, self.backend_id, self.packets, self.bytes, self.created_ms, self.used_ms,
                    self.flags & _PUBLIC_FLAGS)

    def event(self, kind: int, rtt_us: int = 0) -> ConnEvent:
        return ConnEvent(kind, self.vip_id, self.backend_id, self.state, rtt_us, ConnTuple.unpack(self.client))


def _splices(mode: int, proto: int) -> bool:
    """Whether a connection may hold and be spliced (`mode_splices`): nat/fullnat rewrite both ways, TCP has
    sequence numbers."""
    return mode in _NAT_MODES and proto == IPPROTO_TCP


def _valid(client: bytes, reply: bytes, mode: int, state: int, flags: int) -> bool:
    """A connection the table takes: a known mode; TCP in a TCP state or UDP in CS_UDP; a reply tuple of the same
    protocol for nat and fullnat, none for the modes no reply passes; no flag but HOLD, that one only where the
    connection can splice."""
    if mode not in consts.CONN_MODES.values():
        return False
    proto = client[0]
    if flags & ~consts.CONN_F_HOLD or (flags & consts.CONN_F_HOLD and not _splices(mode, proto)):
        return False
    if not ((proto == IPPROTO_TCP and state in _TCP_STATES) or (proto == IPPROTO_UDP and state == consts.CS_UDP)):
        return False
    if mode in _NAT_MODES:
        return reply != _ZERO_TUPLE and reply[0] == proto
    return reply == _ZERO_TUPLE


def _norm(tuple_or_bytes) -> bytes:
    """A lookup key: a ConnTuple packed, or 16 bytes with the pad zeroed (as C ignores a caller's pad)."""
    raw = ConnTuple(*tuple_or_bytes).pack() if isinstance(tuple_or_bytes, tuple) else bytes(tuple_or_bytes)
    return raw[:1] + bytes(3) + raw[4:]


def _tcp_next_state(state: int, flags: int, reply: bool) -> int:
    syn_ack = flags & (TCP_SYN | TCP_ACK)
    if flags & TCP_RST:
        return consts.CS_CLOSE
    if flags & TCP_FIN:
        return consts.CS_CLOSE if state == consts.CS_CLOSE else consts.CS_FIN_WAIT
    if not reply and syn_ack == TCP_SYN and state in (consts.CS_FIN_WAIT, consts.CS_CLOSE):
        return consts.CS_SYN            # the client reuses the port for a new connection
    if syn_ack == TCP_ACK and state == consts.CS_SYN:
        return consts.CS_ESTABLISHED
    return state


def _rtt_us(from_ms: int, to_ms: int) -> int:
    ms = to_ms - from_ms
    return 0 if ms <= 0 else min(ms * 1000, _UINT32_MAX)


def _granule(ms: int) -> int:
    return ms // consts.LRU_GRANULE_MS


class ConnTable:
    def __init__(self):
        self.max_conns = consts.CT_MAX_CONNS_DEFAULT
        self.timeouts_ms = dict(consts.CT_TIMEOUTS_MS)
        self._by_client: dict[bytes, Entry] = {}
        self._by_reply: dict[bytes, Entry] = {}
        self._lists: list[OrderedDict[bytes, Entry]] = [OrderedDict() for _ in range(consts.CS_COUNT)]
        self._events: list[ConnEvent] = []
        self._stats = dict.fromkeys(_STAT_KEYS, 0)
        self._stats["max_conns"] = self.max_conns
        self._stats["max_splices"] = consts.CT_MAX_SPLICES_DEFAULT
        self.guards = VipGuards()

    # -- the slow path's side ------------------------------------------------------------------------------------

    def config(self, max_conns: int, timeouts_ms: dict | None) -> None:
        """`ps_dp_conn_config`: OSError EINVAL for a bound out of 1..CT_MAX_CONNS, EBUSY to change it while not
        empty; `timeouts_ms` {state: ms} for every state (None keeps them)."""
        if not 0 < max_conns <= consts.CT_MAX_CONNS:
            raise OSError(errno.EINVAL, f"max_conns {max_conns} not in 1..{consts.CT_MAX_CONNS}")
        if max_conns != self.max_conns:
            if self._by_client:
                raise OSError(errno.EBUSY, "max_conns changes only while the connection table is empty")
            self.max_conns = self._stats["max_conns"] = max_conns
        if timeouts_ms is not None:
            self.timeouts_ms = {state: timeouts_ms[state] for state in consts.CT_TIMEOUTS_MS}

    def add(self, conn: Conn, now_ms: int) -> None:
        client, reply, backend, tunnel_src, mode, state, vip_id, backend_id, flags = conn_wire(conn)
        client, reply = _norm(client), _norm(reply)
        if not _valid(client, reply, mode, state, flags):
            raise OSError(errno.EINVAL, f"connection refused: mode {mode}, state {state}, protocol {client[0]}, "
                                        f"flags {flags:#x}")
        if client in self._by_client or (reply != _ZERO_TUPLE and reply in self._by_reply):
            raise OSError(errno.EEXIST, "a connection with this client or reply tuple exists")
        if state == consts.CS_SYN and self.guards.embryonic_full(vip_id):
            victim = self._embryonic_victim(vip_id)
            if victim is None:
                self.guards.count(vip_id, "embryonic_refused")
                raise OSError(errno.ENOSPC, f"VIP {vip_id} holds its most embryonic connections")
            self._gone(victim)
            self.guards.count(vip_id, "embryonic_evicted")
        if len(self._by_client) >= self.max_conns:
            victim = self._eviction_victim(state)
            if victim is None:
                self._stats["refused"] += 1
                raise OSError(errno.ENOSPC, f"connection table full ({self.max_conns}) and nothing evictable")
            self._gone(victim)
            self._stats["evictions"] += 1
        e = Entry()
        e.client, e.reply, e.backend, e.tunnel_src = client, reply, backend, tunnel_src
        e.mode, e.state, e.flags, e.vip_id, e.backend_id = mode, state, flags, vip_id, backend_id
        e.packets = e.bytes = e.held_rtt_us = 0
        e.splices = None
        e.created_ms = e.used_ms = now_ms
        self._by_client[client] = e
        if reply != _ZERO_TUPLE:
            self._by_reply[reply] = e
        self._list_add(e)
        self._stats["inserts"] += 1

    def delete(self, client) -> bool:
        e = self._by_client.get(_norm(client))
        if e is None:
            return False
        self._remove(e)
        self._stats["deletes"] += 1
        return True

    def get(self, tuple_, by_reply: bool = False) -> Conn | None:
        e = (self._by_reply if by_reply else self._by_client).get(_norm(tuple_))
        return None if e is None else e.conn()

    def dump(self) -> list[Conn]:
        """By state (CS_SYN first), least recent first within a state, as C's cursor walks them."""
        return [e.conn() for state in range(1, consts.CS_COUNT) for e in self._lists[state].values()]

    def expire(self, now_ms: int) -> int:
        """Remove every connection idle for its state's timeout, with a GONE event each. Walks each list from the
        front and stops at the first entry whose granule start plus the timeout is after `now_ms` (see C's
        ps_dp_conn_expire for why that is exact with a clock that never goes backwards)."""
        n = 0
        for state in range(1, consts.CS_COUNT):
            timeout = self.timeouts_ms[state]
            idle = []                   # removed after the walk: an OrderedDict must not change under it
            for e in self._lists[state].values():
                if _granule(e.used_ms) * consts.LRU_GRANULE_MS + timeout > now_ms:
                    break
                if e.used_ms + timeout <= now_ms:
                    idle.append(e)
            for e in idle:
                self._gone(e)
            self._stats["expired"] += len(idle)
            n += len(idle)
        return n

    # -- hold and splice (docs/DATAPATH.md "Hold and splice") ---------------------------------------------------

    def _splice_conn(self, client) -> Entry:
        """The nat/fullnat TCP connection of `client` (`splice_conn_find`): OSError ENOENT, EINVAL."""
        e = self._by_client.get(_norm(client))
        if e is None:
            raise OSError(errno.ENOENT, f"no connection {ConnTuple.unpack(_norm(client))}")
        if not _splices(e.mode, e.client[0]):
            raise OSError(errno.EINVAL, f"a mode {e.mode} connection of protocol {e.client[0]} cannot hold or "
                                        f"splice (nat and fullnat TCP only)")
        return e

    def hold(self, client, hold: bool) -> None:
        e = self._splice_conn(client)
        if hold:
            e.flags |= consts.CONN_F_HOLD
        else:
            e.flags &= ~consts.CONN_F_HOLD

    def splice(self, client, to_backend: Splice, to_client: Splice) -> None:
        """`ps_dp_conn_splice`: each direction's deltas after the NAT rewrite, HOLD cleared; OSError EINVAL for a
        splice that sets an address or port, ENOENT, EINVAL, ENOSPC (the splice table is full)."""
        wires = (splice_wire(to_backend), splice_wire(to_client))
        if any(wire[8] & ~consts.SPLICE_TIMESTAMPS for wire in wires):
            raise OSError(errno.EINVAL, "a connection's splice sets no address or port: its tuples give them")
        e = self._splice_conn(client)
        if e.splices is None:
            if self._stats["splices"] >= self._stats["max_splices"]:
                self._stats["splice_refused"] += 1
                raise OSError(errno.ENOSPC, f"the splice table holds its {self._stats['max_splices']} splices")
            self._stats["splices"] += 1
            e.flags |= consts.CONN_F_SPLICED
        e.splices = tuple(splice_from_wire(*wire[4:]) for wire in wires)
        e.flags &= ~consts.CONN_F_HOLD

    def get_splice(self, client) -> tuple[Splice, Splice] | None:
        e = self._by_client.get(_norm(client))
        return None if e is None else e.splices

    def splice_config(self, max_splices: int) -> None:
        """`ps_dp_splice_config`: OSError EINVAL for a bound out of 1..CT_MAX_CONNS, EBUSY below those in use."""
        if not 0 < max_splices <= consts.CT_MAX_CONNS:
            raise OSError(errno.EINVAL, f"max_splices {max_splices} not in 1..{consts.CT_MAX_CONNS}")
        if max_splices < self._stats["splices"]:
            raise OSError(errno.EBUSY, f"{self._stats['splices']} splices are in use, more than {max_splices}")
        self._stats["max_splices"] = max_splices

    def events(self) -> list[ConnEvent]:
        events, self._events = self._events, []
        return events

    def n_events(self) -> int:
        """How many events wait to be drained (ps_conntrack_n_events)."""
        return len(self._events)

    def stats(self) -> dict:
        """The twin holds no C memory: bytes_used and bytes_per_conn are 0 (the C table's are its design)."""
        stats = dict(self._stats)
        stats["conns"] = len(self._by_client)
        stats["by_state"] = {consts.CONN_STATE_NAMES[s]: len(self._lists[s]) for s in range(1, consts.CS_COUNT)}
        stats["bytes_used"] = stats["bytes_per_conn"] = 0
        return stats

    # -- entries ---------------------------------------------------------------------------------------------------

    def _remove(self, e: Entry) -> None:
        """Every way out of the table (del, expiry, eviction) comes here, and frees the splice with the entry."""
        del self._by_client[e.client]
        if e.reply != _ZERO_TUPLE:
            del self._by_reply[e.reply]
        self._list_del(e)
        if e.splices is not None:
            e.splices = None
            self._stats["splices"] -= 1

    def _list_add(self, e: Entry) -> None:
        self._lists[e.state][e.client] = e
        if e.state == consts.CS_SYN:
            self.guards.embryonic_count(e.vip_id, 1)

    def _list_del(self, e: Entry) -> None:
        del self._lists[e.state][e.client]
        if e.state == consts.CS_SYN:
            self.guards.embryonic_count(e.vip_id, -1)

    def _gone(self, e: Entry) -> None:
        if not e.flags & _UNREPORTED:       # one the slow path never heard of leaves in silence
            self._event(e.event(consts.CE_GONE))
        self._remove(e)

    def _event(self, event: ConnEvent) -> None:
        if len(self._events) >= consts.CT_MAX_EVENTS:
            self._stats["events_dropped"] += 1
        else:
            self._events.append(event)

    def _head(self, state: int) -> Entry | None:
        return next(iter(self._lists[state].values()), None)

    def _eviction_victim(self, state: int) -> Entry | None:
        """Half-open and closing connections first; then, unless the newcomer is a SYN, the older of the
        ESTABLISHED and UDP heads (ESTABLISHED on a tie): a SYN flood never evicts an established connection."""
        for first in _EVICT_FIRST:
            head = self._head(first)
            if head is not None:
                return head
        if state == consts.CS_SYN:
            return None
        est, udp = self._head(consts.CS_ESTABLISHED), self._head(consts.CS_UDP)
        if est is None or udp is None:
            return est if est is not None else udp
        return udp if udp.used_ms < est.used_ms else est

    def _embryonic_victim(self, vip_id: int) -> Entry | None:
        """The least recent SYN-state connection of `vip_id` among the first VIP_GUARD_SCAN of the SYN list
        (`embryonic_victim`): never another VIP's."""
        for e in islice(self._lists[consts.CS_SYN].values(), consts.VIP_GUARD_SCAN):
            if e.vip_id == vip_id:
                return e
        return None

    def _move(self, e: Entry, state: int) -> None:
        self._list_del(e)
        e.state = state
        self._list_add(e)

    def _account(self, e: Entry, proto: int, tcp_flags: int, size: int, reply: bool, now_ms: int) -> None:
        """A forwarded packet: counters, TCP state, the RTT event, recency (`conn_account`)."""
        e.packets += 1
        e.bytes += size
        state = e.state
        was_closing = state in _CLOSING
        if proto == IPPROTO_TCP:
            state = _tcp_next_state(e.state, tcp_flags, reply)
            if (reply and e.state == consts.CS_SYN and tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
                    and not e.flags & _RTT_REPORTED):
                if e.flags & _UNREPORTED:
                    e.held_rtt_us = _rtt_us(e.created_ms, now_ms)
                else:
                    self._event(e.event(consts.CE_RTT, _rtt_us(e.created_ms, now_ms)))
                e.flags |= _RTT_REPORTED
            if state == consts.CS_SYN and e.state != consts.CS_SYN:
                e.created_ms = now_ms       # a new connection on the old tuple: age and RTT start over
                e.flags &= ~_RTT_REPORTED
        if state != e.state or _granule(now_ms) != _granule(e.used_ms):
            self._move(e, state)
        if e.flags & _UNREPORTED and e.state != consts.CS_SYN:
            e.flags &= ~_UNREPORTED
            self._event(e.event(consts.CE_NEW))
            if e.flags & _RTT_REPORTED:
                self._event(e.event(consts.CE_RTT, e.held_rtt_us))
        if (e.state in _CLOSING) != was_closing:
            self._event(e.event(consts.CE_STATE))
        e.used_ms = now_ms

    # -- the LB actions --------------------------------------------------------------------------------------------

    def lb(self, frame: bytearray, vnet, action, rings, routes, stats: dict, now_ms: int):
        """`ps_lb_frame`: LB or LB_REPLY on `frame`, changed in place only when forwarded.

        Returns route()'s triple: (FORWARD, port, 0), (UPCALL, reason, userdata) or (DROP, 0, 0). The route is
        decided first, on the addresses the packet will have, so an upcall carries the frame untouched. A
        connection's first packet to a VIP with a ring in `rings` adds the connection here (a CE_NEW event).
        """
        reply = action.type == consts.ACT_LB_REPLY
        packet = _lb_packet(frame)
        if packet is None:
            if reply:
                return routes.route(frame, vnet, stats)
            return self._miss(action.arg32 & _UINT32_MAX, now_ms)
        l3, key, tcp_flags = packet
        e = (self._by_reply if reply else self._by_client).get(key)
        if e is None:
            if reply:
                self._stats["reply_misses"] += 1
                return routes.route(frame, vnet, stats)
            vip_id = action.arg32 & _UINT32_MAX
            e, refused = self._schedule(rings, vip_id, key, tcp_flags, now_ms)
            if refused:
                return DROP, 0, 0
            if e is None:
                self._stats["misses"] += 1
                return self._miss(vip_id, now_ms)
        else:
            self._stats["hits"] += 1
        if e.flags & consts.CONN_F_HOLD or (not reply and e.flags & consts.CONN_F_SPLICED
                                            and tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN):
            # Before routing: the L7 engine is its destination.  A client's SYN on a spliced connection's ports
            # opens a new connection, which the engine's handshake answers (`lb_frame`).
            return self._hold(e, now_ms)

        verdict, what, userdata, hop = _lb_decide(e, frame, l3, reply, routes, stats)
        if verdict != FORWARD:
            return verdict, what, userdata
        # A spliced segment the rewrite would refuse is dropped before it counts; the check reads only what the NAT
        # rewrite leaves alone, so it answers as the rewrite after it will.
        sp = None if e.splices is None else e.splices[1 if reply else 0]
        if sp is not None and splice_rewrite.tcp_splice_check(frame) != consts.SPLICE_OK:
            self._stats["splice_dropped"] += 1
            return DROP, 0, 0
        self._account(e, key[0], tcp_flags, len(frame), reply, now_ms)
        if reply:
            _rewrite_reply(frame, vnet, e)
        else:
            _rewrite_client(frame, vnet, e)
        if sp is not None:
            frame[:] = splice_rewrite.tcp_splice_rewrite(frame, vnet.pack(), sp).frame
            self._stats["splice_rewritten"] += 1
        routes.rewrite(frame, vnet, hop, stats)
        return FORWARD, what, 0

    def _hold(self, e: Entry, now_ms: int):
        """`lb_hold`: a held connection's packet goes up untouched as UPCALL_L7 with its VIP id; state and counters
        stay, recency moves as a forwarded packet's would (an active hold does not expire)."""
        if _granule(now_ms) != _granule(e.used_ms):
            self._move(e, e.state)
        e.used_ms = now_ms
        self._stats["l7_upcalls"] += 1
        return UPCALL, consts.UPCALL_L7, e.vip_id


    def _miss(self, vip_id: int, now_ms: int):
        """A CONN_MISS upcall, or a drop when the VIP's upcall rate is used up (`lb_miss`)."""
        if not self.guards.admit_upcall(vip_id, now_ms):
            return DROP, 0, 0
        return UPCALL, consts.UPCALL_CONN_MISS, vip_id

    def _schedule(self, rings, vip_id: int, key: bytes, tcp_flags: int, now_ms: int):
        """`lb_schedule`: (entry, refused). Adds the connection of a packet no connection holds (client tuple
        `key`; not only a SYN: a connection the table lost lands on the same backend) to the backend `vip_id`'s
        ring holds for its client, with a CE_NEW event (TCP: once past SYN). (None, False) leaves the packet to the slow path: no ring
        or an empty slot (it refuses), a TCP RST, a failed add; (None, True) when the add failed for a full table
        (counted in refused, or the VIP's embryonic limit: no upcall)."""
        proto = key[0]
        if proto == IPPROTO_TCP and tcp_flags & TCP_RST:
            return None, False
        b = rings.pick(vip_id, key[4:8])
        if b is None:
            return None, False
        client = ConnTuple.unpack(key)
        reply = None
        if b.mode == consts.CONN_NAT:       # the backend answers the client's address and port
            reply = ConnTuple(proto, b.address, client.src, b.port, client.sport)
        state = consts.CS_SYN if proto == IPPROTO_TCP else consts.CS_UDP
        try:
            self.add(Conn(client, reply, b.address, b.tunnel_src, b.mode, state, vip_id, b.backend_id), now_ms)
        except OSError as exc:
            return None, exc.errno == errno.ENOSPC
        e = self._by_client[key]
        if state == consts.CS_SYN:
            e.flags |= _UNREPORTED          # reported once past the handshake (_account): a flood's SYNs stay here
        else:
            self._event(e.event(consts.CE_NEW))
        rings.count_scheduled()
        return e, False


def _lb_packet(frame):
    """(l3, packed tuple, TCP flags) of an IPv4 TCP/UDP packet that is not a later fragment and holds its whole
    TCP (20 bytes) or UDP (8 bytes) header; None for anything else."""
    l3 = ipv4_offset(frame)
    if not l3 or (frame[l3 + IP_FRAG_OFS] << 8 | frame[l3 + IP_FRAG_OFS + 1]) & IP_FRAG_OFF_MASK:
        return None
    proto = frame[l3 + IP_PROTO_OFS]
    size = _L4_HDR_LEN.get(proto)
    l4 = l3 + (frame[l3] & 0xF) * 4
    if size is None or l4 + size > len(frame):
        return None
    key = bytes([proto, 0, 0, 0]) + bytes(frame[l3 + 12:l3 + 20]) + bytes(frame[l4:l4 + 4])
    tcp_flags = (frame[l4 + 12] << 8 | frame[l4 + 13]) & TCP_FLAGS_MASK if proto == IPPROTO_TCP else 0
    return l3, key, tcp_flags


def _lb_decide(e: Entry, frame, l3: int, reply: bool, routes, stats: dict):
    """The route of connection `e`'s packet as it will be once rewritten (`lb_decide`)."""
    src, dst, ttl = bytes(frame[l3 + 12:l3 + 16]), bytes(frame[l3 + 16:l3 + 20]), frame[l3 + 8]
    if reply:
        return routes.decide(e.client[8:12], e.client[4:8] if e.mode == consts.CONN_FULLNAT else dst, None, ttl,
                             stats)
    if e.mode == consts.CONN_NAT:
        return routes.decide(src, e.reply[4:8], None, ttl, stats)
    if e.mode == consts.CONN_FULLNAT:
        return routes.decide(e.reply[8:12], e.reply[4:8], None, ttl, stats)
    if e.mode == consts.CONN_DSR:
        return routes.decide(src, dst, e.backend, ttl, stats)
    return routes.decide(e.tunnel_src, e.backend, None, tunnel.TUNNEL_TTL, stats)


def _port(raw: bytes) -> int:
    return raw[0] << 8 | raw[1]


def _rewrite_client(frame: bytearray, vnet, e: Entry) -> None:
    """A client's packet of `e` made the backend's (`lb_rewrite_client`). Tuple bytes: 4:8 src, 8:12 dst, 12:14
    sport, 14:16 dport."""
    if e.mode == consts.CONN_FULLNAT:
        nat.ipv4_set_addr(frame, vnet, nat.IPV4_SRC_OFS, e.reply[8:12])
        nat.l4_set_port(frame, vnet, nat.TP_SRC_OFS, _port(e.reply[14:16]))
    if e.mode in _NAT_MODES:
        nat.ipv4_set_addr(frame, vnet, nat.IPV4_DST_OFS, e.reply[4:8])
        nat.l4_set_port(frame, vnet, nat.TP_DST_OFS, _port(e.reply[12:14]))
    elif e.mode in _ENCAP_PROTO:
        tunnel.encap(frame, vnet, _ENCAP_PROTO[e.mode], e.tunnel_src, e.backend)


def _rewrite_reply(frame: bytearray, vnet, e: Entry) -> None:
    """A backend's reply of `e` made to come from the VIP again (and, fullnat, to go to the client)."""
    nat.ipv4_set_addr(frame, vnet, nat.IPV4_SRC_OFS, e.client[8:12])
    nat.l4_set_port(frame, vnet, nat.TP_SRC_OFS, _port(e.client[14:16]))
    if e.mode == consts.CONN_FULLNAT:
        nat.ipv4_set_addr(frame, vnet, nat.IPV4_DST_OFS, e.client[4:8])
        nat.l4_set_port(frame, vnet, nat.TP_DST_OFS, _port(e.client[12:14]))
