"""The event log of a running switch (`pyswitch run --log-json`) on netns/lb.toml with real backends: a backend
stopped and taken down by its health check, a port's link set down and up, a reload applied and one refused.
`pyswitch show events` lists them with their fields, and the switch's log holds the same events as JSON lines."""
import json
import subprocess
import sys
import time

import pytest

from test_lb_netns import BACKENDS, TOPOLOGY, Lb, switch_config

pytestmark = pytest.mark.netns


def pyswitch(*argv):
    return subprocess.run([sys.executable, "-m", "pyswitch", *argv], capture_output=True, text=True, timeout=10)


def wait_event(sw, after, kind, seconds=10.0, **fields):
    """The first event of `kind` with these fields whose seq is above `after`, waiting for it."""
    deadline = time.monotonic() + seconds
    while True:
        for event in sw.show("events"):
            if event["seq"] > after and event["kind"] == kind and \
                    all(event["fields"].get(k) == v for k, v in fields.items()):
                return event
        assert time.monotonic() < deadline, f"no {kind} {fields} after seq {after}: {sw.show('events')}"
        time.sleep(0.1)


def last_seq(sw):
    return max((e["seq"] for e in sw.show("events")), default=0)


def test_show_events_and_the_json_log_tell_the_same_changes(topology, tmp_path):
    config = switch_config(tmp_path, health="http", interval_s=0.3, fall=2, rise=1)
    net = topology(TOPOLOGY, switches=[config], run_args=["--log-json"])
    lb = Lb(net, "nat")
    sw = lb.switch
    try:
        for name in BACKENDS:
            lb.start(name)
        # The servers start after the switch: its first probes may have failed.  Wait until all are up.
        deadline = time.monotonic() + 10
        while not all(b["state"] == "up" for b in lb.show_vips().values()):
            assert time.monotonic() < deadline, lb.show_vips()
            time.sleep(0.1)
        start = last_seq(sw)

        lb.stop("b1")
        down = wait_event(sw, start, "backend_down", vip="web", backend=f"{BACKENDS['b1']}:8080")
        assert down["fields"]["previous"] == "up" and down["fields"]["reason"].startswith("health check: "), down

        client_end = next(link.peer for link in net.links if link.host == "c1")
        subprocess.run(["ip", "link", "set", client_end, "down"], check=True)
        port_down = wait_event(sw, down["seq"], "port_down", port="c1", reason="link")
        subprocess.run(["ip", "link", "set", client_end, "up"], check=True)
        port_up = wait_event(sw, port_down["seq"], "port_up", port="c1", reason="link")
        assert port_down["fields"]["device"] == port_up["fields"]["device"] == client_end

        with open(sw.config_path) as f:
            text = f.read()
        b3 = f'address = "{BACKENDS["b3"]}"\nport = 8080\nweight = 1\n'
        assert b3 in text
        with open(sw.config_path, "w") as f:
            f.write(text.replace(b3, b3.replace("weight = 1", "weight = 2")))
        result = pyswitch("reload", "--name", sw.name)
        assert result.returncode == 0, result.stderr
        reloaded = wait_event(sw, port_up["seq"], "config_reload")
        assert reloaded["fields"]["file"] == sw.config_path
        assert reloaded["fields"]["changes"] == [f"vip web: backend {BACKENDS['b3']}:8080 weight 2"], reloaded

        with open(sw.config_path, "a") as f:
            f.write("\n[control]\ngroup = \"root\"\n")      # fixed for the switch's life: refused
        result = pyswitch("reload", "--name", sw.name)
        assert result.returncode == 2, result
        refused = wait_event(sw, reloaded["seq"], "config_reload_refused")
        assert refused["fields"]["error"].startswith("control.group: "), refused

        table = pyswitch("show", "events", "--name", sw.name)
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[0].split() == ["seq", "time", "kind", "fields"]
        for event in (down, port_down, port_up, reloaded, refused):
            line = next(line for line in table.stdout.splitlines() if line.split()[0] == str(event["seq"]))
            assert event["kind"] in line.split(), line
            if event["kind"].startswith("port_"):
                assert f"device={client_end}" in line, line
        events = json.loads(pyswitch("show", "events", "--name", sw.name, "--json").stdout)
        stats = sw.show("stats")
        assert stats["events_total"] == events[-1]["seq"] and stats["events_dropped"] == 0
    finally:
        lb.stop_all()

    lines = [json.loads(line) for line in sw.log().splitlines() if line.strip()]   # every line is JSON
    logged = {line["seq"]: line for line in lines if "event" in line}
    for event in events:
        line = logged.get(event["seq"])
        assert line is not None, (event, sw.log()[-3000:])
        assert (line["event"], line["time"], line["fields"]) == (event["kind"], event["time"], event["fields"])
    assert {"backend_down", "port_down", "port_up", "config_reload", "config_reload_refused"} <= \
        {line["event"] for line in logged.values()}
    assert any(line["logger"] == "pyswitch" and "running with the c datapath" in line["message"] for line in lines)
