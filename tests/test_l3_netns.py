"""Routing between real hosts: VLAN interfaces as gateways, a static route to a subnet behind a Linux
router, ICMP errors that real ping and traceroute understand, with both datapaths."""
import json
import subprocess
import sys
import threading
import time

import pytest

from hosts import CONNECT, SEND_RAW, mac_of, ping, transfer

pytestmark = pytest.mark.netns

TOPOLOGY = "netns/routed.toml"
SWITCHES = ["netns/routed-sw.toml", "netns/routed-sw2.toml"]
H1, H2, H3 = "198.51.100.11", "192.0.2.11", "203.0.113.11"
GW10, GW20 = "198.51.100.1", "192.0.2.1"


@pytest.fixture(params=["c", "python"])
def routed(request, topology):
    return topology(TOPOLOGY, switches=SWITCHES, datapath=request.param)


def run(topo, host, argv, timeout=30):
    return topo.exec(host, argv, capture_output=True, text=True, timeout=timeout)


def test_hosts_in_two_vlans_reach_each_other_and_the_gateways(routed):
    assert ping(routed, "h1", H2), routed.switch_log("rt")
    assert ping(routed, "h2", H1)
    assert ping(routed, "h1", GW10), "the switch answers on its own address"
    assert ping(routed, "h1", GW20), "...and on its other VLAN's address, routed"
    out = run(routed, "h1", ["ping", "-c", "1", "-W", "2", H2]).stdout
    assert "ttl=63" in out, f"one routed hop takes one off the TTL: {out}"
    out = run(routed, "h2", ["ping", "-c", "1", "-W", "2", "192.0.2.254"]).stdout
    assert "ttl=64" in out, f"hosts in one VLAN are still switched, not routed: {out}"


def test_tcp_50mb_across_vlans(routed):
    (sent_n, sent_digest), received = transfer(routed, "h1", "h2", H2, 50 * 1000 * 1000)
    assert received == [sent_n, sent_digest]


def test_traceroute_and_ttl_1_show_the_switch(routed):
    assert ping(routed, "h1", H2)
    out = run(routed, "h1", ["ping", "-c", "1", "-t", "1", "-W", "2", H2]).stdout
    assert f"From {GW10}" in out and "Time to live exceeded" in out, out
    trace = run(routed, "h1", ["traceroute", "-n", "-q", "1", "-w", "2", "-m", "4", H3], timeout=60).stdout
    hops = [line.split()[1] for line in trace.splitlines()[1:] if len(line.split()) > 1]
    assert hops[:3] == [GW10, "192.0.2.254", H3], trace


def test_subnet_behind_a_next_hop_router(routed):
    assert ping(routed, "h1", H3), routed.switch_log("rt")
    assert ping(routed, "h3", H1)
    arp = {row["address"]: row for row in routed.switch("rt").show("arp")}
    assert arp["192.0.2.254"]["mac"] == mac_of(routed, "r1", "eth0")
    assert arp["192.0.2.254"]["state"] == "reachable" and arp["192.0.2.254"]["vlan"] == 20
    routes = {row["prefix"]: row for row in routed.switch("rt").show("routes")}
    assert routes["203.0.113.0/24"] == {"prefix": "203.0.113.0/24", "via": "192.0.2.254", "vlan": 20,
                                        "kind": "static"}
    assert routes["198.51.100.0/24"]["kind"] == "connected" and routes["198.51.100.0/24"]["vlan"] == 10


def test_no_route_gets_net_unreachable(routed):
    out = run(routed, "h1", ["ping", "-c", "1", "-W", "2", "198.18.0.1"]).stdout
    assert f"From {GW10}" in out and "Destination Net Unreachable" in out, out
    assert routed.switch("rt").show("stats")["icmp_net_unreachable"] >= 1


def test_route_changes_take_effect_at_once(routed):
    name = routed.switch("rt").name
    assert ping(routed, "h1", H3)
    cli = [sys.executable, "-m", "pyswitch", "route"]
    subprocess.run(cli + ["del", "203.0.113.0/24", "--name", name], check=True, capture_output=True)
    out = run(routed, "h1", ["ping", "-c", "1", "-W", "2", H3]).stdout
    assert "Destination Net Unreachable" in out, out
    subprocess.run(cli + ["add", "203.0.0.0/16", "via", "192.0.2.254", "--name", name], check=True,
                   capture_output=True)
    assert ping(routed, "h1", H3), "a shorter covering route serves the subnet"


