"""Health checks against fake backends that answer like a kernel would, on a clock that jumps between events."""
import heapq
import ipaddress
import itertools
import logging
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP

from pyswitch.config import HealthConfig
from pyswitch.lb import probes
from pyswitch.lb.health import PROBE_PORTS, HealthChecker, HealthTarget
from pyswitch.pipeline import packets as pk

SWITCH = bytes([192, 0, 2, 1])          # the switch's address the probes leave from
ROUTER = bytes([192, 0, 2, 254])        # answers for backends it cannot reach
RTT = 0.004                             # from a packet sent to a backend to its answer arriving
HTTP_REQUEST = (b"GET /health HTTP/1.0\r\nHost: 192.0.2.11:8080\r\nUser-Agent: pyswitch-health\r\n"
                b"Connection: close\r\n\r\n")


def ip(text):
    return ipaddress.IPv4Address(text).packed


class FakeBackend:
    """A host as its kernel answers the checker: a TCP listener on `port` with a one-answer HTTP server
    behind it, and an ICMP echo responder.

    mode    listen       accept; answer a request with `status`
            closed       RST to the SYN (nothing listens on the port)
            dead         silent (powered off, or a firewall that drops)
            mute         accept, never answer the request
            unreachable  the router in front answers ICMP host unreachable, quoting what it got
    split   the status line comes in two segments; reorder: the second overtakes the first, and comes
            again after the first (as the retransmission of a segment never acknowledged would)
    """

    def __init__(self, address, port=8080, mode="listen", status=200, split=False, reorder=False, rtt=RTT):
        self.address, self.port, self.mode, self.status = address, port, mode, status
        self.split, self.reorder, self.rtt = split, reorder, rtt
        self.connections = {}       # (client address, client port) -> [our next seq, their next seq]
        self.resets = []            # client ports of connections a RST closed at the right sequence number
        self.requests = []
        self._iss = itertools.count(1000, 1_000_000)

    def answer(self, packet):
        proto, src, dst, body = pk.ipv4_parts(packet)
        if self.mode == "dead":
            return []
        if self.mode == "unreachable":
            return [pk.ipv4(ROUTER, src, pk.IP_PROTO_ICMP, pk.icmp_error(pk.ICMP_UNREACHABLE, 1, packet))]
        if proto == pk.IP_PROTO_ICMP and body[0] == pk.ICMP_ECHO_REQUEST:
            return [pk.ipv4(dst, src, pk.IP_PROTO_ICMP, pk.icmp(pk.ICMP_ECHO_REPLY, 0, body[4:]))]
        if proto != pk.IP_PROTO_TCP:
            return []
        sport, dport, seq, _ack, flags, _window, payload = pk.tcp_fields(body)

        def segment(our_seq, ack, flags, data=b""):
            return pk.ipv4(dst, src, pk.IP_PROTO_TCP, pk.tcp(dst, src, dport, sport, our_seq, ack, flags, data))
        conn = self.connections.get((src, sport))
        if flags & pk.TCP_RST:
            if conn is not None and seq == conn[1]:     # exactly the next sequence number (RFC 5961)
                del self.connections[(src, sport)]
                self.resets.append(sport)
            return []
        if flags & pk.TCP_SYN:
            if dport != self.port or self.mode == "closed":
                return [segment(0, (seq + 1) % 2**32, pk.TCP_RST | pk.TCP_ACK)]
            iss = next(self._iss)
            self.connections[(src, sport)] = [iss + 1, (seq + 1) % 2**32]
            return [segment(iss, (seq + 1) % 2**32, pk.TCP_SYN | pk.TCP_ACK)]
        if conn is None or not payload or seq != conn[1]:
            return []
        conn[1] = (conn[1] + len(payload)) % 2**32
        self.requests.append(payload)
        if self.mode == "mute":
            return [segment(conn[0], conn[1], pk.TCP_ACK)]
        reasons = {200: "OK", 503: "Service Unavailable"}
        answer = f"HTTP/1.0 {self.status} {reasons.get(self.status, 'Other')}\r\nContent-Length: 0\r\n\r\n"
        parts = [answer[:10].encode(), answer[10:].encode()] if self.split or self.reorder else [answer.encode()]
        out, offset = [], conn[0]
        for part in parts:
            out.append(segment(offset, conn[1], pk.TCP_ACK | pk.TCP_PSH, part))
            offset += len(part)
        out.append(segment(offset, conn[1], pk.TCP_FIN | pk.TCP_ACK))
        conn[0] = offset + 1
        if self.reorder:
            out = [out[1], out[0], out[1], out[2]]
        return out


