"""The event log without namespaces: the ring's bound, the JSON lines, the throttle, the edge-triggered table
events, and the hooks in the port watch, the L2 stage, the VIP stage and reload, on a switch that is built but
never opened (the Python datapath, no devices)."""
import io
import ipaddress
import json
import logging
import re
from types import SimpleNamespace

import pytest

from pyswitch.cli import event_rows, format_table
from pyswitch.config import from_dict, load
from pyswitch.events import KINDS, EventLog, Throttle
from pyswitch.log_json import JsonLinesFormatter
from pyswitch.ports.watch import PortWatch
from pyswitch.reload import ReloadRefused
from pyswitch.reload import reload as reload_config
from pyswitch.switch import Switch
from pyswitch.table_watch import Fill, TableWatch
from test_l2_stage import BCAST, H2, Rig, access, ping

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def kinds(log):
    return [e["kind"] for e in log.recent()]


# -- the ring -----------------------------------------------------------------------------------------------

def test_the_ring_keeps_the_latest_and_counts_what_it_dropped():
    log = EventLog(size=3)
    for i in range(5):
        log.emit("port_down", port=f"p{i}", device=f"psw-p{i}", reason="link")
    recent = log.recent()
    assert [e["seq"] for e in recent] == [3, 4, 5]
    assert [e["fields"]["port"] for e in recent] == ["p2", "p3", "p4"]
    assert log.stats() == {"events_total": 5, "events_dropped": 2, "events_kept": 3, "events_max": 3}
    assert all(ISO_UTC.match(e["time"]) for e in recent), recent


def test_an_event_is_json_and_recent_gives_copies():
    log = EventLog()
    log.emit("config_reload", file="sw.toml", changes=("route a", "route b"), took_ms=1.5,
             address=ipaddress.IPv4Address("192.0.2.11"))
    event = log.recent()[0]
    assert event["fields"] == {"file": "sw.toml", "changes": ["route a", "route b"], "took_ms": 1.5,
                               "address": "192.0.2.11"}
    assert json.loads(json.dumps(event)) == event
    event["fields"]["file"] = "changed"
    assert log.recent()[0]["fields"]["file"] == "sw.toml"


def test_an_unknown_kind_and_a_bad_size_are_refused_by_name():
    with pytest.raises(ValueError, match="event kind 'port_dwon' is unknown"):
        EventLog().emit("port_dwon", port="p1")
    with pytest.raises(ValueError, match="EventLog size: must be at least 1, got 0"):
        EventLog(size=0)


# -- the log lines ------------------------------------------------------------------------------------------