def test_unresolvable_next_hop_is_bounded_and_does_not_stall_others(routed):
    assert ping(routed, "h1", H2)
    result = {}

    def flood_dead_host():
        result["dead"] = run(routed, "h1", ["ping", "-c", "40", "-i", "0.05", "-W", "5", "192.0.2.99"])

    worker = threading.Thread(target=flood_dead_host)
    worker.start()
    time.sleep(0.5)
    assert ping(routed, "h1", H2, count=5), "traffic to a resolved host stalled behind an unresolved one"
    worker.join(timeout=60)
    assert "Destination Host Unreachable" in result["dead"].stdout, result["dead"].stdout
    stats = routed.switch("rt").show("stats")
    assert stats["arp_failed"] >= 1
    assert stats["arp_queue_dropped"] + stats["arp_timeout_dropped"] >= 1
    assert stats["arp_timeout_dropped"] <= 16 * 3, "the queue for one neighbor is bounded"


def test_second_connection_to_a_resolved_host_costs_no_upcall(routed):
    assert ping(routed, "h1", H2) and ping(routed, "h2", H1)
    routed.exec("h1", [sys.executable, "-c", CONNECT, H2, "7001"], check=True)
    before = routed.switch("rt").show("stats")["upcalls"]
    routed.exec("h1", [sys.executable, "-c", CONNECT, H2] + [str(p) for p in range(7002, 7012)], check=True)
    after = routed.switch("rt").show("stats")["upcalls"]
    recent = routed.switch("rt").show("upcalls")
    tcp = [u for u in recent[len(recent) - (after - before):] if "nw_proto=6" in u["packet"]]
    assert tcp == [], f"new routed TCP connections went to the slow path: {tcp}"


def test_ip_options_and_fragments_are_routed(routed):
    out = run(routed, "h1", ["ping", "-c", "1", "-W", "2", "-R", H2]).stdout
    assert " 0% packet loss" in out, f"IPv4 with options: {out}"
    out = run(routed, "h1", ["ping", "-c", "2", "-W", "2", "-s", "4000", H2]).stdout
    assert " 0% packet loss" in out, f"fragments: {out}"


def test_spoofed_and_martian_frames_are_counted_and_ignored(routed):
    assert ping(routed, "h1", H2)
    h1_mac = mac_of(routed, "h1", "eth0")
    gw_mac = [r for r in routed.switch("rt").show("flows") if "eth_type=0x0800" in r["match"]][0]["match"]
    gw_mac = gw_mac.split("eth_dst=")[1].split(",")[0]
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether
    spoof = Ether(src=h1_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=h1_mac, psrc=GW10, pdst=GW10)
    martian = Ether(src=h1_mac, dst=gw_mac) / IP(src="127.0.0.1", dst=H2) / ICMP()
    bcast_src = Ether(src=h1_mac, dst=gw_mac) / IP(src="255.255.255.255", dst=H2) / ICMP()
    ttl0 = Ether(src=h1_mac, dst=gw_mac) / IP(src=H1, dst=H2, ttl=0) / ICMP()
    bad_arp = Ether(src=h1_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(hwlen=5, psrc=H1, pdst=GW10)
    before = routed.switch("rt").show("stats")
    frames = [bytes(f).hex() for f in (spoof, martian, martian, bcast_src, ttl0, bad_arp)]
    routed.exec("h1", [sys.executable, "-c", SEND_RAW, "eth0"] + frames, check=True)
    time.sleep(0.5)
    after = routed.switch("rt").show("stats")
    assert after["arp_spoofed"] - before["arp_spoofed"] == 1
    assert after["martian"] - before["martian"] == 3
    assert after["icmp_time_exceeded"] - before["icmp_time_exceeded"] == 1
    assert after["parse_errors"]["arp"] - before["parse_errors"]["arp"] == 1, "ARP with a wrong address length"
    assert ping(routed, "h1", GW10) and ping(routed, "h1", H2), "the switch kept its address and its routes"
    assert after["pid"] == before["pid"]


def test_show_routes_and_arp_json_cli(routed):
    assert ping(routed, "h1", H2)
    name = routed.switch("rt").name
    out = subprocess.run([sys.executable, "-m", "pyswitch", "show", "arp", "--name", name, "--json"],
                         check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    assert {"address", "mac", "vlan", "state", "age_s"} <= set(rows[0])
    out = subprocess.run([sys.executable, "-m", "pyswitch", "show", "routes", "--name", name, "--json"],
                         check=True, capture_output=True, text=True).stdout
    assert {"prefix", "via", "vlan", "kind"} <= set(json.loads(out)[0])