class Net:
    """The datapath between the checker and the fake backends, and the clock: it jumps from event to event
    (an answer arriving, the checker's next deadline)."""

    def __init__(self, *backends, **checker_args):
        self.now = 0.0
        self.backends = {b.address: b for b in backends}
        self.sent, self.sent_at = [], []    # every packet the checker sent, and when
        self.unclaimed = []                 # packets handed to the checker that were no probe's
        self.changes, self.rtts = [], []
        self.max_in_flight = 0
        self._queue, self._order = [], itertools.count()
        self.checker = HealthChecker(self.send, lambda *change: self.changes.append(change),
                                     lambda key, ms: self.rtts.append((key, ms)), **checker_args)

    def send(self, packet):
        self.sent.append(packet)
        self.sent_at.append(self.now)
        backend = self.backends.get(pk.ipv4_parts(packet)[2])
        if backend is not None:
            for i, reply in enumerate(backend.answer(packet)):
                heapq.heappush(self._queue, (self.now + backend.rtt + i * 1e-6, next(self._order), reply))

    def add(self, key, address, port=8080, type_="tcp", up=True, **health):
        target = HealthTarget(key, address, port, SWITCH, HealthConfig(type=type_, **health))
        self.checker.add(target, self.now, up)

    def next_event(self):
        times = [self._queue[0][0]] if self._queue else []
        deadline = self.checker.next_deadline()
        return min(times + [deadline] if deadline is not None else times, default=None)

    def step(self):
        """Moves the clock to the next event and hands it to the checker."""
        self.now = self.next_event()
        while self._queue and self._queue[0][0] <= self.now:
            packet = heapq.heappop(self._queue)[2]
            if not self.checker.handle(packet, self.now):
                self.unclaimed.append(packet)
        self.checker.timers(self.now)
        self.max_in_flight = max(self.max_in_flight, self.checker.in_flight)

    def run(self, until):
        while self.next_event() is not None and self.next_event() <= until:
            self.step()
        self.now = until

    def until_checked(self, key, checks=1):
        while self.checker.state(key)["checks"] < checks:
            self.step()
        return self.checker.state(key)

    def tcp_sent(self):
        return [pk.tcp_fields(pk.ipv4_parts(p)[3]) for p in self.sent if p[9] == pk.IP_PROTO_TCP]


# Packet builders

def test_tcp_segment_matches_scapy():
    src, dst = ip("198.51.100.1"), ip("203.0.113.7")
    segment = pk.tcp(src, dst, 61000, 80, 0x01020304, 0xA0B0C0D0, pk.TCP_SYN | pk.TCP_ACK, b"hello",
                     window=1000, options=probes.SYN_OPTIONS)
    packet = pk.ipv4(src, dst, pk.IP_PROTO_TCP, segment)
    expected = IP(src="198.51.100.1", dst="203.0.113.7", id=0, ttl=64) / TCP(
        sport=61000, dport=80, seq=0x01020304, ack=0xA0B0C0D0, flags="SA", window=1000,
        options=[("MSS", 1460)]) / b"hello"
    assert packet == bytes(expected), "same bytes, checksums included"
    assert pk.tcp_fields(segment) == (61000, 80, 0x01020304, 0xA0B0C0D0, 0x12, 1000, b"hello")


