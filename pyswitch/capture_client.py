"""`pyswitch capture PORT`: the client's side of a live capture (the switch's is capture_sessions.py).

The filter expression is compiled here, with libpcap (pyswitch/bpf.py), so the switch gets a program it only
checks and runs.  Frames are written as pcap with dpkt's writer, to a file or to stdout (`-w -`, for
`| tcpdump -r -`), flushed frame by frame so that a reader sees each as it comes; without -w each frame is one
line of text.  The capture ends at --count frames, on Ctrl-C, or when the switch ends it, and says what it saw.
"""
from __future__ import annotations

import datetime
import json
import socket
import sys

import dpkt

from .capture_wire import END, RecordReader
from .consts import TAP_IN

DLT_EN10MB = 1


class CaptureWriter(dpkt.pcap.Writer):
    """dpkt's pcap writer with nanosecond times, and the frame's length on the wire kept when the copy is
    shorter (a snap length): dpkt's writepkt takes both to be the copy's."""

    def __init__(self, fileobj, snaplen: int):
        super().__init__(fileobj, snaplen=snaplen, linktype=DLT_EN10MB, nano=True)
        self.file = fileobj

    def write_frame(self, data: bytes, wire_len: int, ts_ns: int) -> None:
        sec, nsec = divmod(ts_ns, 1_000_000_000)
        self.file.write(self._pack_hdr(sec, nsec, len(data), wire_len) + data)
        self.file.flush()


def describe(data: bytes, wire_len: int, ts_ns: int, direction: int) -> str:
    """One frame as a line: time, direction, MACs, and what it carries."""
    when = datetime.datetime.fromtimestamp(ts_ns / 1e9).strftime("%H:%M:%S.%f")
    arrow = "in " if direction == TAP_IN else "out"
    try:
        eth = dpkt.ethernet.Ethernet(data)
        what = _payload(eth)
        macs = f"{_mac(eth.src)} > {_mac(eth.dst)}"
    except (dpkt.UnpackError, ValueError, IndexError):
        macs, what = "", "not an Ethernet frame"
    return f"{when} {arrow} {macs}{' ' if macs else ''}{what}, length {wire_len}"


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _payload(eth) -> str:
    vlan = ""
    if getattr(eth, "vlan_tags", None):
        vlan = "vlan " + ",".join(str(t.id) for t in eth.vlan_tags) + " "
    ip = eth.data
    if isinstance(ip, dpkt.arp.ARP):
        op = {1: "who-has", 2: "is-at"}.get(ip.op, f"op {ip.op}")
        return f"{vlan}ARP {op} {socket.inet_ntoa(ip.tpa)} tell {socket.inet_ntoa(ip.spa)}"
    if isinstance(ip, dpkt.ip.IP):
        src, dst = socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)
    elif isinstance(ip, dpkt.ip6.IP6):
        src, dst = socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
    else:
        return f"{vlan}ethertype 0x{eth.type:04x}"
    l4 = ip.data
    if isinstance(l4, dpkt.tcp.TCP):
        flags = "".join(c for bit, c in ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "."))
                        if l4.flags & bit)
        return f"{vlan}IP {src}.{l4.sport} > {dst}.{l4.dport}: TCP [{flags}] seq {l4.seq}"
    if isinstance(l4, dpkt.udp.UDP):
        return f"{vlan}IP {src}.{l4.sport} > {dst}.{l4.dport}: UDP"
    if isinstance(l4, (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)):
        kinds = {0: "echo reply", 8: "echo request", 3: "unreachable", 11: "time exceeded", 128: "echo request",
                 129: "echo reply"}
        return f"{vlan}IP {src} > {dst}: ICMP {kinds.get(l4.type, f'type {l4.type}')}"
    return f"{vlan}IP {src} > {dst}: protocol {getattr(ip, 'p', getattr(ip, 'nxt', '?'))}"


class Stream:
    """Reads the switch's records from a socket and writes them out; `written` and `end` stay readable when a
    Ctrl-C stops it half way."""

    def __init__(self, out, snaplen: int, count: int, pcap: bool):
        self.out = out
        self.count = count                  # frames to write, 0: no limit
        self.writer = CaptureWriter(out, snaplen) if pcap else None
        self.written = 0
        self.end: dict | None = None        # the switch's last record: its counters and why it ended

    def run(self, sock: socket.socket, first: bytes) -> None:
        """Until `count` frames, the end record, or the end of the stream (`first`: bytes already read)."""
        reader, chunk = RecordReader(), first
        while True:
            for kind, direction, wire_len, ts_ns, body in reader.feed(chunk):
                if kind == END:
                    self.end = json.loads(body)
                    return
                if not self.count or self.written < self.count:
                    self._write(body, wire_len, ts_ns, direction)
            if self.count and self.written >= self.count:
                return
            chunk = sock.recv(1 << 20)
            if not chunk:
                return

    def _write(self, body: bytes, wire_len: int, ts_ns: int, direction: int) -> None:
        if self.writer is not None:
            self.writer.write_frame(body, wire_len, ts_ns)
        else:
            print(describe(body, wire_len, ts_ns, direction), file=self.out, flush=True)
        self.written += 1

    def summary(self) -> str:
        line = f"{self.written} frame{'s' if self.written != 1 else ''} captured"
        if self.end is not None:
            by_switch, slow = self.end.get("dropped_by_switch", 0), self.end.get("dropped_slow_reader", 0)
            line += (f", {by_switch + slow} dropped (switch buffer full: {by_switch}, this reader too slow: "
                     f"{slow}); the switch ended it: {self.end['reason']}")
        return line


def open_output(path: str | None):
    """The file frames go to: stdout's bytes for "-", a new file, or stdout's text without -w."""
    if path is None:
        return sys.stdout, False
    if path == "-":
        return sys.stdout.buffer, True
    return open(path, "wb"), True
