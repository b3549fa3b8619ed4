"""Health checks of load-balanced backends, sent from the switch's own addresses through its own datapath.

The checker keeps the schedule and the verdicts; the probes (probes.py) build and read the packets.  The
caller routes what `send` is given and hands in the packets that come back to the switch's addresses
(`handle`); its loop calls `timers`.  Nothing here blocks or waits for a backend: every probe is a state
machine advanced by the packets that arrive for it, so a slow backend delays no other's probe.

    schedule   one probe at a time per backend, one every interval_s; the first after a fraction of the
               interval derived from the key, so that hundreds of backends added together do not fire
               together.  A probe still running timeout_s after its start fails ("timeout").
    verdict    an up backend goes down after `fall` failures in a row, a down one comes up after `rise`
               successes in a row (keepalived's hysteresis); each flip is logged and given to on_change.
    bound      at most max_in_flight probes at once.  A probe refused for it is counted, not failed; its
               backend waits in line and starts as soon as a probe ends, before any backend that comes due
               later, so that dead backends timing out cannot keep the slots to themselves.

Answers are told apart by what they carry: TCP by (local port, backend address, backend port), echo replies
by (ident, seq), ICMP errors by the header they quote.  Local ports come round robin from PROBE_PORTS,
which on the addresses probes leave from belong to the checker alone: a segment to one of them that no
probe expects (a SYN/ACK after its probe timed out) is answered with RST, as a closed port would answer
it, so that no backend is left holding a half-open connection.
"""
from __future__ import annotations

import hashlib
import heapq
import ipaddress
import itertools
import logging
import secrets
import struct
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Hashable

from ..config import HealthConfig
from ..pipeline import packets as pk
from .probes import IcmpProbe, TcpProbe, closed_port_reset

log = logging.getLogger("pyswitch.health")

PROBE_PORTS = range(61000, 65536)   # local TCP ports of probes (above Linux's default ephemeral range)
ECHO_SEQS = range(1 << 16)


@dataclass
class HealthTarget:
    key: Hashable                       # the caller's identity of the backend, e.g. ("web", "192.0.2.11", 8080)
    address: bytes                      # the backend's IPv4 address, 4 bytes
    port: int
    source: bytes                       # the switch's address the probes leave from, 4 bytes
    spec: HealthConfig


@dataclass
class _Watched:
    """One target's verdict and schedule."""
    target: HealthTarget
    up: bool
    successes: int = 0                  # in a row
    failures: int = 0                   # in a row
    checks: int = 0
    last_reason: str = ""
    last_rtt_ms: float | None = None
    next_start: float = 0.0
    probe: TcpProbe | IcmpProbe | None = None
    deadline: float = 0.0               # of the probe in flight
    demux: tuple[dict, tuple] | None = None     # where the probe in flight is registered: (table, its key)
    waiting: bool = False               # refused by the in-flight bound, in line for a slot


class _RoundRobin:
    """Numbers of a range handed out in turn, skipping those still busy."""

    def __init__(self, numbers: range):
        self.numbers = numbers
        self._next = 0                  # index into `numbers` to try first

    def take(self, busy: Callable[[int], bool]) -> int | None:
        count = len(self.numbers)
        for step in range(count):
            index = (self._next + step) % count
            if not busy(self.numbers[index]):
                self._next = (index + 1) % count
                return self.numbers[index]
        return None


