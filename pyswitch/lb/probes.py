"""Health probes: the packets of one check, and what the answers to them mean.

The switch's addresses exist only inside the switch, so a probe cannot open a kernel socket: each probe
is a small state machine that builds the IPv4 packets to send and is handed the packets that come back
to the switch.  It does no I/O and keeps no clock; the checker (health.py) routes, demultiplexes and
fails probes that are late.

    TcpProbe    SYN -> SYN/ACK: the port is open.  Answered at once with RST, so the backend's
                application never even accepts a connection and nothing is left half-open
                (keepalived's TCP_CHECK closes as quickly).  RST: refused.
    TcpProbe    with http: SYN -> SYN/ACK -> ACK carrying "GET path HTTP/1.0" -> in-order data up to the
                end of the status line -> RST.  Success when the status is the expected one.
    IcmpProbe   echo request -> echo reply.

An ICMP error (destination unreachable, time exceeded) that quotes a probe's own packet fails it.

Two simplifications that a real TCP cannot make and a health check can:
  - Nothing is retransmitted.  A lost probe packet fails that probe; `fall` > 1 absorbs it, as it
    absorbs any one bad check.  Only a repeated SYN/ACK (our ACK was lost) is answered again.
  - Checksums of answers are not verified.  A backend in a namespace of the same host hands its packets
    over with partial checksums (the virtio header's NEEDS_CSUM), which only a receiving kernel completes.
"""
from __future__ import annotations

import re
import secrets
import struct
from urllib.parse import quote

from ..pipeline import packets as pk

MSS = 1460
WINDOW = 65535              # what every segment of ours advertises
SYN_OPTIONS = struct.pack("!BBH", 2, 4, MSS)        # kind 2 (MSS), length 4
STATUS_LINE_MAX = 1024      # bytes of the answer kept while waiting for the status line's end
STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: .*)?")
USER_AGENT = "pyswitch-health"
PATH_SAFE = "/?@!$&'()*+,;=:%~-._"     # RFC 3986 characters of a request target, left as they are: a
                                        # space, a line break or non-ASCII text is percent-encoded
ECHO_DATA = b"pyswitch health check 0123456789"  # 32 bytes, echoed back by the backend
UNREACHABLE_CODES = {0: "net", 1: "host", 2: "protocol", 3: "port", 4: "fragmentation needed",
                     9: "net prohibited", 10: "host prohibited", 13: "administratively prohibited"}


def _mod32(n: int) -> int:
    """Sequence number arithmetic is modulo 2**32."""
    return n & 0xFFFFFFFF


def _icmp_error_reason(icmp_type: int, code: int) -> str:
    if icmp_type == pk.ICMP_TIME_EXCEEDED:
        return "TTL exceeded"
    return f"unreachable ({UNREACHABLE_CODES.get(code, f'code {code}')})"


def closed_port_reset(local: bytes, remote: bytes, segment: bytes) -> bytes | None:
    """The IPv4 packet a closed port answers `segment` with: RST (RFC 793, "Reset Generation").

    None for a RST, which is never answered.  ValueError for a truncated segment.
    """
    sport, dport, seq, ack, flags, _window, payload = pk.tcp_fields(segment)
    if flags & pk.TCP_RST:
        return None
    if flags & pk.TCP_ACK:
        reset = pk.tcp(local, remote, dport, sport, ack, 0, pk.TCP_RST)
    else:
        length = len(payload) + bool(flags & pk.TCP_SYN) + bool(flags & pk.TCP_FIN)
        reset = pk.tcp(local, remote, dport, sport, 0, _mod32(seq + length), pk.TCP_RST | pk.TCP_ACK)
    return pk.ipv4(local, remote, pk.IP_PROTO_TCP, reset)