def test_parsers_refuse_what_lies():
    packet = pk.ipv4(SWITCH, ip("192.0.2.11"), pk.IP_PROTO_TCP, pk.tcp(SWITCH, ip("192.0.2.11"), 1, 2, 0, 0, 0))
    assert pk.ipv4_parts(packet + bytes(6))[3] == packet[20:], "Ethernet padding is trimmed"
    fragment = packet[:6] + b"\x20\x00" + packet[8:]
    for bad in (packet[:19], packet[:-1], b"\x65" + packet[1:], fragment):
        with pytest.raises(ValueError):
            pk.ipv4_parts(bad)
    with pytest.raises(ValueError):
        pk.tcp_fields(packet[20:39])
    with pytest.raises(ValueError):
        pk.tcp_fields(packet[20:32] + b"\xf0" + packet[33:])       # data offset 60 in a 20-byte segment
    with pytest.raises(ValueError):
        pk.tcp(SWITCH, SWITCH, 1, 2, 0, 0, 0, options=b"\x01")
    with pytest.raises(ValueError):
        pk.icmp_error_quote(pk.icmp_error(pk.ICMP_UNREACHABLE, 1, packet[:27]))
    assert pk.icmp_error_quote(pk.icmp_error(pk.ICMP_UNREACHABLE, 1, packet)) == \
        (pk.IP_PROTO_TCP, SWITCH, ip("192.0.2.11"), packet[20:28])


def _assert_checksums(packet):
    parsed = IP(packet)
    rebuilt = IP(packet)
    del rebuilt.chksum
    transport = TCP if TCP in rebuilt else ICMP
    del rebuilt[transport].chksum
    rebuilt = IP(bytes(rebuilt))
    assert rebuilt.chksum == parsed.chksum
    assert rebuilt[transport].chksum == parsed[transport].chksum


def test_every_probe_packet_has_valid_checksums():
    net = Net(FakeBackend(ip("192.0.2.11"), split=True), FakeBackend(ip("192.0.2.12")),
              FakeBackend(ip("192.0.2.13")), FakeBackend(ip("192.0.2.14"), mode="mute"))
    net.add("http", ip("192.0.2.11"), type_="http", http_path="/health")
    net.add("tcp", ip("192.0.2.12"))
    net.add("icmp", ip("192.0.2.13"), type_="icmp")
    net.add("mute", ip("192.0.2.14"), type_="http")
    net.run(2.0)
    kinds = {(p[9], pk.tcp_fields(p[20:])[4] if p[9] == pk.IP_PROTO_TCP else p[20]) for p in net.sent}
    assert kinds == {(pk.IP_PROTO_TCP, pk.TCP_SYN), (pk.IP_PROTO_TCP, pk.TCP_ACK | pk.TCP_PSH),
                     (pk.IP_PROTO_TCP, pk.TCP_ACK), (pk.IP_PROTO_TCP, pk.TCP_RST),
                     (pk.IP_PROTO_ICMP, pk.ICMP_ECHO_REQUEST)}
    for packet in net.sent:
        _assert_checksums(packet)
        assert IP(packet).src == "192.0.2.1"


# TCP connect

def test_tcp_check_connects_then_resets():
    backend = FakeBackend(ip("192.0.2.11"))
    net = Net(backend)
    net.add("b", ip("192.0.2.11"))
    st = net.until_checked("b")
    assert st == {"up": True, "successes": 1, "failures": 0, "last_reason": "connected",
                  "last_rtt_ms": pytest.approx(RTT * 1000), "checks": 1}
    syn, reset = net.tcp_sent()
    assert syn[4] == pk.TCP_SYN and IP(net.sent[0])[TCP].options == [("MSS", 1460)]
    assert syn[0] in PROBE_PORTS and syn[1] == 8080
    assert reset[4] == pk.TCP_RST and reset[2] == (syn[2] + 1) % 2**32
    assert backend.connections == {} and backend.resets == [syn[0]], "the backend keeps nothing half-open"


def test_tcp_closed_port_is_refused():
    net = Net(FakeBackend(ip("192.0.2.11"), mode="closed"))
    net.add("b", ip("192.0.2.11"), fall=1)
    assert net.until_checked("b")["last_reason"] == "refused (RST)"
    assert net.changes == [("b", False, "refused (RST)")]
    assert [f[4] for f in net.tcp_sent()] == [pk.TCP_SYN], "a RST is never answered"


