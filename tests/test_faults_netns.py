"""Faults while the switch runs: a port's interface deleted and made again.  Real namespaces, real ping, a real
`pyswitch run`, both datapaths."""
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from control_clients import BAD_REQUESTS, exchange, idle_clients, slow_client
from hosts import cpu_seconds, ping
from pyswitch.control import socket_path
from test_lb_netns import BACKENDS, VIP, lb  # noqa: F401  (lb is a fixture)

pytestmark = pytest.mark.netns

DEMO = "netns/demo.toml"
DEMO_SW = "netns/demo-sw.toml"
H2, H3 = "198.51.100.12", "198.51.100.13"
HOLDER = os.path.join(os.path.dirname(__file__), "reload_client.py")   # a long connection carrying data


@pytest.fixture(params=["c", "python"])
def datapath(request):
    return request.param


def port_row(switch, name):
    return next(row for row in switch.show("ports") if row["name"] == name)


def wait_port_state(switch, name, state, seconds=5.0):
    deadline = time.monotonic() + seconds
    while True:
        row = port_row(switch, name)
        if row["state"] == state or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


def busy_share(switch, seconds):
    before = cpu_seconds(switch.pid)
    time.sleep(seconds)
    return (cpu_seconds(switch.pid) - before) / seconds


@pytest.mark.parametrize("datapath, workers, kind", [("c", 1, "afpacket"), ("python", 1, "afpacket"),
                                                    ("c", 2, "afpacket"), ("c", 1, "afxdp")])
def test_a_port_whose_interface_is_deleted_and_made_again_recovers(topology, tmp_path, datapath,
                                                                             workers, kind):
    config = tmp_path / "demo-sw.toml"
    with open(DEMO_SW) as f:
        text = f.read().replace("[switch]\n", f"[switch]\nworkers = {workers}\n", 1)
        config.write_text(text.replace('type = "afpacket"', f'type = "{kind}"'))
    topo = topology(DEMO, switches=[str(config)], datapath=datapath)
    sw = topo.switch("demo")
    assert sw.show("stats")["workers"] == workers
    assert ping(topo, "h1", H2) and ping(topo, "h1", H3)
    end = next(link.peer for link in topo.links if link.host == "h2")
    subprocess.run(["ip", "link", "set", end, "down"], check=True)
    assert wait_port_state(sw, "p2", "down")["state"] == "down", "a port whose interface is down says so"
    subprocess.run(["ip", "link", "set", end, "up"], check=True)
    subprocess.run(["ip", "link", "del", end], check=True)      # the veth pair goes, both ends

    assert wait_port_state(sw, "p2", "missing")["state"] == "missing", sw.log()
    table = subprocess.run([sys.executable, "-m", "pyswitch", "show", "ports", "--name", sw.name],
                           capture_output=True, text=True, check=True).stdout
    assert any(line.split()[:1] == ["p2"] and "missing" in line.split() for line in table.splitlines()), table
    busy = busy_share(sw, 1.5)
    assert busy < 0.3, f"the switch used {busy:.0%} of a core while a port's interface was gone"
    assert ping(topo, "h1", H3), "the other ports keep forwarding"
    assert sw.show("stats")["rx_packets"] > 0

    topo.topology.up()                                          # an interface of that name comes back
    row = wait_port_state(sw, "p2", "up")
    assert row["state"] == "up" and row["reattached"] == 1, row
    assert ping(topo, "h1", H2, count=3), f"traffic to the port's new interface\n{sw.log()}"
    assert ping(topo, "h2", H3), "and from it"
    log = sw.log()
    assert log.count("disappeared") == 1, log
    assert log.count("is back") == 1, log
    assert port_row(sw, "p2")["rx_packets"] > 0


def test_a_tap_port_whose_device_is_deleted_is_made_again(topology, datapath):
    topo = topology(DEMO, switches=[DEMO_SW], datapath=datapath)
    sw = topo.switch("demo")
    assert ping(topo, "h1", H3)
    tap = topo.tap_device("psw-tap3")
    subprocess.run(["ip", "-n", topo.netns("h3"), "link", "del", tap], check=True)

    busy = busy_share(sw, 2.0)
    assert busy < 0.4, f"the switch used {busy:.0%} of a core after a TAP device was deleted"
    row = wait_port_state(sw, "p3", "up")
    assert row["reattached"] == 1, row
    assert ping(topo, "h1", H3, count=3), f"the TAP device is made again, addressed, and forwards\n{sw.log()}"
    assert ping(topo, "h1", H2), "the other ports forward throughout"
    log = sw.log()
    assert log.count("disappeared") == 1 and log.count("is back") == 1, log