class Probe:
    """What every probe reports once `done`: `ok`, a `reason` for people, and the round trip."""

    def __init__(self, source: bytes, address: bytes):
        self.source = source            # the switch's address the probe leaves from
        self.address = address          # the backend's
        self.started = 0.0
        self.done = False
        self.ok = False
        self.reason = ""
        self.rtt_ms: float | None = None

    def _finish(self, ok: bool, reason: str, now: float | None = None) -> None:
        self.done, self.ok, self.reason = True, ok, reason
        if now is not None:
            self.rtt_ms = (now - self.started) * 1000.0

    def _parts(self, ip_packet: bytes) -> tuple[int, bytes, bytes] | None:
        """(protocol, source, payload) of a whole IPv4 packet to our address, while the probe runs."""
        if self.done:
            return None
        try:
            proto, src, dst, body = pk.ipv4_parts(ip_packet)
        except ValueError:
            return None
        return (proto, src, body) if dst == self.source else None

    def _quoted(self, body: bytes, proto: int) -> bytes | None:
        """The first 8 bytes of our own `proto` packet that an ICMP error in `body` quotes, else None."""
        if len(body) < 8 or body[0] not in (pk.ICMP_UNREACHABLE, pk.ICMP_TIME_EXCEEDED):
            return None
        try:
            quoted_proto, src, dst, head = pk.icmp_error_quote(body)
        except ValueError:
            return None
        return head if (quoted_proto, src, dst) == (proto, self.source, self.address) else None


class TcpProbe(Probe):
    """A TCP connect check, or with `http` = (path, Host header, expected status) one HTTP/1.0 GET."""

    def __init__(self, source: bytes, source_port: int, address: bytes, port: int,
                 http: tuple[str, str, int] | None = None):
        super().__init__(source, address)
        self.source_port = source_port
        self.port = port
        self.http = http
        # Unpredictable, so that a stale or forged segment for an earlier probe on this port never fits.
        self.isn = secrets.randbits(32)
        self.request = b"" if http is None else (
            f"GET {quote(http[0], safe=PATH_SAFE)} HTTP/1.0\r\nHost: {http[1]}\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Connection: close\r\n\r\n").encode("ascii")
        self.server_isn: int | None = None      # set by the SYN/ACK: connected
        self.rcv_nxt = 0                        # the next byte of the answer we expect
        self.answer = b""                       # http: the answer's start, in order, up to STATUS_LINE_MAX

    def start(self, now: float) -> list[bytes]:
        self.started = now
        return [self._segment(self.isn, 0, pk.TCP_SYN, options=SYN_OPTIONS)]

    def receive(self, ip_packet: bytes, now: float) -> list[bytes]:
        parts = self._parts(ip_packet)
        if parts is None:
            return []
        proto, src, body = parts
        if proto == pk.IP_PROTO_ICMP:
            head = self._quoted(body, pk.IP_PROTO_TCP)
            if head is not None and self._quotes_our_segment(head):
                self._finish(False, _icmp_error_reason(body[0], body[1]))
            return []
        if proto != pk.IP_PROTO_TCP or src != self.address:
            return []
        try:
            sport, dport, seq, ack, flags, _window, payload = pk.tcp_fields(body)
        except ValueError:
            return []
        if (sport, dport) != (self.port, self.source_port):
            return []
        if self.server_isn is None:
            return self._syn_sent(seq, ack, flags, now)
        return self._connected(seq, flags, payload, now)

    def expire(self) -> list[bytes]:
        """The deadline passed: fail, and reset the connection if there is one."""
        if self.done:
            return []
        if self.server_isn is None:
            self._finish(False, "timeout")
            return []
        self._finish(False, "timeout waiting for the HTTP status line")
        return [self._reset()]

    def _syn_sent(self, seq: int, ack: int, flags: int, now: float) -> list[bytes]:
        if not flags & pk.TCP_ACK or ack != _mod32(self.isn + 1):
            return []                           # not an answer to our SYN
        if flags & pk.TCP_RST:
            self._finish(False, "refused (RST)", now)
            return []
        if not flags & pk.TCP_SYN:
            return []
        self.server_isn, self.rcv_nxt = seq, _mod32(seq + 1)
        if self.http is None:
            self._finish(True, "connected", now)
            return [self._reset()]
        return [self._request()]

    def _connected(self, seq: int, flags: int, payload: bytes, now: float) -> list[bytes]:
        if flags & pk.TCP_RST:
            if _mod32(seq - self.rcv_nxt) < WINDOW:     # in our window, so it is about this connection
                self._finish(False, "reset by the backend before the status line", now)
            return []
        if flags & pk.TCP_SYN:
            # The SYN/ACK again: our ACK with the request was lost, send it again.
            return [self._request()] if seq == self.server_isn and not self.answer else []
        if seq != self.rcv_nxt:
            return []       # out of order or repeated: not acknowledged, so the backend sends it again
        self.rcv_nxt = _mod32(seq + len(payload) + bool(flags & pk.TCP_FIN))
        self.answer = (self.answer + payload)[:STATUS_LINE_MAX]
        line_end = self.answer.find(b"\n")
        if line_end >= 0:
            self._judge_status_line(self.answer[:line_end].rstrip(b"\r"), now)
        elif flags & pk.TCP_FIN:
            self._finish(False, "closed by the backend before the status line", now)
        elif len(self.answer) == STATUS_LINE_MAX:
            self._finish(False, f"no HTTP status line in the first {STATUS_LINE_MAX} bytes", now)
        if self.done:
            return [self._reset()]
        if payload:
            return [self._segment(self._after_request(), self.rcv_nxt, pk.TCP_ACK)]
        return []

    def _judge_status_line(self, line: bytes, now: float) -> None:
        _path, _host, expected = self.http
        match = STATUS_LINE.fullmatch(line)
        if match is None:
            self._finish(False, f"malformed HTTP status line {line[:40]!r}", now)
            return
        status = int(match[1])
        if status == expected:
            self._finish(True, f"HTTP {status}", now)
        else:
            self._finish(False, f"HTTP {status}, expected {expected}", now)

    def _quotes_our_segment(self, head: bytes) -> bool:
        """Ports and a sequence number we sent (RFC 5927: an error must fit a segment in flight)."""
        sport, dport, seq = struct.unpack_from("!HHI", head)
        return (sport, dport) == (self.source_port, self.port) and _mod32(seq - self.isn) <= len(self.request)

    def _after_request(self) -> int:
        return _mod32(self.isn + 1 + len(self.request))

    def _request(self) -> bytes:
        return self._segment(_mod32(self.isn + 1), self.rcv_nxt, pk.TCP_ACK | pk.TCP_PSH, self.request)

    def _reset(self) -> bytes:
        # The sequence number the backend expects next, so that it accepts the RST (RFC 5961).
        return self._segment(self._after_request(), 0, pk.TCP_RST)

    def _segment(self, seq: int, ack: int, flags: int, payload: bytes = b"", options: bytes = b"") -> bytes:
        segment = pk.tcp(self.source, self.address, self.source_port, self.port, seq, ack, flags, payload,
                         WINDOW, options)
        return pk.ipv4(self.source, self.address, pk.IP_PROTO_TCP, segment)