def test_silent_backend_times_out():
    net = Net(FakeBackend(ip("192.0.2.11"), mode="dead"))
    net.add("b", ip("192.0.2.11"), interval_s=1.0, timeout_s=0.3)
    st = net.until_checked("b")
    assert (st["last_reason"], st["failures"], st["up"]) == ("timeout", 1, True)
    assert net.sent_at[0] + 0.3 == net.now, "failed timeout_s after its start"
    assert net.checker.counters["probes_timed_out"] == 1 and net.checker.counters["probes_failed"] == 1
    assert net.checker.in_flight == 0


def test_late_syn_ack_is_reset_as_by_a_closed_port():
    backend = FakeBackend(ip("192.0.2.11"), rtt=0.7)
    net = Net(backend)
    net.add("b", ip("192.0.2.11"), interval_s=2.0, timeout_s=0.5)
    assert net.until_checked("b")["last_reason"] == "timeout"
    assert backend.connections, "the backend answered, too late"
    net.run(net.now + 0.5)
    assert net.checker.counters["stray_resets"] == 1
    assert backend.connections == {}, "the late SYN/ACK got its RST"


def test_unreachable_backend_fails_with_the_icmp_reason():
    net = Net(FakeBackend(ip("192.0.2.11"), mode="unreachable"),
              FakeBackend(ip("192.0.2.12"), mode="unreachable"))
    net.add("tcp", ip("192.0.2.11"))
    net.add("icmp", ip("192.0.2.12"), type_="icmp")
    assert net.until_checked("tcp")["last_reason"] == "unreachable (host)"
    assert net.until_checked("icmp")["last_reason"] == "unreachable (host)"
    assert net.unclaimed == [] and net.checker.counters["probes_timed_out"] == 0


# HTTP

def test_http_ok_with_the_status_line_in_two_segments():
    backend = FakeBackend(ip("192.0.2.11"), split=True)
    net = Net(backend)
    net.add("b", ip("192.0.2.11"), type_="http", http_path="/health")
    st = net.until_checked("b")
    assert (st["last_reason"], st["successes"]) == ("HTTP 200", 1)
    assert st["last_rtt_ms"] == pytest.approx(2 * RTT * 1000, abs=0.01), "SYN -> status line"
    assert backend.requests == [HTTP_REQUEST]
    assert backend.connections == {} and len(backend.resets) == 1


def test_http_host_header_leaves_out_the_default_port():
    backend = FakeBackend(ip("192.0.2.11"), port=80)
    net = Net(backend)
    net.add("b", ip("192.0.2.11"), port=80, type_="http", http_path="/a b")
    net.until_checked("b")
    assert backend.requests[0].startswith(b"GET /a%20b HTTP/1.0\r\nHost: 192.0.2.11\r\n")


def test_http_status_mismatch_fails():
    backend = FakeBackend(ip("192.0.2.11"), status=503)
    net = Net(backend)
    net.add("b", ip("192.0.2.11"), type_="http", fall=1)
    assert net.until_checked("b")["last_reason"] == "HTTP 503, expected 200"
    assert net.changes == [("b", False, "HTTP 503, expected 200")]
    assert net.rtts == [], "only successful probes report a round trip"
    assert backend.connections == {}


def test_http_expect_another_status():
    net = Net(FakeBackend(ip("192.0.2.11"), status=503))
    net.add("b", ip("192.0.2.11"), type_="http", http_expect=503)
    st = net.until_checked("b")
    assert (st["last_reason"], st["successes"]) == ("HTTP 503", 1)


def test_http_out_of_order_segment_is_ignored_until_sent_again():
    backend = FakeBackend(ip("192.0.2.11"), reorder=True)
    net = Net(backend)
    net.add("b", ip("192.0.2.11"), type_="http")
    assert net.until_checked("b")["last_reason"] == "HTTP 200"
    acks = [f[3] for f in net.tcp_sent() if f[4] == pk.TCP_ACK]
    assert acks == [1000 + 1 + len(b"HTTP/1.0 2")], "the part that overtook is not acknowledged; the first is"
    assert backend.connections == {}


