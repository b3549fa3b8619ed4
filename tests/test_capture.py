"""Captures and mirrors without namespaces: the record stream, the client's pcap, the switch's capture sessions
over a socket pair and a datapath with memory ports, workers' buffers, and the config's [[mirror]] keys."""
import concurrent.futures
import io
import json
import socket

import dpkt
import pytest
from hypothesis import given, settings, strategies as st

from pyswitch import config, consts, fastpath, refpath, reload
from pyswitch.actions import output
from pyswitch.capture_client import Stream, describe
from pyswitch.capture_sessions import MAX_BUFFERED, CaptureSessions
from pyswitch.capture_wire import END, FRAME, RecordReader, end_record, frame_record
from pyswitch.control.clients import Handover
from pyswitch.events import EventLog

FRAME_60 = bytes.fromhex("020000000022" "020000000021" "88b5") + b"x" * 46


# -- the record stream ---------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6), st.data())
def test_records_survive_any_split(bodies, data):
    stream = b"".join(frame_record(consts.TAP_IN, len(b) + 5, 1000 + i, b) for i, b in enumerate(bodies))
    stream += end_record("done", {"captured": len(bodies)})
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader, got = RecordReader(), []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)]):
        got += reader.feed(stream[start:stop])
    assert [r[4] for r in got[:-1]] == bodies
    assert [r[0] for r in got] == [FRAME] * len(bodies) + [END]
    assert json.loads(got[-1][4]) == {"reason": "done", "captured": len(bodies)}
    assert reader.pending == 0


def test_a_record_of_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind 7"):
        RecordReader().feed(b"\x07" + bytes(17))


def test_pcap_keeps_the_length_on_the_wire_of_a_cut_frame():
    out = io.BytesIO()
    stream = Stream(out, snaplen=20, count=0, pcap=True)
    a, b = socket.socketpair()
    try:
        b.sendall(frame_record(consts.TAP_OUT, 60, 1_700_000_000_123_456_789, FRAME_60[:20]) +
                  end_record("the switch stops", {"captured": 1}))
        b.close()
        stream.run(a, b"")
    finally:
        a.close()
    assert stream.written == 1 and stream.end["reason"] == "the switch stops"
    reader = dpkt.pcap.Reader(io.BytesIO(out.getvalue()))
    assert reader.snaplen == 20
    (ts, data), = list(reader)
    assert data == FRAME_60[:20] and abs(float(ts) - 1_700_000_000.123456789) < 1e-6
    out.seek(24)                                        # the record header: ts_sec, ts_nsec, caplen, len
    assert int.from_bytes(out.read(16)[8:12], "little") == 20
    out.seek(24 + 12)
    assert int.from_bytes(out.read(4), "little") == 60


def test_text_lines():
    icmp = dpkt.ethernet.Ethernet(src=b"\x02\x00\x00\x00\x00\x21", dst=b"\x02\x00\x00\x00\x00\x22",
                                  data=dpkt.ip.IP(src=bytes([198, 51, 100, 21]), dst=bytes([198, 51, 100, 22]),
                                                  p=1, data=dpkt.icmp.ICMP(type=8, data=b"")))
    line = describe(bytes(icmp), 98, 0, consts.TAP_IN)
    assert " in " in line and "198.51.100.21 > 198.51.100.22: ICMP echo request" in line and line.endswith("98")
    assert "not an Ethernet frame" in describe(b"\x01", 1, 0, consts.TAP_OUT)


# -- sessions ------------------------------------------------------------------------------------------------

class Rig:
    """A twin datapath with two memory ports that forward to each other, and capture sessions over it."""

    def __init__(self):
        self.dp = refpath.Datapath()
        for p in (0, 1):
            self.dp.add_port(p, "memory")
        self.dp.flow_put(bytes(64), bytes(64), 1, [output(1)])
        self.attached = {0: True, 1: True}
        self.events = EventLog()
        self.sessions = CaptureSessions(self.dp, {"p1": 0, "p2": 1}, lambda no: self.attached[no], self.events)

    def start(self, **command):
        handover = self.sessions.start({"cmd": "capture", "port": "p1", **command})
        assert isinstance(handover, Handover)
        server, client = socket.socketpair()
        handover.take(server)
        client.settimeout(2)
        return client

    def send(self, n):
        for _ in range(n):
            self.dp.inject(0, FRAME_60)
        self.dp.run()
        self.sessions.pump()


def read_all(client):
    reader, records = RecordReader(), []
    while not records or records[-1][0] != END:
        chunk = client.recv(1 << 20)
        if not chunk:
            break
        records += reader.feed(chunk)
    return records


def test_a_session_ends_at_its_count_and_says_so():
    rig = Rig()
    client = rig.start(count=3, direction="in")
    rig.send(5)
    records = read_all(client)
    assert [r[0] for r in records] == [FRAME] * 3 + [END]
    end = json.loads(records[-1][4])
    assert end["reason"] == "3 frames captured" and end["captured"] == 5 and end["sent"] == 3
    assert not rig.sessions.active and rig.dp.capture_del(0) is False, "the slot is free"
    start, stop = rig.events.recent()
    assert (start["kind"], start["fields"]["port"], start["fields"]["direction"]) == ("capture_start", "p1", "in")
    assert stop["kind"] == "capture_end" and stop["fields"]["reason"] == "3 frames captured"
    assert stop["fields"]["sent"] == 3