class IcmpProbe(Probe):
    """One ICMP echo request; (ident, seq) is the checker's to keep unique among probes in flight."""

    def __init__(self, source: bytes, address: bytes, ident: int, seq: int):
        super().__init__(source, address)
        self.ident = ident
        self.seq = seq
        self.echo = struct.pack("!HH", ident, seq) + ECHO_DATA     # what the reply must carry back

    def start(self, now: float) -> list[bytes]:
        self.started = now
        request = pk.icmp(pk.ICMP_ECHO_REQUEST, 0, self.echo)
        return [pk.ipv4(self.source, self.address, pk.IP_PROTO_ICMP, request)]

    def receive(self, ip_packet: bytes, now: float) -> list[bytes]:
        parts = self._parts(ip_packet)
        if parts is None or parts[0] != pk.IP_PROTO_ICMP:
            return []
        _proto, src, body = parts
        if len(body) >= 8 and body[0] == pk.ICMP_ECHO_REPLY:
            if src == self.address and body[4:] == self.echo:
                self._finish(True, "echo reply", now)
            return []
        head = self._quoted(body, pk.IP_PROTO_ICMP)
        if head is not None and head[0] == pk.ICMP_ECHO_REQUEST and head[4:8] == self.echo[:4]:
            self._finish(False, _icmp_error_reason(body[0], body[1]))
        return []

    def expire(self) -> list[bytes]:
        if not self.done:
            self._finish(False, "timeout")
        return []
