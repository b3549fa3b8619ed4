"""Delayed binding: the switch takes the client's connection, reads its first request, picks the backend, opens
the backend's side and hands both halves to the C fast path, which from then on splices them per packet.

A connection to an L7 VIP goes through these steps (docs/L7.md "The engine"):

    SYN            answered with a SYN/ACK whose sequence number is a SYN cookie (syncookie.py): no state.
    ACK + data     a good cookie makes a session; the request's bytes are taken in order, acknowledged, and
                   read up to max_request_bytes and request_timeout_s.  A malformed HTTP head gets a 400, a
                   request no rule or default pool takes, or whose pool has no backend up, a 503 (both sent with
                   FIN, then a reset); a client too slow is reset.  Every outcome is counted.
    routed         the rules pick the pool, a persistence cookie or the pool's scheduler the backend.  The switch
                   adds a held connection (CONN_F_HOLD: every packet of it comes here) and sends the backend a
                   SYN in the client's name (nat: the client's address and port) with the client's own initial
                   sequence number and options, so that the client's numbers need no change on the way in.
    SYN/ACK        the switch acknowledges it and sends the buffered request; once the backend acknowledges
                   the request, the connection is spliced (conn_splice): the backend's sequence numbers and
                   timestamps are moved into the space the switch gave the client, and the client's ACKs and
                   echoed timestamps back.  From then on nothing of it comes up, and every later request on
                   the same connection (keep-alive) goes to the same backend.

With persistence insert, the backend's first response grows by a Set-Cookie field after its status line: the
switch carries the connection (INSERTING) until the client acknowledges the grown segment, then splices with the
field's length in the deltas.

Client segments that arrive while the backend side opens are dropped unacknowledged (the client sends them
again once spliced), so nothing the switch acknowledged is ever lost: what it acknowledged it holds until the
backend acknowledges it.
"""
from __future__ import annotations

import heapq
import ipaddress
import logging
import struct
from typing import Optional

from .. import actions as act
from .. import consts
from ..datapath_types import Conn, ConnTuple, Splice
from ..pipeline import packets as pk
from . import http_types as ht
from . import responses
from . import tcp_options as opt
from .rules import HttpView
from .service import L7Service, persistence_value
from .session import CLOSING, CLOSING_STATES, CONNECTING, INSERTING, MASK32, READING, SENDING, Bound, Session
from .syncookie import SynCookies

log = logging.getLogger("pyswitch.l7")

VIP_MSS = 1460                  # the MSS the switch offers clients: a 1500-byte VLAN's
BACKEND_SYN_TRIES = 3           # SYNs sent to a backend before the client gets a 503
BACKEND_SYN_RTO_S = 1.0         # as Linux's initial RTO
DATA_RTO_S = 0.2                # the buffered request again, if the backend has not acknowledged it
DATA_TRIES = 5
CLOSE_LINGER_S = 2.0            # a session that sent its 400/503 waits this long for the client's FIN
CLOSE_TRIES = 3                 # the 400/503 is sent at most this often
INSERT_TIMEOUT_S = 30.0         # a response whose grown first segment the client has not acknowledged by then: reset