def test_a_client_that_goes_away_frees_its_slot():
    rig = Rig()
    client = rig.start()
    rig.send(2)
    client.close()
    rig.send(1)
    assert not rig.sessions.active


def test_a_port_that_goes_away_ends_its_capture():
    rig = Rig()
    client = rig.start()
    rig.attached[0] = False
    rig.send(0)
    assert json.loads(read_all(client)[-1][4])["reason"] == "port p1's interface went away"


def test_a_slow_reader_loses_frames_not_the_switch():
    rig = Rig()
    client = rig.start(direction="in")
    big = FRAME_60 + bytes(9000)
    for _ in range(2 * MAX_BUFFERED // len(big) // 64 + 2):     # the client reads nothing meanwhile
        for _ in range(64):
            rig.dp.inject(0, big)
        rig.dp.run()
        rig.sessions.pump()
    assert rig.sessions.sessions[0].dropped_slow > 0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        records = pool.submit(read_all, client)         # the client reads at last, while the switch stops
        rig.sessions.close()
        records = records.result(timeout=10)
    assert records[-1][0] == END
    end = json.loads(records[-1][4])
    assert end["reason"] == "the switch stops" and end["dropped_slow_reader"] > 0


@pytest.mark.parametrize("command, words", [
    ({"port": "p9"}, "no port 'p9'"),
    ({"direction": "sideways"}, "direction"),
    ({"snaplen": 0}, "snaplen"),
    ({"count": -1}, "count"),
    ({"filter": [[6, 0, 0]]}, "filter"),
    ({"filter": [[0x06, 0, 0, 1], [0xFFFF, 0, 0, 0]]}, "the filter is refused: instruction 1"),
])
def test_bad_capture_commands_are_refused_by_name(command, words):
    rig = Rig()
    with pytest.raises(ValueError, match=words):
        rig.sessions.start({"cmd": "capture", "port": "p1", **command})
    assert rig.sessions.counters["refused"] == 1


def test_at_most_eight_captures():
    rig = Rig()
    clients = [rig.start() for _ in range(consts.MAX_CAPTURES)]
    with pytest.raises(ValueError, match="8 captures are running"):
        rig.sessions.start({"cmd": "capture", "port": "p1"})
    for c in clients:
        c.close()


def test_workers_buffers_are_all_read():
    dp = fastpath.Datapath(workers=2)
    try:
        for p in (0, 1):
            dp.add_port(p, "memory")
        dp.capture_add(0, 0, consts.TAP_IN)
        for worker in (0, 1):
            for i in range(10):
                frame = FRAME_60[:-1] + bytes([i])
                dp.inject(0, frame, worker=worker)      # each worker's copies land in its own buffer
        dp.run()
        assert len(dp.capture_take()) == 20
        assert dp.capture_counts(0) == (20, 0)
    finally:
        dp.close()


# -- [[mirror]] in the config --------------------------------------------------------------------------------

BASE = {"switch": {"name": "psw-t"},
        "port": [{"name": n, "type": "afpacket", "device": "psw-t-" + n} for n in ("p1", "p2", "pmon")]}


def test_a_mirror_target_takes_no_part_in_the_switching():
    cfg = config.from_dict(BASE | {"mirror": [{"from": ["p1", "p2"], "to": "pmon", "direction": "in"}]})
    assert cfg.mirrors == [config.MirrorConfig(("p1", "p2"), "pmon", "in")]
    assert [p.mirror_target for p in cfg.ports] == [False, False, True]
    assert not cfg.ports[2].carries(1) and cfg.ports[0].carries(1)


@pytest.mark.parametrize("mirror, words", [
    ({"from": ["p1"], "to": "p1"}, "mirror[0].to: port 'p1' is also in from"),
    ({"from": "p1", "to": "pmon"}, "mirror[0].from: must be a non-empty list"),
    ({"from": ["p1", "p1"], "to": "pmon"}, r"mirror\[0\].from\[1\]: lists port 'p1' twice"),
    ({"from": ["px"], "to": "pmon"}, r"mirror\[0\].from\[0\]: no port named 'px'"),
    ({"from": ["p1"], "to": "pmom"}, "mirror[0].to: no port named 'pmom'; did you mean 'pmon'"),
    ({"from": ["p1"], "to": "pmon", "direction": "up"}, "mirror[0].direction: must be one of in, out, both"),
    ({"from": ["p1"]}, "mirror[0]"),
])
def test_bad_mirror_keys_are_named(mirror, words):
    with pytest.raises(config.ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")
                       if "\\" not in words else words):
        config.from_dict(BASE | {"mirror": [mirror]})


def test_a_target_that_is_a_source_is_refused():
    with pytest.raises(config.ConfigError, match=r"mirror\[0\].to: port 'pmon' is a source of mirror\[1\]"):
        config.from_dict(BASE | {"mirror": [{"from": ["p1"], "to": "pmon"}, {"from": ["pmon"], "to": "p2"}]})


def test_a_reload_that_changes_mirrors_is_refused():
    running = config.from_dict(BASE | {"mirror": [{"from": ["p1"], "to": "pmon"}]})
    new = config.from_dict(BASE | {"mirror": [{"from": ["p1"], "to": "pmon", "direction": "in"}]})
    with pytest.raises(reload.ReloadRefused, match=r"mirror\[0\].direction"):
        reload.plan(running, new)
    assert reload.plan(running, config.from_dict(BASE | {"mirror": [{"from": ["p1"], "to": "pmon"}]}))
