"""L2 switching between real hosts: namespaces with their own kernels, real ping and TCP, through a
running `pyswitch run` process, with both datapaths."""
import sys
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from hosts import CONNECT, SEND_RAW, busy_while_link_down, mac_of, ping, transfer

pytestmark = pytest.mark.netns

DEMO = "netns/demo.toml"
DEMO_SW = "netns/demo-sw.toml"
H1, H2, H3 = "198.51.100.11", "198.51.100.12", "198.51.100.13"

@pytest.fixture(params=["c", "python"])
def datapath(request):
    return request.param


def test_three_hosts_ping_each_other(topology, datapath):
    topo = topology(DEMO, switches=[DEMO_SW], datapath=datapath)
    pairs = [("h1", H2), ("h2", H1), ("h1", H3), ("h3", H1), ("h2", H3), ("h3", H2)]
    failed = [(host, addr) for host, addr in pairs if not ping(topo, host, addr)]
    assert not failed, f"no answer for {failed}\n{topo.switch_log('demo')}"


def test_fdb_lists_each_host_on_its_port(topology, datapath):
    topo = topology(DEMO, switches=[DEMO_SW], datapath=datapath)
    assert ping(topo, "h1", H2) and ping(topo, "h1", H3)
    fdb = topo.switch("demo").show("fdb")
    where = {row["mac"]: (row["port"], row["vlan"]) for row in fdb}
    assert where.get(mac_of(topo, "h1", "eth0")) == ("p1", 10)
    assert where.get(mac_of(topo, "h2", "eth0")) == ("p2", 10)
    assert where.get(mac_of(topo, "h3", topo.tap_device("psw-tap3"))) == ("p3", 10)
    assert all(row["age_s"] >= 0 for row in fdb)
    ports = {row["name"]: row for row in topo.switch("demo").show("ports")}
    assert set(ports) == {"p1", "p2", "p3"}
    assert ports["p1"]["rx_packets"] > 0 and ports["p1"]["tx_packets"] > 0
    assert ports["p3"]["type"] == "tap"


@pytest.mark.parametrize("dst_host, address", [("h2", H2), ("h3", H3)], ids=["veth", "tap"])
def test_tcp_50mb_arrives_intact(topology, datapath, dst_host, address):
    topo = topology(DEMO, switches=[DEMO_SW], datapath=datapath)
    (sent_n, sent_digest), received = transfer(topo, "h1", dst_host, address, 50 * 1000 * 1000)
    assert received == [sent_n, sent_digest]
    assert int(sent_n) == 50 * 1000 * 1000


def test_new_connection_between_known_hosts_costs_no_upcall(topology, datapath):
    topo = topology(DEMO, switches=[DEMO_SW], datapath=datapath)
    assert ping(topo, "h1", H2) and ping(topo, "h2", H1)
    topo.exec("h1", [sys.executable, "-c", CONNECT, H2, "7001"], check=True)   # warm both directions
    before = topo.switch("demo").show("stats")["upcalls"]
    topo.exec("h1", [sys.executable, "-c", CONNECT, H2] + [str(p) for p in range(7002, 7012)], check=True)
    after = topo.switch("demo").show("stats")
    # The hosts' own background chatter (IPv6 router solicitations, MLD reports) may come up meanwhile;
    # none of what came up may be TCP.
    recent = topo.switch("demo").show("upcalls")
    tcp = [u for u in recent[len(recent) - (after["upcalls"] - before):] if "nw_proto=6" in u["packet"]]
    assert after["upcalls"] - before <= len(recent)
    assert tcp == [], f"new TCP connections between learned hosts went to the slow path: {tcp}"
    assert after["flows"] >= 2


def test_mac_entries_age_out(topology, datapath, tmp_path):
    config = tmp_path / "aging-sw.toml"
    config.write_text(open(DEMO_SW).read().replace("[switch]", "[switch]\nmac_aging_s = 2\nflow_idle_s = 1", 1))
    topo = topology(DEMO, switches=[str(config)], datapath=datapath)
    assert ping(topo, "h1", H2, count=1)
    assert len(topo.switch("demo").show("fdb")) >= 2
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and topo.switch("demo").show("fdb"):
        time.sleep(0.5)
    assert topo.switch("demo").show("fdb") == [], "idle MACs stay after the aging time"
    assert ping(topo, "h1", H2, count=1), "after aging, hosts are learned again"


