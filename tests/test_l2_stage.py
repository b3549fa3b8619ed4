"""The L2 stage on in-memory ports, with both datapaths: learning, flooding,
VLAN classification and tagging, moves, aging, and no upcall once learned."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Dot1Q, Ether

from pyswitch.config import PortConfig
from pyswitch.pipeline.l2 import L2Stage
from pyswitch.pipeline.mac_table import MacTable
from pyswitch.switch import make_datapath

H1, H2, H3, H4 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:04"
BCAST = "ff:ff:ff:ff:ff:ff"


class Rig:
    """A datapath with memory ports and an L2 stage, driven by hand."""

    def __init__(self, kind, ports, aging_s=300):
        self.dp = make_datapath(kind, max_flows=1024)
        self.configs = {}
        for no, pc in enumerate(ports):
            self.dp.add_port(no, "memory")
            self.configs[no] = pc
        self.stage = L2Stage(self.configs, MacTable(1024, aging_s), self.dp, flow_idle_ms=10_000)
        self.now = 1000.0

    def send(self, port_no, frame):
        self.dp.inject(port_no, bytes(frame))
        self.dp.run(int(self.now * 1000))
        for up in self.dp.upcalls():
            self.stage.handle(up, self.now)
        out = {}
        for no in self.configs:
            frames = [f for f, _vnet in self.dp.take(no)]
            if frames:
                out[no] = frames
        return out

    def upcalls(self):
        return self.dp.stats()["upcalls"]


def access(name, vlan):
    return PortConfig(name=name, type="afpacket", device=f"psw-{name}", vlan=vlan)


def trunk(name, vlans, native=None):
    return PortConfig(name=name, type="afpacket", device=f"psw-{name}", trunk=tuple(vlans), native_vlan=native)


def ping(src, dst, vlan=None):
    frame = Ether(src=src, dst=dst)
    if vlan is not None:
        frame = frame / Dot1Q(vlan=vlan)
    return frame / IP(src="198.51.100.1", dst="198.51.100.2") / ICMP()


@pytest.fixture(params=["c", "python"])
def kind(request):
    return request.param


def test_flood_learn_then_forward(kind):
    rig = Rig(kind, [access("p0", 10), access("p1", 10), access("p2", 10), access("p3", 20)])
    out = rig.send(0, ping(H1, BCAST))
    assert sorted(out) == [1, 2], "broadcast floods the VLAN, never back or across VLANs"
    out = rig.send(1, ping(H2, H1))
    assert sorted(out) == [0], "H1 was learned on port 0"
    out = rig.send(0, ping(H1, H2))
    assert sorted(out) == [1]
    assert out[1][0] == bytes(ping(H1, H2))
    before = rig.upcalls()
    for _ in range(5):
        assert sorted(rig.send(0, Ether(src=H1, dst=H2) / IP() / TCP(sport=40000 + _, flags="S"))) == [1]
    assert rig.upcalls() == before, "known hosts: new connections stay in the fast path"


def test_unknown_unicast_floods_without_flow(kind):
    rig = Rig(kind, [access("p0", 10), access("p1", 10), access("p2", 10)])
    assert sorted(rig.send(0, ping(H1, H2))) == [1, 2]
    assert sorted(rig.send(0, ping(H1, H2))) == [1, 2]
    assert rig.upcalls() == 2


def test_vlans_are_isolated(kind):
    rig = Rig(kind, [access("p0", 10), access("p1", 20), access("p2", 10)])
    rig.send(1, ping(H2, BCAST))
    out = rig.send(0, ping(H1, H2))
    assert sorted(out) == [2], "H2 is known only in VLAN 20"


def test_access_to_trunk_tags_and_back(kind):
    rig = Rig(kind, [access("p0", 10), trunk("t", [10, 20]), access("p2", 20)])
    out = rig.send(0, ping(H1, BCAST))
    assert sorted(out) == [1]
    tagged = Ether(out[1][0])
    assert tagged.haslayer(Dot1Q) and tagged[Dot1Q].vlan == 10
    out = rig.send(1, ping(H2, H1, vlan=10))
    assert sorted(out) == [0]
    assert not Ether(out[0][0]).haslayer(Dot1Q), "access ports send untagged"
    assert bytes(Ether(out[0][0])[IP]) == bytes(ping(H2, H1)[IP])
    out = rig.send(1, ping(H3, BCAST, vlan=20))
    assert sorted(out) == [2]


def test_trunk_refuses_unlisted_vlan_and_access_refuses_tags(kind):
    rig = Rig(kind, [access("p0", 10), trunk("t", [10]), access("p2", 10)])
    assert rig.send(1, ping(H2, BCAST, vlan=30)) == {}
    assert rig.send(1, ping(H2, BCAST)) == {}, "no native VLAN: untagged frames on a trunk are dropped"
    assert rig.send(0, ping(H1, BCAST, vlan=10)) == {}, "an access port takes no tagged frames"
    assert rig.stage.drops["vlan_not_allowed"] == 3


def test_flood_with_mixed_ports_tags_once(kind):
    rig = Rig(kind, [access("p0", 10), trunk("t1", [10]), access("p2", 10), trunk("t3", [10])])
    out = rig.send(0, ping(H1, BCAST))
    assert sorted(out) == [1, 2, 3]
    assert Ether(out[1][0])[Dot1Q].vlan == 10 and Ether(out[3][0])[Dot1Q].vlan == 10
    assert not Ether(out[2][0]).haslayer(Dot1Q)
    out = rig.send(1, ping(H2, BCAST, vlan=10))
    assert sorted(out) == [0, 2, 3]
    assert Ether(out[3][0])[Dot1Q].vlan == 10
    assert not Ether(out[0][0]).haslayer(Dot1Q) and not Ether(out[2][0]).haslayer(Dot1Q)


def test_mac_move_redirects_flows(kind):
    rig = Rig(kind, [access("p0", 10), access("p1", 10), access("p2", 10)])
    rig.send(1, ping(H2, BCAST))
    assert sorted(rig.send(0, ping(H1, H2))) == [1]
    rig.send(2, ping(H2, BCAST))                       # H2 now answers from port 2
    assert sorted(rig.send(0, ping(H1, H2))) == [2]
    assert rig.stage.macs.moves == 1


def test_aging_forgets_and_floods_again(kind):
    rig = Rig(kind, [access("p0", 10), access("p1", 10), access("p2", 10)], aging_s=5)
    rig.send(1, ping(H2, BCAST))
    assert sorted(rig.send(0, ping(H1, H2))) == [1]
    rig.now += 6
    rig.stage.refresh_from_flows(rig.dp.flows())
    rig.stage.age(rig.now)
    assert rig.stage.macs.lookup(10, bytes.fromhex("020000000002")) is None
    assert sorted(rig.send(0, ping(H1, H2))) == [1, 2], "an aged destination is unknown again"


def test_fast_path_use_keeps_mac_alive(kind):
    rig = Rig(kind, [access("p0", 10), access("p1", 10)], aging_s=5)
    rig.send(1, ping(H2, BCAST))
    rig.send(0, ping(H1, H2))
    rig.send(1, ping(H2, H1))
    for _ in range(3):
        rig.now += 3
        rig.send(1, ping(H2, H1))                      # fast path only: the stage never sees H2
        rig.stage.refresh_from_flows(rig.dp.flows())
        rig.stage.age(rig.now)
    assert rig.stage.macs.lookup(10, bytes.fromhex("020000000002")) is not None


def test_multicast_source_is_dropped(kind):
    rig = Rig(kind, [access("p0", 10), access("p1", 10)])
    assert rig.send(0, ping("01:00:5e:00:00:01", BCAST)) == {}
    assert rig.stage.drops["bad_source"] == 1
