"""Flows in words (pyswitch/flow_explain.py): only the masked fields, ports and VIPs by name, VLANs as the L2 stage
classifies them, every action in order."""
import ipaddress

from pyswitch import actions as A
from pyswitch import consts
from pyswitch.config import PortConfig
from pyswitch.flow_explain import Names, explain_actions, explain_flow, explain_match
from pyswitch.flowkey import FlowKey

MAC1, MAC2 = bytes.fromhex("020000000011"), bytes.fromhex("020000000012")
NAMES = Names(ports={0: "p1", 1: "up"}, vips={7: "web"},
              configs={0: PortConfig(name="p1", type="afpacket", device="psw-a", vlan=10),
                       1: PortConfig(name="up", type="afpacket", device="psw-b", trunk=(10, 20))},
              vip_addresses={ipaddress.IPv4Address("203.0.113.10").packed: "web"})


def test_an_l2_flow_says_port_vlan_macs_and_output():
    key = FlowKey(in_port=1, vlan_tci=consts.VLAN_PRESENT | 20, eth_src=MAC1, eth_dst=MAC2).pack()
    mask = FlowKey.mask_of("in_port", "vlan_tci", "eth_src", "eth_dst", vlan_vid_only=True)
    words = explain_flow(key, mask, [A.pop_vlan(), A.output(0)], NAMES)
    assert words == ("from up VLAN 20, 02:00:00:00:00:11 -> 02:00:00:00:00:12: "
                     "remove the VLAN tag, then output to p1")


def test_unmasked_fields_are_not_said_and_prefixes_keep_their_length():
    key = FlowKey(eth_type=consts.ETH_TYPE_IPV4, nw_proto=6, eth_src=MAC1,
                  nw_dst=bytes([198, 51, 100, 0]) + bytes(12), tp_dst=443).pack()
    mask = FlowKey(eth_type=0xFFFF, nw_proto=0xFF, nw_dst=b"\xff\xff\xff\x00" + bytes(12), tp_dst=0xFFFF).pack()
    assert explain_match(key, mask, NAMES) == "IPv4 TCP, to 198.51.100.0/24:443"
    assert explain_match(key, bytes(consts.KEY_SIZE), NAMES) == "every packet"


def test_vips_and_actions_by_name():
    key = FlowKey(in_port=0, eth_type=consts.ETH_TYPE_IPV4, nw_proto=6,
                  nw_dst=ipaddress.IPv4Address("203.0.113.10").packed + bytes(12), tp_dst=80).pack()
    mask = FlowKey.mask_of("in_port", "eth_type", "nw_proto", "nw_dst", "tp_dst")
    assert explain_match(key, mask, NAMES) == "from p1, IPv4 TCP, to VIP web 203.0.113.10:80"   # VLAN not matched
    assert explain_actions([A.lb(7)], NAMES).startswith("load-balance (VIP web")
    assert explain_actions([], NAMES) == "drop"
    assert explain_actions([A.push_vlan(10), A.flood([0, 1]), A.upcall(1), A.route()], NAMES) == (
        "tag VLAN 10, then flood to p1,up (never back to the input), then send to the slow path (ARP), "
        "then route (longest-prefix match, TTL - 1, next hop's MACs)")
    assert explain_actions([A.set_ipv4_dst("192.0.2.11"), A.set_tp_dst(8080), A.output(5)], NAMES) == (
        "set destination IP 192.0.2.11, then set destination port 8080, then output to port #5")