def test_http_silence_after_connect_times_out_and_resets():
    backend = FakeBackend(ip("192.0.2.11"), mode="mute")
    net = Net(backend)
    net.add("b", ip("192.0.2.11"), type_="http")
    assert net.until_checked("b")["last_reason"] == "timeout waiting for the HTTP status line"
    assert backend.connections == {} and len(backend.resets) == 1


def _to_probe(probe, seq, flags, payload=b"", ack=0, source=None):
    source = source or probe.address
    segment = pk.tcp(source, probe.source, probe.port, probe.source_port, seq, ack, flags, payload)
    return pk.ipv4(source, probe.source, pk.IP_PROTO_TCP, segment)


def _syn_ack(probe, server_isn=5000):
    return _to_probe(probe, server_isn, pk.TCP_SYN | pk.TCP_ACK, ack=(probe.isn + 1) % 2**32)


def _http_probe():
    probe = probes.TcpProbe(SWITCH, 61000, ip("192.0.2.11"), 80, ("/", "192.0.2.11", 200))
    probe.start(0.0)
    return probe


@pytest.mark.parametrize("answer, reason", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "malformed HTTP status line b'SSH-2.0-OpenSSH_9.2'"),
    (b"HTTP/1.1 204\r\n", "HTTP 204, expected 200"),
    (b"x" * 2000, "no HTTP status line in the first 1024 bytes"),
])
def test_http_answers_that_are_not_the_expected_status(answer, reason):
    probe = _http_probe()
    probe.receive(_syn_ack(probe), 0.1)
    reset, = probe.receive(_to_probe(probe, 5001, pk.TCP_ACK, answer), 0.2)
    assert probe.done and not probe.ok and probe.reason == reason
    assert pk.tcp_fields(reset[20:])[4] == pk.TCP_RST


def test_http_repeated_syn_ack_and_close_before_the_status_line():
    probe = _http_probe()
    request, = probe.receive(_syn_ack(probe), 0.1)
    assert probe.receive(_syn_ack(probe), 0.3) == [request], "our request was lost: it goes again"
    reset, = probe.receive(_to_probe(probe, 5001, pk.TCP_ACK | pk.TCP_FIN, b"HTTP/1.0 2"), 0.4)
    assert probe.reason == "closed by the backend before the status line"
    assert pk.tcp_fields(reset[20:])[4] == pk.TCP_RST


def test_http_reset_by_the_backend():
    probe = _http_probe()
    probe.receive(_syn_ack(probe), 0.1)
    assert probe.receive(_to_probe(probe, 999, pk.TCP_RST), 0.2) == [] and not probe.done, \
        "a RST outside our window is not about this connection"
    probe.receive(_to_probe(probe, 5001, pk.TCP_RST), 0.3)
    assert probe.reason == "reset by the backend before the status line"


def test_tcp_probe_ignores_what_is_not_an_answer_to_it():
    probe = _http_probe()
    wrong_ack = _to_probe(probe, 1, pk.TCP_SYN | pk.TCP_ACK, ack=(probe.isn + 7) % 2**32)
    other_host = _to_probe(probe, 1, pk.TCP_SYN | pk.TCP_ACK, ack=(probe.isn + 1) % 2**32,
                           source=ip("192.0.2.12"))
    plain_syn = _to_probe(probe, 1, pk.TCP_SYN)
    for packet in (wrong_ack, other_host, plain_syn, b"garbage"):
        assert probe.receive(packet, 0.1) == []
    assert not probe.done


# ICMP

def test_icmp_echo():
    net = Net(FakeBackend(ip("192.0.2.11")))
    net.add("b", ip("192.0.2.11"), type_="icmp")
    st = net.until_checked("b")
    assert (st["last_reason"], st["successes"]) == ("echo reply", 1)
    assert net.rtts == [("b", pytest.approx(RTT * 1000))]
    request = IP(net.sent[0])[ICMP]
    assert request.type == 8 and bytes(request.payload) == probes.ECHO_DATA


