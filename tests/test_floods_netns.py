"""Floods at L2/L3 through a running switch, with good traffic beside them (docs/RELIABILITY.md): host x of
netns/floods.toml floods with trafgen (bounded in count and time) while a1 pings a2 (switched) and b (routed).
Each test asserts that the good traffic kept flowing, that every table stayed within its bound, and that the
counter of what the bound refused moved."""
import pytest

from flood_traffic import A1, A2, B, TOPOLOGY, Flood, ping_fractions, switch_config
from hosts import mac_of, ping

pytestmark = pytest.mark.netns

FLOOD_S = 3.0
FLOOD_PPS = 30000               # well beyond what the slow path handles (a few 10k upcalls a second)
GOOD = [("a1", A2), ("a1", B)]
GOOD_SHARE = 0.5                # generous: the machine is shared and has 2 cores


def start(topology, tmp_path, settings="", port_settings=None):
    topo = topology(TOPOLOGY, switches=[switch_config(tmp_path, settings, port_settings)])
    for host, address in GOOD + [("a2", A1), ("b", A1), ("x", A2)]:
        assert ping(topo, host, address, count=1), f"{host} -> {address} before the flood"
    return topo, topo.switch("fl")


def flood_with_good_traffic(topo, tmp_path, kind):
    with Flood(topo, kind, tmp_path, FLOOD_S, count=int(FLOOD_S * FLOOD_PPS), rate=FLOOD_PPS) as flood:
        shares = ping_fractions(topo, GOOD)
    assert flood.sent > FLOOD_PPS, f"trafgen sent only {flood.sent} frames"
    return shares, flood.sent


def assert_good_traffic_flowed(topo, shares):
    low = {pair: share for pair, share in shares.items() if share < GOOD_SHARE}
    assert not low, f"good traffic starved during the flood: {low}\n{topo.switch_log('fl')}"
    for host, address in GOOD:
        assert ping(topo, host, address, count=2), f"{host} -> {address} after the flood"


def test_mac_flood_evicts_only_the_flooding_ports_macs(topology, tmp_path):
    """No per-port limit (the default): the full table evicts from the port holding the most, which is x's."""
    topo, sw = start(topology, tmp_path, "max_macs = 512\nmax_flows = 512\n")
    good_macs = {mac_of(topo, h, "eth0"): h for h in ("a1", "a2", "b")}
    before = sw.show("stats")
    shares, _ = flood_with_good_traffic(topo, tmp_path, "mac")
    stats = sw.show("stats")
    fdb = {row["mac"]: row["port"] for row in sw.show("fdb")}
    assert stats["macs"] <= 512 and len(fdb) <= 512
    assert {mac: fdb.get(mac) for mac in good_macs} == {mac: h for mac, h in good_macs.items()}, \
        "a flood on x evicted another port's host"
    evicted = stats["mac_evicted_by_port"]
    assert evicted["x"] > 0 and evicted["a1"] == evicted["a2"] == evicted["b"] == 0, evicted
    assert stats["flows"] <= 512 and stats["evictions"] > before["evictions"], "the flow table never filled"
    assert stats["refused"] == before["refused"], "a flow was refused although timed flows could be evicted"
    # More than the slow path can take: what it could not was dropped and counted, in the upcall queue (while the
    # datapath forwarded on) or in x's RX ring.
    x = {row["name"]: row for row in sw.show("ports")}["x"]
    assert stats["upcall_dropped"] - before["upcall_dropped"] + x["rx_dropped"] > 0
    assert_good_traffic_flowed(topo, shares)


def test_mac_flood_stops_at_the_ports_own_limit(topology, tmp_path):
    topo, sw = start(topology, tmp_path, port_settings={"x": "max_macs = 64"})
    shares, sent = flood_with_good_traffic(topo, tmp_path, "mac")
    ports = {row["name"]: row for row in sw.show("ports")}
    assert ports["x"]["macs"] <= 64 and ports["x"]["max_macs"] == 64
    assert ports["x"]["mac_evicted"] > 0
    assert ports["a1"]["macs"] == ports["a2"]["macs"] == 1 and ports["a1"]["mac_evicted"] == 0
    assert sw.show("stats")["macs"] <= 64 + 3
    assert_good_traffic_flowed(topo, shares)


def test_arp_storm_stays_within_the_arp_bounds(topology, tmp_path):
    topo, sw = start(topology, tmp_path, "arp_max_entries = 64\narp_queue_total = 32\narp_rate_per_port = 500\n")
    before = sw.show("stats")
    shares, _ = flood_with_good_traffic(topo, tmp_path, "arp")
    stats = sw.show("stats")
    assert stats["arp_entries"] <= 64 and len(sw.show("arp")) <= 64
    assert stats["arp_pending"] <= 32
    assert stats["arp_rate_limited"] > before["arp_rate_limited"], "the storm was never rate-limited"
    assert stats["arp_table_full"] > before["arp_table_full"], "the table never refused a neighbor"
    assert stats["arp_queue_dropped"] > before["arp_queue_dropped"], "the pending queues never refused"
    assert_good_traffic_flowed(topo, shares)


def test_malformed_frames_are_counted_and_dropped(topology, tmp_path):
    topo, sw = start(topology, tmp_path)
    pid = sw.pid
    before = sw.show("stats")
    shares, sent = flood_with_good_traffic(topo, tmp_path, "malformed")
    stats = sw.show("stats")
    assert sw.process.poll() is None and stats["pid"] == pid, "the switch died"
    # Eight of the nine frames lie (the ninth has a random header, which may lie or not); the kernel's RX ring
    # may drop some of them before the switch sees them.
    grown = {reason: n - before["parse_errors"][reason] for reason, n in stats["parse_errors"].items()}
    assert sum(grown.values()) >= sent // 4, (grown, sent)
    assert {r for r, n in grown.items() if n} >= {"ip_trunc", "ip_ihl", "ip_len", "l4_trunc", "arp"}, grown
    x = {row["name"]: row for row in sw.show("ports")}["x"]
    assert x["rx_errors"] >= sum(grown.values())
    assert_good_traffic_flowed(topo, shares)
