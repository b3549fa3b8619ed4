"""The metrics endpoint's parts without namespaces: a switch's snapshot as Prometheus text that
prometheus_client's own parser reads back, and the hand-over of snapshots from the loop thread to scrapes."""
import threading
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from pyswitch.config import from_dict
from pyswitch.metric_families import families
from pyswitch.metrics import MAX_WAITING, SnapshotExchange, SwitchCollector, read_switch
from pyswitch.switch import Switch

LB = {
    "switch": {"name": "m1", "datapath": "python"},
    "vlan": [{"id": 10, "address": "198.51.100.1/24"}, {"id": 20, "address": "192.0.2.1/24"}],
    "vip": [{"name": "web", "address": "203.0.113.10", "port": 80,
             "backend": [{"address": "192.0.2.11", "port": 8080, "weight": 3},
                         {"address": "192.0.2.12", "port": 8080, "weight": 0}]}],
}


def scrape(snapshot) -> dict:
    """The text a registry serving `snapshot` renders, parsed: {family name: family}."""
    exchange = SnapshotExchange(wake=lambda: None)
    exchange.fresh = lambda timeout=0: (snapshot, time.monotonic())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwitchCollector(exchange))
    text = generate_latest(registry).decode()
    parsed = list(text_string_to_metric_families(text))
    names = [f.name for f in parsed]
    assert len(names) == len(set(names)), f"a family is given twice: {sorted(n for n in names if names.count(n) > 1)}"
    return {f.name: f for f in parsed}


def samples(family) -> dict:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if not s.name.endswith("_created")}


def test_a_load_balancers_snapshot_parses_with_its_vips_and_backends():
    switch = Switch(from_dict(LB))
    try:
        switch.vips.by_name["web"].counters["connections"] = 5
        switch.vips.by_name["web"].backends[0].conn_opened()
        got = scrape(read_switch(switch))
    finally:
        switch.close()
    # prometheus_client's parser names a counter family without its _total, its samples with it.
    assert got["pyswitch_vip_connections"].type == "counter"
    assert samples(got["pyswitch_vip_connections"]) == {(("vip", "web"),): 5}
    active = samples(got["pyswitch_backend_active_conns"])
    assert active == {(("backend", "192.0.2.11:8080"), ("vip", "web")): 1,
                      (("backend", "192.0.2.12:8080"), ("vip", "web")): 0}
    assert got["pyswitch_backend_up"].type == "gauge"
    assert set(samples(got["pyswitch_backend_up"]).values()) == {1}     # weight 0 is not a state
    assert samples(got["pyswitch_backend_weight"])[(("backend", "192.0.2.12:8080"), ("vip", "web"))] == 0
    assert got["pyswitch_flows"].type == "gauge"
    assert got["pyswitch_conns"].type == "gauge"
    assert samples(got["pyswitch_conns"]) == {(): 0}
    assert samples(got["pyswitch_info"]) == {(("datapath", "python"), ("name", "m1")): 1}
    assert samples(got["pyswitch_upcalls"])[(("reason", "conn_miss"),)] == 0
    assert got["pyswitch_parse_errors"].type == "counter" and got["pyswitch_parse_errors"].samples
    assert got["pyswitch_flow_lookups"].type == "counter"
    assert samples(got["pyswitch_metrics_snapshot_age_seconds"])[()] >= 0