def test_icmp_reply_with_other_data_or_source_does_not_count():
    probe = probes.IcmpProbe(SWITCH, ip("192.0.2.11"), 7, 9)
    probe.start(0.0)
    wrong_data = pk.ipv4(ip("192.0.2.11"), SWITCH, pk.IP_PROTO_ICMP,
                         pk.icmp(pk.ICMP_ECHO_REPLY, 0, struct.pack("!HH", 7, 9) + b"other"))
    wrong_source = pk.ipv4(ip("192.0.2.12"), SWITCH, pk.IP_PROTO_ICMP, pk.icmp(pk.ICMP_ECHO_REPLY, 0, probe.echo))
    for packet in (wrong_data, wrong_source):
        assert probe.receive(packet, 0.1) == []
    assert not probe.done
    assert probe.expire() == [] and probe.reason == "timeout"


# Verdicts

def test_rise_and_fall_exact_counts(caplog):
    caplog.set_level(logging.INFO, logger="pyswitch.health")
    backend = FakeBackend(ip("192.0.2.11"))
    net = Net(backend)
    net.add("web", ip("192.0.2.11"), interval_s=1.0, timeout_s=0.5, rise=3, fall=2)
    net.run(net.next_event() + 0.75)
    assert net.checker.state("web")["checks"] == 1

    def interval():
        net.run(net.now + 1.0)
        return net.checker.state("web")

    backend.mode = "dead"
    st = interval()
    assert (st["up"], st["failures"], st["checks"]) == (True, 1, 2), "one failure: still up"
    st = interval()
    assert (st["up"], st["failures"]) == (False, 2), "down after exactly `fall` failures"
    assert net.changes == [("web", False, "timeout")]
    assert interval()["failures"] == 3 and len(net.changes) == 1, "on_change once per flip"
    backend.mode = "listen"
    assert interval()["successes"] == 1
    st = interval()
    assert (st["up"], st["successes"]) == (False, 2), "two successes: still down"
    st = interval()
    assert (st["up"], st["successes"]) == (True, 3), "up after exactly `rise` successes"
    assert net.changes == [("web", False, "timeout"), ("web", True, "connected")]
    assert net.checker.counters["state_changes"] == 2
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "pyswitch.health"]
    assert records == [(logging.WARNING, "backend web (192.0.2.11:8080) is down: timeout"),
                       (logging.INFO, "backend web (192.0.2.11:8080) is up: connected")]


def test_initially_down_backend_needs_rise_successes():
    net = Net(FakeBackend(ip("192.0.2.11")))
    net.add("b", ip("192.0.2.11"), up=False, rise=2)
    assert not net.until_checked("b")["up"]
    assert net.until_checked("b", 2)["up"] and net.changes == [("b", True, "connected")]


def test_type_none_never_probes_and_is_up():
    net = Net(FakeBackend(ip("192.0.2.11")))
    net.add("b", ip("192.0.2.11"), type_="none", up=False)
    net.run(10.0)
    assert net.sent == [] and net.checker.next_deadline() is None
    assert net.checker.state("b")["up"] and net.checker.state("b")["checks"] == 0


def test_on_rtt_reports_each_success():
    net = Net(FakeBackend(ip("192.0.2.11"), rtt=0.010), FakeBackend(ip("192.0.2.12"), rtt=0.050))
    net.add("fast", ip("192.0.2.11"))
    net.add("slow", ip("192.0.2.12"), type_="http")
    net.until_checked("fast", 3)
    net.until_checked("slow", 3)
    rtts = {key: [ms for k, ms in net.rtts if k == key] for key in ("fast", "slow")}
    assert rtts["fast"][:3] == [pytest.approx(10.0)] * 3
    assert rtts["slow"][:3] == [pytest.approx(100.0, abs=0.01)] * 3, "SYN -> status line: two round trips"
    assert net.checker.state("slow")["last_rtt_ms"] == rtts["slow"][-1]


# Schedule, concurrency, bounds