class L7Engine:
    def __init__(self, datapath, l3_stage, parser, clock_ms):
        self.dp = datapath
        self.l3 = l3_stage
        self.parser = parser            # pyswitch.fastpath (C) or pyswitch.refpath (the twin): the HTTP/TLS readers
        self.clock_ms = clock_ms        # the switch's TSval clock
        self.cookies = SynCookies()
        self.services: dict[int, L7Service] = {}        # by the VIP's id
        self.by_pool: dict[int, L7Service] = {}         # by a pool's id
        self.pools: dict = {}                           # pool id -> its VirtualService
        self.wscales: dict[tuple[str, int], int] = {}   # backend (address, port) -> the window scale it announced
        self._mismatch_logged: set[tuple[str, int]] = set()
        self.sessions: dict[ConnTuple, Session] = {}    # by client tuple
        self.by_reply: dict[ConnTuple, Session] = {}
        self.bound: dict[ConnTuple, Bound] = {}         # spliced connections, by client tuple
        self._timers: list[tuple[float, int, ConnTuple]] = []
        self._tie = 0
        self.counters = {name: 0 for name in (
            "syn_cookies_sent", "bad_cookie", "sessions_refused", "stray_segments", "requests", "spliced",
            "http_400", "http_503", "tls_refused", "request_timeout", "request_too_large", "client_reset",
            "client_closed_early", "backend_refused", "backend_timeout", "backend_reset", "data_retries",
            "syn_retries", "wscale_mismatch", "splice_refused", "cookies_inserted", "insert_skipped",
            "backend_time_wait")}
        self.bad_requests = {name: 0 for name in ht.HTTP_REASON_NAMES[1:]}
        self.bad_hellos = {name: 0 for name in ("not_tls", *ht.TLS_REASON_NAMES[1:])}

    def add_service(self, service: L7Service) -> None:
        self.services[service.vip.id] = service
        for pool in service.pools.values():
            self.by_pool[pool.id] = service
            self.pools[pool.id] = pool

    # -- packets --------------------------------------------------------------------------------

    def handle(self, upcall, now: float) -> None:
        """A packet of an L7 VIP: a CONN_MISS from the VIP's flow (no connection yet) or a held connection's
        UPCALL_L7, from the client or from the backend."""
        eth_type, ip_packet = pk.strip_ethernet(upcall.data)
        if eth_type != consts.ETH_TYPE_IPV4:
            self.counters["stray_segments"] += 1
            return
        try:
            ihl, proto, src, dst = pk.ip_header_fields(ip_packet)
            total = struct.unpack_from("!H", ip_packet, 2)[0]
            segment = ip_packet[ihl:total]
            sport, dport, seq, ack, flags, window, payload = pk.tcp_fields(segment)
        except (ValueError, struct.error):
            self.counters["stray_segments"] += 1
            return
        if proto != pk.IP_PROTO_TCP:
            self.counters["stray_segments"] += 1
            return
        options = opt.parse(segment)
        seen = ConnTuple(proto, src, dst, sport, dport)
        session = self.by_reply.get(seen)
        if session is not None:
            self._backend_segment(session, upcall, seq, ack, flags, options, payload, now)
            return
        service = self.services.get(upcall.userdata) or self.by_pool.get(upcall.userdata)
        session = self.sessions.get(seen)
        if session is None and service is not None and upcall.reason == consts.UPCALL_L7:
            if not self._straggler(service, seen, flags, upcall):
                return
        if session is None:
            if service is None:
                self.counters["stray_segments"] += 1
                return
            self._new_segment(service, seen, seq, ack, flags, window, options, payload, now)
            return
        self._client_segment(session, upcall, seq, ack, flags, window, options, payload, now)

    def _straggler(self, service: L7Service, seen: ConnTuple, flags: int, upcall) -> bool:
        """A held connection's packet that was already queued when its session ended.  Spliced since: it goes on
        through the datapath, which now splices it.  A client's new SYN on a spliced connection's ports: the old
        connection is over and the SYN is a new client's (True: handle it as one)."""
        if flags & pk.TCP_SYN and not flags & pk.TCP_ACK:
            old = self.dp.conn_get(seen)
            if old is not None and self.dp.conn_del(seen):
                self.bound.pop(seen, None)
                pool = self.pools.get(old.vip_id)
                if pool is not None and old.state not in CLOSING_STATES and 1 <= old.backend_id <= len(pool.backends):
                    pool.backends[old.backend_id - 1].conn_closed()
            return True
        for by_reply, action in ((False, act.lb(service.vip.id)), (True, act.lb_reply())):
            conn = self.dp.conn_get(seen, by_reply=by_reply)
            if conn is not None:
                if conn.flags & consts.CONN_F_SPLICED:
                    self.dp.execute(upcall.in_port, upcall.data, upcall.vnet, [action])
                return False
        return False

    def _new_segment(self, service: L7Service, client: ConnTuple, seq, ack, flags, window, options, payload,
                     now: float) -> None:
        """A client segment of no session: a SYN gets a cookie, the ACK that returns a good one a session."""
        if flags & pk.TCP_RST:
            return
        if flags & pk.TCP_SYN and not flags & pk.TCP_ACK:
            self._syn_ack(service, client, seq, options, now)
            return
        cookie = None
        if flags & pk.TCP_ACK and not flags & pk.TCP_SYN:
            cookie = self.cookies.check(_four_tuple(client), ack, options.tsecr if options.tsval is not None
                                        else None, now)
        if cookie is None:
            self.counters["bad_cookie" if flags & pk.TCP_ACK else "stray_segments"] += 1
            self._reset(client, ack if flags & pk.TCP_ACK else 0, (seq + len(payload)) & MASK32, ack_flag=True)
            return
        if service.config.max_embryonic and service.open_sessions >= service.config.max_embryonic:
            self.counters["sessions_refused"] += 1
            self._reset(client, ack, seq, ack_flag=False)
            return
        timestamps = options.tsval is not None
        session = Session(service, client, client_isn=(seq - 1) & MASK32, switch_isn=(ack - 1) & MASK32,
                          mss=cookie.mss, wscale=cookie.wscale, wscale_told=service.wscale,
                          sack=cookie.sack_permitted, timestamps=timestamps,
                          client_tsval=options.tsval or 0, switch_ts=options.tsecr if timestamps else 0,
                          client_window=window, deadline=now + service.l7.request_timeout_s)
        self.sessions[client] = session
        service.open_sessions += 1
        self._at(session.deadline, client)
        self._client_segment(session, None, seq, ack, flags, window, options, payload, now)    # READING: no upcall kept

    def _syn_ack(self, service: L7Service, client: ConnTuple, seq: int, options: opt.TcpOptions,
                 now: float) -> None:
        timestamps = options.tsval is not None
        # Window scaling and SACK travel in the timestamp: without one they are not offered back.
        wscale = options.wscale if timestamps else None
        sack = options.sack_permitted and timestamps
        isn = self.cookies.isn(_four_tuple(client), options.mss or 536, now)
        ours = opt.TcpOptions(mss=VIP_MSS, wscale=service.wscale if wscale is not None else None, sack_permitted=sack,
                              tsval=self.cookies.tsval(self.clock_ms(), wscale, sack) if timestamps else None,
                              tsecr=options.tsval or 0)
        segment = pk.tcp(client.dst, client.src, client.dport, client.sport, isn, (seq + 1) & MASK32,
                         pk.TCP_SYN | pk.TCP_ACK, window=65535, options=opt.build_syn(ours))
        self.l3.send_ip(client.src, pk.IP_PROTO_TCP, segment, source=client.dst)
        self.counters["syn_cookies_sent"] += 1

    def _client_segment(self, s: Session, upcall, seq, ack, flags, window, options, payload, now: float) -> None:
        if flags & pk.TCP_RST:
            self.counters["client_reset"] += 1
            self._abandon(s, reset_client=False)
            return
        if options.tsval is not None:
            s.client_tsval = options.tsval
        s.client_window = window
        if s.state == CLOSING:
            # The client closes its side once it has read the answer: the reset then loses it nothing.
            if flags & pk.TCP_FIN:
                self._reset(s.client, (s.switch_isn + 2 + len(s.answer)) & MASK32, 0, ack_flag=False)
                self._forget(s)
            elif ack == (s.switch_isn + 2 + len(s.answer)) & MASK32 and s.tries <= CLOSE_TRIES:
                s.tries = CLOSE_TRIES + 1           # answered: no more resends, wait for the client's FIN
                s.deadline = now + CLOSE_LINGER_S
                self._at(s.deadline, s.client)
            return
        if s.state == INSERTING:
            self._inserting_client(s, upcall, ack)
            return
        if s.state != READING:
            return          # the backend side is opening: the client sends it again once spliced
        if payload and seq == s.next_seq:
            room = s.service.l7.max_request_bytes - len(s.data)
            s.data += payload[:max(0, room)]
        if flags & pk.TCP_FIN:
            self.counters["client_closed_early"] += 1
            self._abandon(s, reset_client=True)
            return
        if payload:
            self._read(s, now)

    def _read(self, s: Session, now: float) -> None:
        """The request so far: route it when whole, answer it when bad, else acknowledge and wait."""
        data = bytes(s.data)
        limit = s.service.l7.max_request_bytes
        if s.service.tls:
            hello = self.parser.tls_client_hello_sni(data)
            if hello.verdict in (ht.TLS_SNI, ht.TLS_NO_SNI):
                self._route(s, s.service.rules.match_sni(ht.text(data, hello.name)), None, now)
            elif hello.verdict == ht.TLS_NEED_MORE and len(data) < limit:
                self._ack(s)
            elif hello.verdict == ht.TLS_NEED_MORE:
                self.counters["request_too_large"] += 1
                self._abandon(s, reset_client=True)
            else:
                reason = "not_tls" if hello.verdict == ht.TLS_NOT_TLS else ht.TLS_REASON_NAMES[hello.reason]
                self.bad_hellos[reason] += 1
                self.counters["tls_refused"] += 1
                self._abandon(s, reset_client=True)
            return
        request = self.parser.http_parse_request(data, limit)
        if request.verdict == ht.HTTP_NEED_MORE:
            self._ack(s)
        elif request.verdict == ht.HTTP_MALFORMED:
            reason = ht.HTTP_REASON_NAMES[request.reason]
            self.bad_requests[reason] += 1
            if request.reason == ht.HTTP_E_TOO_LARGE:
                self.counters["request_too_large"] += 1
            self._answer(s, 400, now)
        else:
            view = HttpView(data, request, self.parser)
            self._route(s, s.service.rules.match_http(view), view, now)

    def _route(self, s: Session, match, view: Optional[HttpView], now: float) -> None:
        service = s.service
        service.counters["requests"] += 1
        self.counters["requests"] += 1
        pool = service.pool_of(match)
        if pool is None:
            service.counters["no_pool"] += 1
            self._refuse(s, now)
            return
        backend = None
        if view is not None and service.cookie is not None:
            backend = service.persistent_backend(pool, view.cookie(service.cookie))
        if backend is None:
            backend = pool.choose(s.client.src, now)
            if service.insert and backend is not None:
                s.cookie_line = b"Set-Cookie: %s=%s; Path=/\r\n" % (service.cookie, persistence_value(backend))
        if backend is None:
            service.counters["no_backend"] += 1
            self._refuse(s, now)
            return
        s.pool, s.backend, s.rule = pool, backend, match.rule
        self._open_backend(s, now)

    def _refuse(self, s: Session, now: float) -> None:
        """No pool or no backend: a 503 over HTTP, a reset over TLS (the switch cannot speak inside it)."""
        if s.service.tls:
            self.counters["tls_refused"] += 1
            self._abandon(s, reset_client=True)
        else:
            self._answer(s, 503, now)

    # -- the backend's side -----------------------------------------------------------------------

    def _open_backend(self, s: Session, now: float) -> None:
        b = s.backend
        s.reply = ConnTuple(pk.IP_PROTO_TCP, b.packed, s.client.src, b.port, s.client.sport)
        conn = Conn(client=s.client, reply=s.reply, backend=bytes(4), tunnel_src=bytes(4), mode=consts.CONN_NAT,
                    state=consts.CS_SYN, vip_id=s.pool.id, backend_id=s.pool.backend_id(b), flags=consts.CONN_F_HOLD)
        try:
            self.dp.conn_add(conn, int(now * 1000))
        except OSError as exc:
            log.warning("l7 vip %s: cannot hold %s: %s", s.service.vip.name, s.client, exc)
            self.counters["backend_refused"] += 1
            s.reply = None
            self._answer(s, 503, now)
            return
        b.conn_opened()
        s.pool.counters["connections"] += 1
        self.by_reply[s.reply] = s
        s.state, s.tries = CONNECTING, 0
        self._send_syn(s, now)

    def _send_syn(self, s: Session, now: float) -> None:
        ours = opt.TcpOptions(mss=s.mss, wscale=s.wscale, sack_permitted=s.sack,
                              tsval=s.client_tsval if s.timestamps else None, tsecr=0)
        r = s.reply
        segment = pk.tcp(r.dst, r.src, r.dport, r.sport, s.client_isn, 0, pk.TCP_SYN, window=65535,
                         options=opt.build_syn(ours))
        self.l3.send_ip(r.src, pk.IP_PROTO_TCP, segment, source=r.dst)
        s.tries += 1
        s.deadline = now + BACKEND_SYN_RTO_S * s.tries
        self._at(s.deadline, s.client)

    def _backend_segment(self, s: Session, upcall, seq, ack, flags, options, payload, now: float) -> None:
        if s.state == INSERTING and not flags & pk.TCP_SYN:
            self._inserting_backend(s, upcall, seq, flags, payload)
            return
        if flags & pk.TCP_RST:
            if s.state == CONNECTING:
                self.counters["backend_refused"] += 1
                self._unhold(s)
                self._answer(s, 503, now)
            else:
                self.counters["backend_reset"] += 1
                self._abandon(s, reset_client=True)
            return
        if flags & pk.TCP_SYN and flags & pk.TCP_ACK and ack == (s.client_isn + 1) & MASK32:
            if s.state == CONNECTING:
                s.backend_isn = seq
                s.backend_tsval = options.tsval
                s.backend_mss = options.mss or 536
                if s.wscale is not None:
                    self._learn_wscale(s, options.wscale)
                s.state, s.tries = SENDING, 0
            if s.state == SENDING:      # the first SYN/ACK, or the backend's again: our ACK was lost
                self._send_request(s, now)
            return
        if s.state == CONNECTING and flags & pk.TCP_ACK and not flags & pk.TCP_SYN:
            # The backend still holds an older connection of these ports (TIME_WAIT) and answers the SYN with
            # that one's ACK: reset it, as a client's stack does (RFC 9293 3.10.7.3), and open again.
            r = s.reply
            self.l3.send_ip(r.src, pk.IP_PROTO_TCP, pk.tcp(r.dst, r.src, r.dport, r.sport, ack, 0, pk.TCP_RST,
                                                           window=0), source=r.dst)
            self.counters["backend_time_wait"] += 1
            if s.tries < BACKEND_SYN_TRIES:
                self._send_syn(s, now)
            return
        if s.state == SENDING and flags & pk.TCP_ACK and _seq_ge(ack, s.next_seq):
            if s.cookie_line:
                # The response must grow by a Set-Cookie field: the switch carries the segments itself until
                # the client has the grown one, then splices with the growth in the deltas.
                s.state = INSERTING
                s.shift = self._shift(s)
                s.deadline = now + INSERT_TIMEOUT_S
                self._at(s.deadline, s.client)
                self._inserting_backend(s, upcall, seq, flags, payload)
            elif self._splice(s, now):
                # The segment that acknowledged the request (often the response itself) goes on, spliced.
                self.dp.execute(upcall.in_port, upcall.data, upcall.vnet, [act.lb_reply()])

    def _learn_wscale(self, s: Session, wscale: Optional[int]) -> None:
        """The backend's window scale: the splice does not rescale windows, so the client must have been told the
        backend's own.  What the VIP offers next is the smallest its backends have shown (a client that reads a
        window as smaller than it is only sends slower; one that reads it larger overruns it)."""
        backend = s.backend.key
        if wscale is not None and self.wscales.get(backend) != wscale:
            self.wscales[backend] = wscale
            s.service.learn_wscale(backend, wscale)
        if wscale != s.wscale_told:
            self.counters["wscale_mismatch"] += 1
            if backend not in self._mismatch_logged:
                self._mismatch_logged.add(backend)
                log.warning("l7 vip %s: backend %s:%d scales windows by 2^%s, the switch had told the client 2^%d; "
                            "it offers 2^%d from now on", s.service.vip.name, s.backend.address, s.backend.port,
                            wscale, s.wscale_told, s.service.wscale)

    def _send_request(self, s: Session, now: float) -> None:
        """The ACK of the backend's SYN/ACK, carrying the buffered request in segments of the backend's MSS."""
        r = s.reply
        ts = opt.build_timestamps(s.client_tsval, s.backend_tsval or 0) if s.timestamps and \
            s.backend_tsval is not None else b""
        size = max(64, min(s.backend_mss, s.mss) - len(ts))
        data = bytes(s.data)
        seq = (s.client_isn + 1) & MASK32
        offsets = range(0, len(data), size) if data else [0]
        for offset in offsets:
            chunk = data[offset:offset + size]
            flags = pk.TCP_ACK | (pk.TCP_PSH if offset + size >= len(data) and chunk else 0)
            segment = pk.tcp(r.dst, r.src, r.dport, r.sport, (seq + offset) & MASK32, (s.backend_isn + 1) & MASK32,
                             flags, chunk, window=s.client_window, options=ts)
            self.l3.send_ip(r.src, pk.IP_PROTO_TCP, segment, source=r.dst)
        s.tries += 1
        s.deadline = now + DATA_RTO_S * s.tries
        self._at(s.deadline, s.client)

    def _shift(self, s: Session) -> int:
        """How far the backend's timestamps move: its SYN/ACK's TSval lands above every TSval the client has seen
        from the switch, so the client's PAWS check passes the backend's segments."""
        ts_ref = (max(self.clock_ms(), s.switch_ts) + 1) & MASK32
        return (ts_ref - (s.backend_tsval or 0)) & MASK32

    def _splices(self, s: Session, grown: int = 0) -> tuple[Splice, Splice]:
        """(client -> backend, backend -> client): the deltas between the two number spaces; `grown` bytes the switch
        added to the backend's stream (a Set-Cookie field) before the bytes these deltas move."""
        timestamps = s.timestamps and s.backend_tsval is not None
        ts_shift = s.shift if s.shift is not None else self._shift(s)
        to_backend = Splice(ack_delta=(s.backend_isn - s.switch_isn - grown) & MASK32,
                            tsecr_delta=(-ts_shift) & MASK32 if timestamps else 0, timestamps=timestamps)
        to_client = Splice(seq_delta=(s.switch_isn - s.backend_isn + grown) & MASK32,
                           tsval_delta=ts_shift if timestamps else 0, timestamps=timestamps)
        return to_backend, to_client

    def _splice(self, s: Session, now: float, grown: int = 0) -> bool:
        """Joins the two halves: from now on the datapath moves every segment between the number spaces."""
        to_backend, to_client = self._splices(s, grown)
        try:
            self.dp.conn_splice(s.client, to_backend, to_client)
        except OSError as exc:
            log.warning("l7 vip %s: cannot splice %s: %s", s.service.vip.name, s.client, exc)
            self.counters["splice_refused"] += 1
            self._abandon(s, reset_client=True)
            return False
        self.counters["spliced"] += 1
        self.bound[s.client] = Bound(s.service.vip.name, s.pool.name.rpartition("/")[2], s.rule)
        self._forget(s)
        return True

    # -- persistence insert: the first response grows by a Set-Cookie field ------------------------------

    def _inserting_backend(self, s: Session, upcall, seq: int, flags: int, payload: bytes) -> None:
        """A backend segment while the switch carries the connection: the response's first segment gets the
        Set-Cookie field after its status line, later ones move by its length; a first segment that is not an
        HTTP status line leaves the response as it is."""
        first = (s.backend_isn + 1) & MASK32
        if payload and seq == first and not payload.startswith(b"HTTP/1."):
            s.cookie_line = b""                         # not HTTP: nothing to add to
            self.counters["insert_skipped"] += 1
            if self._splice(s, 0.0):
                self.dp.execute(upcall.in_port, upcall.data, upcall.vnet, [act.lb_reply()])
            return
        if payload and seq == first:
            end = payload.find(b"\r\n")
            if end < 0:
                return                                  # the status line in pieces: the backend sends it again
            grown = payload[:end + 2] + s.cookie_line + payload[end + 2:]
            s.inserted_end = (s.switch_isn + 1 + len(grown)) & MASK32
            self._send_grown(s, upcall, grown, flags)
            return
        if s.inserted_end is None:
            return                                      # before the first segment: sent again in order
        _, to_client = self._splices(s, len(s.cookie_line))
        self._carry(upcall, to_client._replace(src=s.client.dst, sport=s.client.dport))

    def _inserting_client(self, s: Session, upcall, ack: int) -> None:
        """A client segment while the switch carries the connection: once it acknowledges the grown segment the
        connection is spliced with the growth in its deltas; before, it has nothing the backend needs."""
        if s.inserted_end is None or not _seq_ge(ack, s.inserted_end):
            return
        grown = len(s.cookie_line)
        if self._splice(s, 0.0, grown):
            self.counters["cookies_inserted"] += 1
            self.dp.execute(upcall.in_port, upcall.data, upcall.vnet, [act.lb(s.service.vip.id)])

    def _send_grown(self, s: Session, upcall, grown: bytes, flags: int) -> None:
        """The response's first segment with the field added, in segments of the client's MSS, in the VIP's name."""
        c = s.client
        _, ip_packet = pk.strip_ethernet(upcall.data)
        ihl = (ip_packet[0] & 0x0F) * 4
        _sport, _dport, _seq, ack, _flags, window, _payload = pk.tcp_fields(ip_packet[ihl:])
        options = opt.parse(ip_packet[ihl:])
        _, to_client = self._splices(s)
        ts = b""
        if to_client.timestamps and options.tsval is not None:
            ts = opt.build_timestamps(options.tsval + to_client.tsval_delta, options.tsecr)
        size = max(64, s.mss - len(ts))
        for offset in range(0, len(grown), size):
            last = offset + size >= len(grown)
            segment = pk.tcp(c.dst, c.src, c.dport, c.sport, (s.switch_isn + 1 + offset) & MASK32, ack,
                             pk.TCP_ACK | ((flags & (pk.TCP_PSH | pk.TCP_FIN)) if last else 0),
                             grown[offset:offset + size], window=window, options=ts)
            self.l3.send_ip(c.src, pk.IP_PROTO_TCP, segment, source=c.dst)

    def _carry(self, upcall, splice: Splice) -> None:
        """One segment moved by `splice` (addresses too) and routed, as the datapath will once spliced."""
        result = self.parser.tcp_splice_rewrite(upcall.data, upcall.vnet, splice)
        if result.result == consts.SPLICE_OK:
            self.dp.execute(upcall.in_port, result.frame, upcall.vnet, [act.Action(consts.ACT_ROUTE)])

    # -- the switch's own answers -------------------------------------------------------------------

    def _answer(self, s: Session, status: int, now: float) -> None:
        """A 400 or 503 in the VIP's name, with FIN; the client's ACK of the FIN is answered with a reset."""
        self.counters[f"http_{status}"] += 1
        s.answer = responses.text(status)
        s.state, s.tries = CLOSING, 0
        self._send_answer(s, now)

    def _send_answer(self, s: Session, now: float) -> None:
        c = s.client
        ts = opt.build_timestamps(self._switch_tsval(s), s.client_tsval) if s.timestamps else b""
        segment = pk.tcp(c.dst, c.src, c.dport, c.sport, (s.switch_isn + 1) & MASK32, s.next_seq,
                         pk.TCP_ACK | pk.TCP_PSH | pk.TCP_FIN, s.answer, window=self._window(s), options=ts)
        self.l3.send_ip(c.src, pk.IP_PROTO_TCP, segment, source=c.dst)
        s.tries += 1
        s.deadline = now + (CLOSE_LINGER_S if s.tries >= CLOSE_TRIES else DATA_RTO_S * s.tries)
        self._at(s.deadline, s.client)

    def _ack(self, s: Session) -> None:
        c = s.client
        ts = opt.build_timestamps(self._switch_tsval(s), s.client_tsval) if s.timestamps else b""
        segment = pk.tcp(c.dst, c.src, c.dport, c.sport, (s.switch_isn + 1) & MASK32, s.next_seq, pk.TCP_ACK,
                         window=self._window(s), options=ts)
        self.l3.send_ip(c.src, pk.IP_PROTO_TCP, segment, source=c.dst)

    def _window(self, s: Session) -> int:
        room = max(0, s.service.l7.max_request_bytes - len(s.data))
        return min(65535, room >> s.wscale_told if s.wscale is not None else room)

    def _switch_tsval(self, s: Session) -> int:
        """The switch's clock, never below what it sent before (the client's PAWS check drops older ones)."""
        s.switch_ts = max(self.clock_ms() & MASK32, s.switch_ts)
        return s.switch_ts

    def _reset(self, client: ConnTuple, seq: int, ack: int, ack_flag: bool) -> None:
        flags = pk.TCP_RST | (pk.TCP_ACK if ack_flag else 0)
        segment = pk.tcp(client.dst, client.src, client.dport, client.sport, seq & MASK32, ack & MASK32, flags,
                         window=0)
        self.l3.send_ip(client.src, pk.IP_PROTO_TCP, segment, source=client.dst)

    # -- ends -------------------------------------------------------------------------------------

    def _abandon(self, s: Session, reset_client: bool) -> None:
        """Gives the session up: the client reset (unless it reset us), the backend's side reset and removed."""
        if reset_client:
            self._reset(s.client, (s.switch_isn + 1) & MASK32, s.next_seq, ack_flag=True)
        if s.reply is not None and s.state in (CONNECTING, SENDING, INSERTING):
            r = s.reply
            segment = pk.tcp(r.dst, r.src, r.dport, r.sport, s.next_seq, 0, pk.TCP_RST, window=0)
            self.l3.send_ip(r.src, pk.IP_PROTO_TCP, segment, source=r.dst)
        self._unhold(s)
        self._forget(s)

    def _unhold(self, s: Session) -> None:
        """Removes the held connection of a session whose backend side failed."""
        if s.reply is None:
            return
        self.by_reply.pop(s.reply, None)
        if self.dp.conn_del(s.client) and s.backend is not None:
            s.backend.conn_closed()
        s.reply = None

    def _forget(self, s: Session) -> None:
        if self.sessions.get(s.client) is s:
            del self.sessions[s.client]
            s.service.open_sessions -= 1
        if s.reply is not None and self.by_reply.get(s.reply) is s:
            del self.by_reply[s.reply]

    def conn_gone(self, client: ConnTuple) -> None:
        """The datapath reports a spliced connection gone (expired or evicted)."""
        self.bound.pop(client, None)

    # -- timers -----------------------------------------------------------------------------------

    def _at(self, when: float, client: ConnTuple) -> None:
        self._tie += 1
        heapq.heappush(self._timers, (when, self._tie, client))

    def timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            when, _tie, client = heapq.heappop(self._timers)
            s = self.sessions.get(client)
            if s is None or s.deadline > now:
                continue            # gone, or a later deadline replaced this one
            if s.state == READING:
                self.counters["request_timeout"] += 1
                self._abandon(s, reset_client=True)
            elif s.state == CONNECTING:
                if s.tries >= BACKEND_SYN_TRIES:
                    self.counters["backend_timeout"] += 1
                    self._unhold(s)
                    self._answer(s, 503, now)
                else:
                    self.counters["syn_retries"] += 1
                    self._send_syn(s, now)
            elif s.state == SENDING:
                if s.tries >= DATA_TRIES:
                    self.counters["backend_timeout"] += 1
                    self._abandon(s, reset_client=True)
                else:
                    self.counters["data_retries"] += 1
                    self._send_request(s, now)
            elif s.state == INSERTING:
                self.counters["backend_timeout"] += 1      # no response the client acknowledged, in time
                self._abandon(s, reset_client=True)
            elif s.state == CLOSING:
                if s.tries >= CLOSE_TRIES:
                    self._reset(s.client, (s.switch_isn + 2 + len(s.answer)) & MASK32, 0, ack_flag=False)
                    self._forget(s)
                else:
                    self._send_answer(s, now)

    # -- show -------------------------------------------------------------------------------------

    def stats(self) -> dict:
        out = {f"l7_{k}": v for k, v in self.counters.items()}
        out["l7_sessions"] = len(self.sessions)
        out["l7_spliced_open"] = len(self.bound)
        out.update({f"l7_bad_request_{k}": v for k, v in self.bad_requests.items()})
        out.update({f"l7_bad_hello_{k}": v for k, v in self.bad_hellos.items()})
        return out

    def show_sessions(self, now: float) -> list[dict]:
        """Connections the switch holds before their splice, for `show conns`."""
        return [{"vip": s.service.vip.name, "client": f"{ipaddress.IPv4Address(s.client.src)}:{s.client.sport}",
                 "backend": f"{s.backend.address}:{s.backend.port}" if s.backend else None,
                 "state": f"l7_{s.state}", "pool": s.pool.name.rpartition("/")[2] if s.pool else None,
                 "rule": s.rule, "request_bytes": len(s.data)} for s in self.sessions.values()]


def _four_tuple(client: ConnTuple) -> bytes:
    return client.src + client.dst + struct.pack("!HH", client.sport, client.dport)


def _seq_ge(a: int, b: int) -> bool:
    """a >= b in sequence space (RFC 9293: modulo 2^32)."""
    return ((a - b) & MASK32) < 0x80000000