@pytest.fixture
def json_lines():
    """What the "pyswitch" loggers write through the --log-json formatter, as a function returning the lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLinesFormatter())
    logger = logging.getLogger("pyswitch")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: stream.getvalue().splitlines()
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_each_event_is_one_json_line_with_its_fields(json_lines):
    log = EventLog()
    log.emit("backend_down", vip="web", backend="192.0.2.11:8080", previous="up", reason="health check: timeout")
    log.emit("mac_move", mac="02:00:00:00:00:02", vlan=10, from_port="p1", to_port="p2")
    lines = [json.loads(line) for line in json_lines()]
    assert [line["event"] for line in lines] == ["backend_down", "mac_move"]
    for line, event in zip(lines, log.recent()):
        assert line["seq"] == event["seq"] and line["time"] == event["time"] and line["fields"] == event["fields"]
        assert line["level"] == "INFO" and line["logger"] == "pyswitch.events"
    assert lines[0]["message"] == ("event backend_down vip=web backend=192.0.2.11:8080 previous=up "
                                   "reason=health check: timeout")


def test_other_records_and_tracebacks_are_one_json_line_each(json_lines):
    logger = logging.getLogger("pyswitch.lb")
    logger.warning("vip %s: reset %d connections", "web", 3)
    try:
        raise OSError("no room")
    except OSError:
        logger.exception("reload failed part way")
    first, second = (json.loads(line) for line in json_lines())
    assert first["message"] == "vip web: reset 3 connections" and first["level"] == "WARNING"
    assert ISO_UTC.match(first["time"]) and "event" not in first
    assert second["message"] == "reload failed part way" and "OSError: no room" in second["exc"]


def test_show_events_as_a_table():
    log = EventLog()
    log.emit("port_up", port="p1", device="psw-p1", reason="link")
    header, row = format_table(event_rows(log.recent())).splitlines()
    assert header.split() == ["seq", "time", "kind", "fields"]
    assert row.split()[0] == "1" and row.split()[2] == "port_up"
    assert row.endswith("port=p1 device=psw-p1 reason=link")


# -- the throttle and the tables ----------------------------------------------------------------------------

def test_the_throttle_counts_what_it_holds_back_and_says_so_in_the_next_event():
    log = EventLog()
    throttle = Throttle(rate=1, burst=2)
    sent = [throttle.emit(log, 100.0, "mac_move", mac="m", vlan=1, from_port="a", to_port="b") for _ in range(5)]
    assert [e is not None for e in sent] == [True, True, False, False, False]
    assert throttle.suppressed_total == 3
    assert throttle.emit(log, 101.0, "mac_move", mac="m", vlan=1, from_port="b", to_port="a")["fields"][
        "suppressed"] == 3
    assert "suppressed" not in log.recent()[0]["fields"]


def test_a_table_is_told_full_once_and_free_once_below_the_margin():
    log = EventLog()
    watch = TableWatch(log)
    steps = [
        Fill(50, 100, 0),       # room
        Fill(100, 100, 0),      # full: one event
        Fill(100, 100, 40),     # refusing while full: no second event
        Fill(95, 100, 40),      # below the bound, above 90%: still full
        Fill(80, 100, 41),      # below 90% but it refused in this tick: still full
        Fill(80, 100, 41),      # free
        Fill(80, 100, 45),      # refused with room (evicted to make room): full again
    ]
    for fill in steps:
        watch.check({"flows": fill})
    events = log.recent()
    assert [e["kind"] for e in events] == ["table_full", "table_free", "table_full"]
    assert events[0]["fields"] == {"table": "flows", "entries": 100, "max": 100, "refused": 0}
    assert events[1]["fields"]["entries"] == 80 and events[2]["fields"]["refused"] == 45


def test_a_table_that_refused_before_the_first_tick_is_not_told():
    """The first reading is the base: refusals counted before the switch watched are not a transition."""
    log = EventLog()
    watch = TableWatch(log)
    watch.check({"conns": Fill(10, 100, 7)})
    watch.check({"conns": Fill(10, 100, 7)})
    assert kinds(log) == []


# -- the port watch -----------------------------------------------------------------------------------------

class FakePort:
    def __init__(self, name):
        self.name, self.device = name, f"psw-{name}"
        self.up, self.there, self.ifindex = True, True, 7

    def running(self):
        return self.up

    def present(self):
        return self.there

    def reopenable(self):
        return self.there

    def open(self):
        pass

    def attach(self, dp):
        pass

    def close(self):
        pass


def fake_switch(ports):
    nothing = SimpleNamespace(forget_port=lambda port_no: None)
    dp = SimpleNamespace(port_stats=lambda no: dict.fromkeys(
        ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "rx_errors", "tx_dropped"), 0),
        del_port=lambda no: None)
    config = SimpleNamespace(ports=[], mirrors=[])      # no mirrors to write again when a port comes back
    return SimpleNamespace(ports=dict(enumerate(ports)), dp=dp, l2=nothing, l3=nothing, events=EventLog(),
                           config=config)


def test_the_port_watch_tells_link_changes_once_and_a_device_gone_and_back():
    port, other = FakePort("p1"), FakePort("p2")
    switch = fake_switch([port, other])
    watch = PortWatch(switch)
    watch.check()
    assert kinds(switch.events) == [], "a port that is up as attached is no change"
    port.up = False
    watch.check()
    watch.check()
    port.up = True
    watch.check()
    port.there = False          # deleted between two ticks and not back yet
    watch.check()
    port.there = True
    watch.check()
    events = switch.events.recent()
    assert [(e["kind"], e["fields"]["reason"]) for e in events] == [
        ("port_down", "link"), ("port_up", "link"), ("port_down", "gone"), ("port_up", "back")]
    assert all(e["fields"]["port"] == "p1" and e["fields"]["device"] == "psw-p1" for e in events)


# -- the stages and reload, on a switch that is built but not opened ---------------------------------------

def switch_dict(**switch_keys):
    return {
        "switch": {"name": "ev1", "datapath": "python", **switch_keys},
        "port": [{"name": "c", "type": "afpacket", "device": "psw-evc", "vlan": 10},
                 {"name": "b", "type": "afpacket", "device": "psw-evb", "vlan": 20}],
        "vlan": [{"id": 10, "address": "198.51.100.1/24"}, {"id": 20, "address": "192.0.2.1/24"}],
        "vip": [{"name": "web", "address": "203.0.113.10", "port": 80,
                 "backend": [{"address": "192.0.2.11", "port": 8080}, {"address": "192.0.2.12", "port": 8080}],
                 "health": {"type": "tcp"}}],
    }


@pytest.fixture
def switch():
    made = Switch(from_dict(switch_dict()))
    yield made
    made.close()


def test_backend_changes_are_events_with_their_reason(switch):
    switch.vips._health_changed((1, 0), False, "timeout")
    switch.vips._health_changed((1, 0), False, "timeout")       # no change: no event
    switch.vips.backend_command("web", "192.0.2.12:8080", "drain")
    switch.vips._health_changed((1, 0), True, "connected")
    events = switch.handle_command({"cmd": "show", "what": "events"})
    assert [(e["kind"], e["fields"]) for e in events] == [
        ("backend_down", {"vip": "web", "backend": "192.0.2.11:8080", "previous": "up",
                          "reason": "health check: timeout"}),
        ("backend_drain", {"vip": "web", "backend": "192.0.2.12:8080", "previous": "up",
                           "reason": "operator: drain"}),
        ("backend_up", {"vip": "web", "backend": "192.0.2.11:8080", "previous": "down",
                        "reason": "health check: connected"})]
    stats = switch.handle_command({"cmd": "show", "what": "stats"})
    assert stats["events_total"] == 3 and stats["events_dropped"] == 0


def test_the_switch_watches_its_tables(switch):
    switch.table_watch.check()
    assert kinds(switch.events) == []
    assert {"flows", "macs", "arp", "conns"} <= set(switch.table_watch._refused)


def test_a_mac_move_is_an_event():
    rig = Rig("python", [access("p0", 10), access("p1", 10), access("p2", 10)])
    rig.send(1, ping(H2, BCAST))
    rig.send(2, ping(H2, BCAST))
    [event] = rig.stage.event_log.recent()
    assert event["kind"] == "mac_move"
    assert event["fields"] == {"mac": "02:00:00:00:00:02", "vlan": 10, "from_port": "p1", "to_port": "p2"}


def toml(data):
    """The few TOML shapes switch_dict() uses, written out."""
    def value(v):
        return json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

    def table(prefix, d):
        lines = [f"{k} = {value(v)}" for k, v in d.items() if not isinstance(v, (dict, list))]
        for k, v in d.items():
            if isinstance(v, dict):
                lines += [f"[{prefix}{k}]", *table(f"{prefix}{k}.", v)]
            elif isinstance(v, list):
                for item in v:
                    lines += [f"[[{prefix}{k}]]", *table(f"{prefix}{k}.", item)]
        return lines
    return "\n".join(table("", data)) + "\n"


def test_reloads_are_events_applied_and_refused(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_text(toml(switch_dict()))
    switch = Switch(load(path))
    try:
        path.write_text(toml(switch_dict(mac_aging_s=30)))
        reload_config(switch)
        path.write_text(toml(switch_dict(max_flows=1000)))
        with pytest.raises(ReloadRefused):
            reload_config(switch)
        applied, refused = switch.events.recent()
    finally:
        switch.close()
    assert applied["kind"] == "config_reload"
    assert applied["fields"]["file"] == str(path) and applied["fields"]["changes"] == ["switch.mac_aging_s"]
    assert refused["kind"] == "config_reload_refused"
    assert refused["fields"]["error"].startswith("switch.max_flows: cannot change while the switch runs")


def test_every_kind_says_what_it_means():
    assert all(isinstance(text, str) and text for text in KINDS.values())


def test_ha_transitions_are_events_once_each():
    data = switch_dict()
    data["vlan"].append({"id": 30, "address": "198.18.0.1/24"})
    data["ha"] = {"group": 51, "priority": 100, "vlans": [10, 20], "sync_vlan": 30, "advert_interval_s": 0.1}
    switch = Switch(from_dict(data))
    try:
        switch.ha.install(100.0)
        switch.ha.timers(100.05)                    # still waiting for a master's advert
        switch.ha.timers(101.0)                     # none came within Master_Down_Interval: master
        switch.ha.timers(101.1)
        switch.ha.release(101.2)
        transitions = [(e["fields"]["previous"], e["fields"]["state"]) for e in switch.events.recent()
                       if e["kind"] == "ha_transition"]
        master = next(e for e in switch.events.recent() if e["fields"].get("state") == "master")
    finally:
        switch.close()
    assert transitions == [("init", "backup"), ("backup", "master"), ("master", "backup")]
    assert master["fields"]["group"] == 51 and master["fields"]["master"] == "198.18.0.1"