def test_one_probe_at_a_time_every_interval():
    net = Net(FakeBackend(ip("192.0.2.11"), mode="dead"))
    net.add("b", ip("192.0.2.11"), interval_s=0.5, timeout_s=0.5, fall=100)
    net.run(5.2)
    gaps = [b - a for a, b in zip(net.sent_at, net.sent_at[1:])]
    assert len(net.sent) >= 10 and gaps == [pytest.approx(0.5)] * len(gaps)
    assert net.max_in_flight == 1
    assert net.checker.state("b")["checks"] == len(net.sent) - 1, "each failed as the next one started"


def test_first_probes_are_spread_over_the_interval():
    net = Net()
    for i in range(100):
        net.add(("web", i), ip("192.0.2.11"), port=8000 + i, interval_s=2.0, timeout_s=0.1)
    net.run(2.0 - 1e-9)
    assert len(net.sent) == 100, "every backend's first probe within the first interval"
    assert len({int(t * 10) for t in net.sent_at}) >= 15, "not all at once"


def test_300_backends_with_one_dead_all_live_ones_succeed_in_their_interval():
    addresses = [ip(f"198.51.100.{i + 1}") for i in range(250)] + [ip(f"203.0.113.{i + 1}") for i in range(50)]
    backends = [FakeBackend(a, rtt=0.001 + (i % 7) * 0.02) for i, a in enumerate(addresses)]
    dead = FakeBackend(ip("203.0.113.99"), mode="dead")
    net = Net(*backends, dead)
    for i, b in enumerate(backends):
        net.add(i, b.address, type_=("tcp", "http", "icmp")[i % 3])
    net.add("dead", dead.address)
    net.run(1.0 + 0.5)      # every first probe started before 1.0 and is over half a second later
    for i in range(300):
        st = net.checker.state(i)
        assert st["checks"] >= 1 and st["successes"] == st["checks"] and st["up"], (i, st)
    assert net.checker.state("dead")["last_reason"] == "timeout"
    assert net.checker.counters["probes_failed"] == 1
    assert net.max_in_flight >= 20, "the probes overlap: none waits for another"


def test_local_ports_round_robin_skip_one_still_in_flight():
    net = Net(FakeBackend(ip("192.0.2.11"), mode="dead"))
    net.add("slow", ip("192.0.2.11"), interval_s=1000.0, timeout_s=1000.0)
    net.run(net.next_event())
    for i in range(40):
        net.add(i, ip("192.0.2.11"), interval_s=1.0, timeout_s=1.0, fall=1000)
    net.run(net.now + 120)
    ports = [f[0] for f in net.tcp_sent()]
    assert ports[0] == PROBE_PORTS[0], "the slow probe's, still in flight"
    assert len(ports) > len(PROBE_PORTS) and net.max_in_flight == 41
    assert ports[1:len(PROBE_PORTS)] == list(PROBE_PORTS[1:]), "in turn through the range"
    assert ports[len(PROBE_PORTS)] == PROBE_PORTS[1], "then around again, past the port still in use"


def test_local_ports_run_out_only_for_one_backend_address_and_port():
    net = Net(FakeBackend(ip("192.0.2.11"), mode="dead"), max_in_flight=len(PROBE_PORTS) + 10)
    for i in range(len(PROBE_PORTS) + 1):
        net.add(i, ip("192.0.2.11"), interval_s=1.0, timeout_s=1.0)
    net.add("other", ip("192.0.2.12"), interval_s=1.0, timeout_s=1.0)
    net.run(1.0 - 1e-9)
    assert net.checker.counters["ids_exhausted"] == 1
    assert net.checker.in_flight == len(PROBE_PORTS) + 1, "another backend still gets a port"
    with pytest.raises(ValueError):
        HealthChecker(net.send, print, max_in_flight=0)