def test_vlans_do_not_reach_each_other(topology, datapath):
    topo = topology("netns/vlans.toml", switches=["netns/vlans-sw.toml"], datapath=datapath)
    v10 = [h for h in topo.hosts if topo.vlan_of(h) == 10]
    v20 = [h for h in topo.hosts if topo.vlan_of(h) == 20]
    assert len(v10) >= 2 and len(v20) >= 1
    assert ping(topo, v10[0], topo.address_of(v10[1]))
    assert not ping(topo, v10[0], topo.address_of(v20[0]), count=1)


def test_trunk_carries_vlans_between_two_switches(topology, datapath):
    topo = topology("netns/trunk.toml", switches=["netns/trunk-sw1.toml", "netns/trunk-sw2.toml"],
                    datapath=datapath)
    by_vlan = {}
    for host in topo.hosts:
        by_vlan.setdefault(topo.vlan_of(host), []).append(host)
    for vlan, hosts in by_vlan.items():
        a, b = hosts[0], hosts[1]
        assert ping(topo, a, topo.address_of(b)), f"VLAN {vlan}: {a} cannot reach {b} across the trunk"
    assert not ping(topo, by_vlan[10][0], topo.address_of(by_vlan[20][1]), count=1)


def bad_frames(src_mac, dst_mac):
    """Frames whose headers lie, each a different parse error, plus junk."""
    eth = Ether(src=src_mac, dst=dst_mac, type=0x0800)
    good_ip = bytes(IP(src=H1, dst=H2) / UDP(sport=1, dport=2) / (b"x" * 20))
    good_tcp = bytes(IP(src=H1, dst=H2) / TCP(sport=1, dport=2))
    frames = {
        "ip_trunc": bytes(eth / IP(src=H1, dst=H2))[:14 + 12],
        "ip_ihl": bytes(eth)[:14] + bytes([0x43]) + good_ip[1:],
        "ip_len": bytes(eth)[:14] + good_ip[:2] + (1500).to_bytes(2, "big") + good_ip[4:],
        "ip_version": bytes(eth)[:14] + bytes([0x65]) + good_ip[1:],
        "l4_trunc": bytes(eth)[:14] + good_tcp[:12] + bytes([0x10]) + good_tcp[13:20] + good_tcp[20:32]
                    + bytes([0xF0]) + good_tcp[33:],
        "ip6_len": bytes(Ether(src=src_mac, dst=dst_mac) / IPv6(src="2001:db8::1", dst="2001:db8::2", plen=999)
                         / UDP()),
    }
    return frames


def test_bad_frames_are_counted_and_good_traffic_flows(topology, datapath):
    topo = topology(DEMO, switches=[DEMO_SW], datapath=datapath)
    assert ping(topo, "h1", H2)
    h1, h2 = mac_of(topo, "h1", "eth0"), mac_of(topo, "h2", "eth0")
    frames = bad_frames(h1, h2)
    junk = [bytes.fromhex(h2.replace(":", "")) + bytes.fromhex(h1.replace(":", "")) + bytes(range(n))
            for n in (2, 7, 100)]  # the kernel refuses to send less than a header
    before = topo.switch("demo").show("stats")
    argv = [sys.executable, "-c", SEND_RAW, "eth0"] + [f.hex() for f in frames.values()] * 5 + [j.hex() for j in junk]
    topo.exec("h1", argv, check=True)
    time.sleep(0.5)
    after = topo.switch("demo").show("stats")
    errors = {k: after["parse_errors"][k] - before["parse_errors"][k] for k in after["parse_errors"]}
    assert errors["ip_trunc"] == 5 and errors["ip_ihl"] == 5 and errors["ip_len"] >= 5
    assert errors["ip_version"] == 5 and errors["l4_trunc"] == 5
    assert sum(errors.values()) >= 30
    assert ping(topo, "h1", H2) and ping(topo, "h2", H1), "good traffic stopped after bad frames"
    assert topo.switch("demo").show("stats")["pid"] == before["pid"]


def test_a_port_whose_interface_goes_down_does_not_make_the_switch_spin(topology, datapath):
    """The kernel leaves ENETDOWN on the socket of an interface that goes down, and poll(2) reports it at once until
    it is read: the serve loop reads it and sleeps, instead of spinning until the link comes back."""
    topo = topology(DEMO, switches=[DEMO_SW], datapath=datapath)
    assert ping(topo, "h1", H2)
    end = next(link.peer for link in topo.links if link.host == "h2")
    busy = busy_while_link_down(topo, topo.switch("demo"), end)
    assert busy < 0.3, f"the switch used {busy:.0%} of a core while a port was down"
    time.sleep(0.5)
    assert ping(topo, "h1", H2), "traffic goes on once the link is back"
