"""Faults while the switch runs: a port's interface deleted and made again.  Real namespaces, real ping, a real
`pyswitch run`, both datapaths."""
import re
import subprocess
import threading
import time

import pytest

from control_clients import BAD_REQUESTS, exchange, idle_clients, slow_client
from hosts import cpu_seconds, ping
from pyswitch.control import socket_path

pytestmark = pytest.mark.netns

DEMO = "netns/demo.toml"
DEMO_SW = "netns/demo-sw.toml"
H2, H3 = "198.51.100.12", "198.51.100.13"


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


def test_an_afpacket_port_whose_interface_is_deleted_and_made_again_recovers(topology, datapath):
    topo = topology(DEMO, switches=[DEMO_SW], datapath=datapath)
    sw = topo.switch("demo")
    assert ping(topo, "h1", H2) and ping(topo, "h1", H3)
    end = next(link.peer for link in topo.links if link.host == "h2")
    subprocess.run(["ip", "link", "del", end], check=True)      # the veth pair goes, both ends

    assert wait_port_state(sw, "p2", "missing")["state"] == "missing", sw.log()
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