def test_ports_have_a_series_each_and_counters_end_in_total():
    snapshot = {"stats": {"name": "s", "datapath": "c", "flows": 3, "lb_conn_new": 7, "guard_embryonic": 2,
                          "conn_by_state": {"syn": 1, "established": 4}, "worker_rx_packets": [10, 20]},
                "ports": [{"name": "p1", "type": "afpacket", "device": "psw-x", "rx_packets": 11, "tx_packets": 12,
                           "rx_bytes": 1100, "tx_bytes": 1200, "rx_dropped": 1, "rx_errors": 0, "tx_dropped": 2,
                           "macs": 1, "max_macs": 64, "mac_evicted": 0, "state": "missing", "reattached": 1}],
                "vips": [], "ha": {"state": "backup", "priority": 100}}
    text = "\n".join(s.name for f in families(snapshot) for s in f.samples)
    assert "pyswitch_port_rx_packets_total" in text and "pyswitch_lb_conn_new_total" in text
    got = scrape(snapshot)
    assert samples(got["pyswitch_port_rx_bytes"]) == {(("port", "p1"),): 1100}
    assert samples(got["pyswitch_port_tx_dropped"]) == {(("port", "p1"),): 2}
    assert samples(got["pyswitch_port_up"]) == {(("port", "p1"),): 0}
    assert samples(got["pyswitch_lb_conn_new"]) == {(): 7}
    assert samples(got["pyswitch_conns_by_state"]) == {(("state", "syn"),): 1, (("state", "established"),): 4}
    assert samples(got["pyswitch_worker_rx_packets"]) == {(("worker", "0"),): 10, (("worker", "1"),): 20}
    assert "pyswitch_guard_embryonic" not in got                # a sum of the VIPs' own: not exported
    assert samples(got["pyswitch_ha_master"]) == {(): 0}


def test_a_scrape_gets_a_snapshot_built_after_it_asked():
    built = []
    exchange = SnapshotExchange(wake=lambda: None)
    answer = {}
    scraper = threading.Thread(target=lambda: answer.update(got=exchange.fresh(timeout=10.0)[0]))
    scraper.start()
    deadline = time.monotonic() + 10.0
    while scraper.is_alive() and time.monotonic() < deadline:     # the loop: one turn after another
        exchange.publish_with(lambda: built.append(len(built)) or {"n": len(built)})
        time.sleep(0.001)
    scraper.join()
    assert answer["got"] == {"n": 1}
    assert built == [0]                         # one snapshot however many turns ran
    assert exchange.own_stats()[0]["stale_scrapes"] == 0


def test_a_loop_that_does_not_answer_serves_the_last_snapshot():
    exchange = SnapshotExchange(wake=lambda: None)
    assert exchange.fresh(timeout=0.01) == (None, 0.0)
    exchange._wanted = True
    exchange.publish_with(lambda: {"old": True})
    assert exchange.fresh(timeout=0.01)[0] == {"old": True}
    assert exchange.own_stats()[0]["stale_scrapes"] == 2


def test_scrapes_beyond_the_bound_do_not_wait():
    exchange = SnapshotExchange(wake=lambda: None)
    for _ in range(MAX_WAITING):
        exchange._waiting.acquire()
    assert exchange.fresh(timeout=30.0) == (None, 0.0)      # at once, not after 30 s
    assert exchange.own_stats()[0]["busy_scrapes"] == 1


def test_a_failing_snapshot_is_counted_and_the_scrape_answered():
    exchange = SnapshotExchange(wake=lambda: None)
    exchange._wanted = True
    exchange.publish_with(lambda: 1 / 0)
    assert exchange.own_stats()[0]["snapshot_errors"] == 1
    exchange.close()
    assert exchange.fresh(timeout=30.0) == (None, 0.0)      # closed: answered at once


@pytest.mark.parametrize("state, up", [("up", 1), ("down", 0), ("drain", 0)])
def test_backend_up_follows_its_state(state, up):
    vip = {"name": "v", "backends": [{"address": "192.0.2.11", "port": 80, "state": state, "weight": 1,
                                      "active_conns": 0, "total_conns": 0, "rtt_ms": 1.5}]}
    got = scrape({"stats": {}, "ports": [], "vips": [vip]})
    key = (("backend", "192.0.2.11:80"), ("vip", "v"))
    assert samples(got["pyswitch_backend_up"]) == {key: up}
    assert samples(got["pyswitch_backend_rtt_seconds"]) == {key: 0.0015}
    assert samples(got["pyswitch_backend_state"])[(*key[:1], ("state", state), key[1])] == 1