def _spread(key: Hashable) -> float:
    """A fraction in [0, 1), fixed per key across runs (BLAKE2s of its repr; hash() of a str is salted)."""
    digest = hashlib.blake2s(repr(key).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / (1 << 32)


def _host_header(target: HealthTarget) -> str:
    """The backend's address, with the port unless it is HTTP's default (RFC 9110 section 7.2)."""
    host = str(ipaddress.IPv4Address(target.address))
    return host if target.port == 80 else f"{host}:{target.port}"


class HealthChecker:
    def __init__(self, send: Callable[[bytes], None], on_change: Callable[[Hashable, bool, str], None],
                 on_rtt: Callable[[Hashable, float], None] | None = None, max_in_flight: int = 4096):
        self.send = send                # (ip_packet): the caller routes it out through the datapath
        self.on_change = on_change      # (key, up, reason): a backend's verdict flipped
        self.on_rtt = on_rtt            # (key, ms): the round trip of every successful probe
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._watched: dict[Hashable, _Watched] = {}
        self._tcp: dict[tuple[int, bytes, int], _Watched] = {}     # (local port, address, port) -> in flight
        self._echo: dict[tuple[int, int], _Watched] = {}           # (ident, seq) -> in flight
        self._sources: Counter[bytes] = Counter()                  # addresses probes leave from
        self._timers: list[tuple[float, int, Hashable]] = []       # heap of (when, tie-break, key)
        self._waiting: deque[_Watched] = deque()                   # refused by the bound, first come first
        self._tie = itertools.count()
        self._ports = _RoundRobin(PROBE_PORTS)
        self._echo_seqs = _RoundRobin(ECHO_SEQS)
        self._ident = secrets.randbits(16)      # this checker's echo identifier, as ping uses its pid
        self.counters = {"probes_sent": 0, "probes_ok": 0, "probes_failed": 0, "probes_timed_out": 0,
                         "state_changes": 0, "in_flight_refused": 0, "ids_exhausted": 0, "stray_resets": 0}

    @property
    def in_flight(self) -> int:
        return len(self._tcp) + len(self._echo)

    def add(self, target: HealthTarget, now: float, up: bool = True) -> None:
        """Starts watching `target`, up or down to begin with as `up` says, in place of any target of the
        same key.  Type "none" is never probed and always up."""
        self.remove(target.key)
        spec = target.spec
        watched = _Watched(target, up=up or spec.type == "none")
        self._watched[target.key] = watched
        self._sources[target.source] += 1
        if spec.type != "none":
            watched.next_start = now + _spread(target.key) * spec.interval_s
            self._at(watched.next_start, target.key)

    def remove(self, key: Hashable) -> None:
        watched = self._watched.pop(key, None)
        if watched is None:
            return
        self._sources[watched.target.source] -= 1
        if not self._sources[watched.target.source]:
            del self._sources[watched.target.source]
        if watched.probe is not None:
            self._send_all(self._release(watched).expire())     # a connected probe resets its connection

    def state(self, key: Hashable) -> dict:
        """The verdict and the counts behind it; successes and failures are the current runs in a row."""
        w = self._watched[key]
        return {"up": w.up, "successes": w.successes, "failures": w.failures, "last_reason": w.last_reason,
                "last_rtt_ms": w.last_rtt_ms, "checks": w.checks}

    # -- packets --------------------------------------------------------------------------------

    def handle(self, ip_packet: bytes, now: float) -> bool:
        """Takes a packet addressed to one of the switch's addresses; True if it was a probe's."""
        try:
            proto, src, dst, body = pk.ipv4_parts(ip_packet)
        except ValueError:
            return False
        watched = self._owner(proto, src, body)
        if watched is None:
            return proto == pk.IP_PROTO_TCP and self._answer_stray(src, dst, body)
        probe = watched.probe
        self._send_all(probe.receive(ip_packet, now))
        if probe.done:
            self._release(watched)
            self._judge(watched, probe)
            self._admit_waiting(now)
        return True

    def _owner(self, proto: int, src: bytes, body: bytes) -> _Watched | None:
        """The target whose probe in flight the packet answers."""
        if proto == pk.IP_PROTO_TCP and len(body) >= 4:
            sport, dport = struct.unpack_from("!HH", body)
            return self._tcp.get((dport, src, sport))
        if proto != pk.IP_PROTO_ICMP or len(body) < 8:
            return None
        if body[0] == pk.ICMP_ECHO_REPLY:
            return self._echo.get(struct.unpack_from("!HH", body, 4))
        if body[0] not in (pk.ICMP_UNREACHABLE, pk.ICMP_TIME_EXCEEDED):
            return None
        try:
            quoted_proto, _src, quoted_dst, head = pk.icmp_error_quote(body)
        except ValueError:
            return None
        if quoted_proto == pk.IP_PROTO_TCP:
            sport, dport = struct.unpack_from("!HH", head)
            return self._tcp.get((sport, quoted_dst, dport))
        if quoted_proto == pk.IP_PROTO_ICMP and head[0] == pk.ICMP_ECHO_REQUEST:
            return self._echo.get(struct.unpack_from("!HH", head, 4))
        return None

    def _answer_stray(self, src: bytes, dst: bytes, segment: bytes) -> bool:
        """A segment to a probe port on a probe source that no probe expects: answered as a closed port."""
        if len(segment) < 4 or dst not in self._sources:
            return False
        if struct.unpack_from("!H", segment, 2)[0] not in PROBE_PORTS:
            return False
        try:
            reset = closed_port_reset(dst, src, segment)
        except ValueError:
            return True             # truncated: nothing to answer, and nobody else's
        if reset is not None:
            self.counters["stray_resets"] += 1
            self.send(reset)
        return True

    # -- schedule ------------------------------------------------------------------------------

    def timers(self, now: float) -> None:
        """Fails the probes that are late, then starts those that are due."""
        self._admit_waiting(now)        # slots that remove() freed
        while self._timers and self._timers[0][0] <= now:
            _when, _tie, key = heapq.heappop(self._timers)
            watched = self._watched.get(key)
            if watched is None:
                continue            # removed since
            if watched.probe is not None and watched.deadline <= now:
                self.counters["probes_timed_out"] += 1
                probe = self._release(watched)
                self._send_all(probe.expire())
                self._judge(watched, probe)
                self._admit_waiting(now)
            # on_change may have removed or replaced the target
            if self._watched.get(key) is watched and watched.probe is None and not watched.waiting \
                    and watched.next_start <= now:
                self._start(watched, now)

    def next_deadline(self) -> float | None:
        """When `timers` has something to do next; None when nothing is scheduled."""
        while self._timers and not self._is_live(*self._timers[0]):
            heapq.heappop(self._timers)     # a probe that finished before its deadline, a removed target
        return self._timers[0][0] if self._timers else None

    def _is_live(self, when: float, _tie: int, key: Hashable) -> bool:
        watched = self._watched.get(key)
        return watched is not None and (when == watched.next_start
                                        or (watched.probe is not None and when == watched.deadline))

    def _at(self, when: float, key: Hashable) -> None:
        heapq.heappush(self._timers, (when, next(self._tie), key))

    def _start(self, watched: _Watched, now: float) -> None:
        if self.in_flight >= self.max_in_flight:
            self.counters["in_flight_refused"] += 1
            watched.waiting = True
            self._waiting.append(watched)
            return
        target, spec = watched.target, watched.target.spec
        watched.waiting = False
        watched.next_start = now + spec.interval_s
        self._at(watched.next_start, target.key)
        new = self._new_probe(target)
        if new is None:
            self.counters["ids_exhausted"] += 1
            return
        probe, table, demux_key = new
        table[demux_key] = watched
        watched.probe, watched.demux = probe, (table, demux_key)
        # Never past the next start: one probe at a time, even if timeout_s > interval_s was allowed through.
        watched.deadline = now + min(spec.timeout_s, spec.interval_s)
        self._at(watched.deadline, target.key)
        self.counters["probes_sent"] += 1
        self._send_all(probe.start(now))

    def _admit_waiting(self, now: float) -> None:
        while self._waiting and self.in_flight < self.max_in_flight:
            watched = self._waiting.popleft()
            if self._watched.get(watched.target.key) is watched:     # not removed while in line
                self._start(watched, now)

    def _new_probe(self, target: HealthTarget) -> tuple[TcpProbe | IcmpProbe, dict, tuple] | None:
        """A probe for `target` with an identity no probe in flight has, and where it is registered."""
        spec = target.spec
        if spec.type == "icmp":
            seq = self._echo_seqs.take(lambda s: (self._ident, s) in self._echo)
            if seq is None:
                return None
            return IcmpProbe(target.source, target.address, self._ident, seq), self._echo, (self._ident, seq)
        port = self._ports.take(lambda p: (p, target.address, target.port) in self._tcp)
        if port is None:
            return None
        http = (spec.http_path, _host_header(target), spec.http_expect) if spec.type == "http" else None
        probe = TcpProbe(target.source, port, target.address, target.port, http)
        return probe, self._tcp, (port, target.address, target.port)

    def _release(self, watched: _Watched) -> TcpProbe | IcmpProbe:
        """Takes the probe in flight off the books; answers to it are strays from now on."""
        table, demux_key = watched.demux
        del table[demux_key]
        probe = watched.probe
        watched.probe = watched.demux = None
        return probe

    # -- verdicts ------------------------------------------------------------------------------

    def _judge(self, watched: _Watched, probe: TcpProbe | IcmpProbe) -> None:
        target = watched.target
        watched.checks += 1
        watched.last_reason = probe.reason
        if probe.ok:
            self.counters["probes_ok"] += 1
            watched.successes, watched.failures = watched.successes + 1, 0
            watched.last_rtt_ms = probe.rtt_ms
            if self.on_rtt is not None:
                self.on_rtt(target.key, probe.rtt_ms)
            if not watched.up and watched.successes >= target.spec.rise:
                self._flip(watched, True)
        else:
            self.counters["probes_failed"] += 1
            watched.successes, watched.failures = 0, watched.failures + 1
            if watched.up and watched.failures >= target.spec.fall:
                self._flip(watched, False)

    def _flip(self, watched: _Watched, up: bool) -> None:
        target = watched.target
        watched.up = up
        self.counters["state_changes"] += 1
        log.log(logging.INFO if up else logging.WARNING, "backend %s (%s:%d) is %s: %s", target.key,
                ipaddress.IPv4Address(target.address), target.port, "up" if up else "down", watched.last_reason)
        self.on_change(target.key, up, watched.last_reason)

    def _send_all(self, packets: list[bytes]) -> None:
        for packet in packets:
            self.send(packet)
