"""[metrics] on a running switch: its endpoint, fetched from the root namespace, parses with prometheus_client's
own parser, its port counters move with real traffic between the demo's hosts, and it goes with the switch."""
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hosts import ping

pytestmark = pytest.mark.netns

DEMO = "netns/demo.toml"
DEMO_SW = "netns/demo-sw.toml"
H2 = "198.51.100.12"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_metrics(tmp_path, port, source=DEMO_SW):
    config = tmp_path / "metrics-sw.toml"
    config.write_text(open(source).read() + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    return str(config)


def fetch(port):
    """{family name: {labels: value}} of one scrape; counter families are named without their _total."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    got = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in got, f"{family.name} given twice"
        got[family.name] = {"type": family.type,
                            "samples": {tuple(sorted(s.labels.items())): s.value for s in family.samples}}
    return got


def by_port(got, name):
    return {dict(labels)["port"]: value for labels, value in got[name]["samples"].items()}


def test_metrics_parse_and_move_with_traffic(topology, tmp_path):
    port = free_port()
    topo = topology(DEMO, switches=[with_metrics(tmp_path, port)])
    switch = topo.switch("demo")
    before = fetch(port)

    for name in ("pyswitch_port_rx_packets", "pyswitch_port_tx_packets", "pyswitch_port_rx_bytes",
                 "pyswitch_port_tx_bytes", "pyswitch_port_rx_dropped", "pyswitch_datapath_rx_packets",
                 "pyswitch_datapath_upcalls", "pyswitch_upcalls", "pyswitch_parse_errors"):
        assert before[name]["type"] == "counter", name
    for name in ("pyswitch_flows", "pyswitch_mac_entries", "pyswitch_port_up", "pyswitch_port_mac_entries"):
        assert before[name]["type"] == "gauge", name
    assert set(by_port(before, "pyswitch_port_rx_packets")) == {"p1", "p2", "p3"}
    assert by_port(before, "pyswitch_port_up") == {"p1": 1, "p2": 1, "p3": 1}
    assert {dict(k)["name"] for k in before["pyswitch_info"]["samples"]} == {switch.name}
    assert {dict(k)["reason"] for k in before["pyswitch_upcalls"]["samples"]} >= {"miss", "conn_miss"}

    assert ping(topo, "h1", H2, count=3)
    after = fetch(port)
    rx0, rx1 = by_port(before, "pyswitch_port_rx_packets"), by_port(after, "pyswitch_port_rx_packets")
    tx0, tx1 = by_port(before, "pyswitch_port_tx_packets"), by_port(after, "pyswitch_port_tx_packets")
    # Three echo requests in on p1 and out on p2, three replies back: at least that, with ARP and the hosts' own
    # IPv6 chatter perhaps more.
    assert rx1["p1"] - rx0["p1"] >= 3 and tx1["p2"] - tx0["p2"] >= 3
    assert rx1["p2"] - rx0["p2"] >= 3 and tx1["p1"] - tx0["p1"] >= 3
    assert by_port(after, "pyswitch_port_rx_bytes")["p1"] - by_port(before, "pyswitch_port_rx_bytes")["p1"] >= 3 * 98
    grew = after["pyswitch_datapath_rx_packets"]["samples"][()] - before["pyswitch_datapath_rx_packets"]["samples"][()]
    assert grew >= 6
    assert after["pyswitch_mac_entries"]["samples"][()] >= 2
    assert after["pyswitch_flows"]["samples"][()] >= 2

    # The same counters as `show ports`, read later: never behind the scrape.
    shown = {row["name"]: row for row in switch.show("ports")}
    assert all(shown[p]["rx_packets"] >= n for p, n in rx1.items())

    # The endpoint stops with the switch.
    assert switch.stop() == 0
    with pytest.raises(urllib.error.URLError):
        fetch(port)


def test_a_port_in_use_stops_the_switch_with_the_key(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        name = f"psw-m{os.getpid() % 100000}"
        config = tmp_path / "sw.toml"
        config.write_text(f'[switch]\nname = "{name}"\ncontrol_dir = "{tmp_path}/run"\n\n'
                          f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        os.mkdir(tmp_path / "run", 0o700)
        result = subprocess.run([sys.executable, "-m", "pyswitch", "run", str(config)], capture_output=True,
                                text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr
    assert f"pyswitch: metrics.listen: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert os.listdir(tmp_path / "run") == []          # the control socket it had made is gone again


def test_vip_and_backend_counters_move_with_requests(topology, tmp_path):
    from test_lb_netns import BACKENDS, TOPOLOGY, Lb, switch_config

    port = free_port()
    config = switch_config(tmp_path)
    with open(config, "a") as f:
        f.write(f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    lb = Lb(topology(TOPOLOGY, switches=[config]), "nat")
    try:
        for name in BACKENDS:
            lb.start(name)
        before = fetch(port)
        backends = {f"{address}:8080" for address in BACKENDS.values()}
        up = {dict(k)["backend"]: v for k, v in before["pyswitch_backend_up"]["samples"].items()
              if dict(k)["vip"] == "web"}
        assert up == dict.fromkeys(backends, 1)
        assert before["pyswitch_vip_connections"]["type"] == "counter"
        results, out = lb.curl(6)
        assert len(results) == 6, out
        after = fetch(port)
    finally:
        lb.stop_all()

    def total(got, name):
        return sum(v for k, v in got[name]["samples"].items() if dict(k).get("vip") == "web")
    assert total(after, "pyswitch_vip_connections") - total(before, "pyswitch_vip_connections") == 6
    assert total(after, "pyswitch_backend_connections") - total(before, "pyswitch_backend_connections") == 6
    assert after["pyswitch_lb_conn_new"]["samples"][()] - before["pyswitch_lb_conn_new"]["samples"][()] == 6
    assert set(dict(k)["backend"] for k in after["pyswitch_backend_active_conns"]["samples"]) == backends