def test_in_flight_bound_refuses_counts_and_takes_turns():
    addresses = [ip(f"192.0.2.{10 + i}") for i in range(10)]
    net = Net(*[FakeBackend(a, mode="dead") for a in addresses], max_in_flight=4)
    for i, a in enumerate(addresses):
        net.add(i, a, interval_s=1.0, timeout_s=1.0, fall=100)
    net.run(10.0)
    counters = net.checker.counters
    assert net.max_in_flight == 4 and counters["in_flight_refused"] > 0
    checks = [net.checker.state(i)["checks"] for i in range(10)]
    assert sum(checks) == counters["probes_failed"], "a refused probe is not a failed check"
    assert min(checks) >= 3, f"dead backends cannot keep the slots to themselves: {checks}"


def test_a_removed_probe_frees_its_slot_for_the_one_waiting():
    addresses = {"a": ip("192.0.2.11"), "b": ip("192.0.2.12")}
    net = Net(*[FakeBackend(a, mode="dead") for a in addresses.values()], max_in_flight=1)
    for key, address in addresses.items():
        net.add(key, address, interval_s=10.0, timeout_s=10.0)
    net.run(10.0 - 1e-9)
    assert len(net.sent) == 1 and net.checker.counters["in_flight_refused"] == 1
    running = next(key for key, a in addresses.items() if pk.ipv4_parts(net.sent[0])[2] == a)
    net.checker.remove(running)
    net.checker.timers(net.now)
    assert len(net.sent) == 2 and pk.ipv4_parts(net.sent[1])[2] != addresses[running]
    assert net.checker.in_flight == 1


def test_remove_stops_probing_and_resets_a_connected_probe():
    backend = FakeBackend(ip("192.0.2.11"), mode="mute")
    net = Net(backend)
    net.add("b", ip("192.0.2.11"), type_="http")
    while not backend.requests:
        net.step()
    assert net.checker.in_flight == 1 and backend.connections
    net.checker.remove("b")
    assert backend.connections == {} and net.checker.in_flight == 0
    sent = len(net.sent)
    net.run(net.now + 10)
    assert len(net.sent) == sent and net.checker.next_deadline() is None
    with pytest.raises(KeyError):
        net.checker.state("b")


def test_add_again_replaces_the_target():
    net = Net(FakeBackend(ip("192.0.2.11")), FakeBackend(ip("192.0.2.12"), mode="dead"))
    net.add("b", ip("192.0.2.12"), fall=1)
    net.add("b", ip("192.0.2.11"), fall=1)
    assert net.until_checked("b", 3)["up"]
    assert {pk.ipv4_parts(p)[2] for p in net.sent} == {ip("192.0.2.11")}


def test_handle_leaves_other_packets_alone_and_resets_strays():
    net = Net()
    net.add("b", ip("192.0.2.11"))
    backend = ip("192.0.2.11")

    def tcp_from_backend(dst, dport, flags):
        return pk.ipv4(backend, dst, pk.IP_PROTO_TCP, pk.tcp(backend, dst, 1234, dport, 77, 0, flags))
    echo_request = pk.ipv4(backend, SWITCH, pk.IP_PROTO_ICMP, pk.icmp(pk.ICMP_ECHO_REQUEST, 0, b"\0\1\0\1"))
    udp = pk.ipv4(backend, SWITCH, pk.IP_PROTO_UDP, bytes(8))
    to_ssh = tcp_from_backend(SWITCH, 22, pk.TCP_SYN)
    to_vip = tcp_from_backend(ip("203.0.113.80"), 62000, pk.TCP_SYN)    # not an address probes leave from
    for packet in (echo_request, udp, to_ssh, to_vip, b"", b"\x45" + bytes(10)):
        assert net.checker.handle(packet, 0.0) is False
    assert net.checker.handle(tcp_from_backend(SWITCH, 62000, pk.TCP_RST), 0.0) is True
    assert net.sent == [], "a RST is never answered"
    assert net.checker.handle(tcp_from_backend(SWITCH, 62000, pk.TCP_SYN), 0.0) is True
    reset = pk.tcp_fields(pk.ipv4_parts(net.sent[0])[3])
    assert reset[:5] == (62000, 1234, 0, 78, pk.TCP_RST | pk.TCP_ACK), "a closed port's answer to a SYN"