def test_control_socket_abuse_does_not_stop_forwarding_or_answering(topology):
    """Garbage, huge and deeply nested requests, idle and dribbling clients and a crowd of good ones, all
    while a host pings through the switch: every bad client gets a clear error, every good one its answer,
    and the pings keep coming back."""
    topo = topology(DEMO, switches=[DEMO_SW])
    sw = topo.switch("demo")
    path = socket_path(sw.name)
    assert ping(topo, "h1", H2)
    pinger = topo.popen("h1", ["ping", "-c", "60", "-i", "0.05", "-W", "1", H2], stdout=subprocess.PIPE, text=True)
    idle = idle_clients(path, 30)
    try:
        slow = [threading.Thread(target=slow_client, args=(path,)) for _ in range(3)]
        for thread in slow:
            thread.start()
        for name, (payload, says) in BAD_REQUESTS.items():
            answer = exchange(path, payload)
            assert answer is not None and not answer["ok"] and says in answer["error"], (name, answer)
        started = time.monotonic()
        assert sw.show("stats")["rx_packets"] > 0, "a good client is answered beside the idle ones"
        assert time.monotonic() - started < 2.0
        time.sleep(0.7)                 # past the idle clients' deadline
    finally:
        for sock in idle:
            sock.close()
    answers = []
    crowd = [threading.Thread(target=lambda: answers.append(sw.show("ports"))) for _ in range(40)]
    for thread in crowd:
        thread.start()
    for thread in crowd + slow:
        thread.join(timeout=10)
    assert len(answers) == 40 and all(len(rows) == 3 for rows in answers)
    out, _ = pinger.communicate(timeout=20)
    received = int(re.search(r"(\d+) received", out).group(1))
    assert received >= 55, f"only {received} of 60 pings came back while the control socket was abused\n{out}"
    stats = sw.show("stats")
    assert stats["control_timed_out"] >= 33 and stats["control_too_large"] == 1, stats
    assert sw.process.poll() is None


@pytest.mark.parametrize("datapath", ["c", "python"])
def test_a_backend_whose_namespace_is_removed_mid_connection(lb, datapath):
    """Six long connections, two to each backend, carry data while b1's namespace is deleted with its server
    (a container going away): the switch stays up, health marks b1 down, its port goes missing, new
    connections go to b2 and b3, and the connections to b2 and b3 lose nothing."""
    lb = lb(datapath=datapath, health="http", interval_s=0.3)
    sw = lb.switch
    settled = 0                 # the servers start after the switch: the first probes may have failed
    deadline = time.monotonic() + 10
    while settled < 5 and time.monotonic() < deadline:
        settled = settled + 1 if all(b["state"] == "up" for b in lb.show_vips().values()) else 0
        time.sleep(0.2)
    holders = []
    try:
        for _ in range(6):
            holder = lb.net.popen("c1", [sys.executable, HOLDER, VIP, "80", "150", "0.02"],
                                  stdout=subprocess.PIPE, text=True)
            holders.append((holder, holder.stdout.readline().split()[1]))
        assert sorted(name for _, name in holders) == ["b1", "b1", "b2", "b2", "b3", "b3"], holders
        time.sleep(0.5)
        subprocess.run(["ip", "netns", "del", lb.net.netns("b1")], check=True)
        lb.stop("b1")                               # its last process: the namespace and its veth go
        results = {}
        for holder, name in holders:
            results.setdefault(name, []).append(json.loads(holder.communicate(timeout=30)[0]))
    finally:
        for holder, _ in holders:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
    for name in ("b2", "b3"):
        for out in results[name]:
            assert out["echoed"] == 150 and out["error"] is None and out["mismatch"] is None, (name, out)
    assert all(out["echoed"] < 150 for out in results["b1"]), "b1's own connections died with it"

    deadline = time.monotonic() + 5
    while lb.show_vips()[BACKENDS["b1"]]["state"] != "down" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lb.show_vips()[BACKENDS["b1"]]["state"] == "down", sw.log()[-2000:]
    assert port_row(sw, "b1")["state"] == "missing"
    assert not any(r["address"] == BACKENDS["b1"] and r["mac"] for r in sw.show("arp")), "its neighbor is forgotten"
    got, out = lb.curl(10)
    assert len(got) == 10 and {name for name, _ in got} == {"b2", "b3"}, out
    assert sw.process.poll() is None
    assert sw.log().count("disappeared") == 1
