"""FRAME-SPEC (pyswitch/framespec.py): the frames it builds parse to the key it describes, and every mistake is
refused with a message that names the key."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from pyswitch import consts
from pyswitch.flowkey import FlowKey
from pyswitch.framespec import FrameSpecError, build, parse
from pyswitch.refpath.parse import parse_frame


def key_of(spec):
    frame = build(spec)
    error, key, _l3, _l4 = parse_frame(frame, 0, 0, False)
    assert error == 0, consts.PARSE_ERROR_NAMES[error]
    return FlowKey.unpack(key), frame


def test_a_tagged_tcp_frame_has_every_field_it_names():
    key, frame = key_of("eth_src=02:00:00:00:00:11,eth_dst=02:00:00:00:00:12,vlan=10,ip_src=198.51.100.11,"
                        "ip_dst=198.51.100.12,tcp_dst=80,tcp_src=1234,tcp_flags=syn+ack,ttl=9")
    assert key.eth_src == bytes.fromhex("020000000011") and key.eth_dst == bytes.fromhex("020000000012")
    assert key.vlan_tci == consts.VLAN_PRESENT | 10
    assert (key.nw_proto, key.tp_src, key.tp_dst, key.nw_ttl) == (6, 1234, 80, 9)
    assert key.tcp_flags == 0x12
    # scapy agrees the frame is whole: its checksums verify
    pkt = Ether(frame)
    assert pkt[Dot1Q].vlan == 10
    ip_sum, tcp_sum = pkt[IP].chksum, pkt[TCP].chksum
    del pkt[IP].chksum, pkt[TCP].chksum
    again = Ether(bytes(pkt))
    assert (again[IP].chksum, again[TCP].chksum) == (ip_sum, tcp_sum)


def test_shorthands_and_defaults():
    key, frame = key_of("icmp")
    assert key.nw_proto == 1 and key.eth_dst == b"\xff" * 6 and Ether(frame)[ICMP].type == 8
    key, _ = key_of("udp,ip_dst=203.0.113.5")
    assert (key.nw_proto, key.tp_dst, key.nw_dst[:4]) == (17, 53, bytes([203, 0, 113, 5]))
    key, frame = key_of("arp,eth_src=02:00:00:00:00:11,ip_src=198.51.100.11,ip_dst=198.51.100.1")
    assert key.eth_type == consts.ETH_TYPE_ARP and Ether(frame)[ARP].pdst == "198.51.100.1"
    assert Ether(frame)[ARP].op == 1
    assert Ether(build("arp,arp_op=reply,eth_dst=02:00:00:00:00:12"))[ARP].op == 2
    key, frame = key_of("eth_dst=02:00:00:00:00:12")
    assert key.eth_type == consts.ETH_TYPE_IPV4 and len(frame) == 60        # padded as a NIC would
    assert UDP in Ether(build("udp_src=7"))


@pytest.mark.parametrize("spec, named", [
    ("", "empty"),
    ("vlan=5000", "vlan"),
    ("vlan=ten", "vlan"),
    ("eth_src=02:00:00:00:00", "eth_src"),
    ("eth_dst=", "eth_dst"),
    ("ip_dst=198.51.100.256", "ip_dst"),
    ("tcp_dst=70000", "tcp_dst"),
    ("tcp_dst=80,udp_dst=53", "udp_dst"),
    ("icmp,tcp", "tcp"),
    ("tcp_flags=syn+urg", "tcp_flags"),
    ("colour=blue", "colour"),
    ("ping", "ping"),
    ("vlan=10,vlan=20", "vlan"),
    ("arp,ttl=3", "ttl"),
    ("arp_op=reply", "arp_op"),
    ("arp,arp_op=maybe", "arp_op"),
    ("vlan_pcp=3", "vlan_pcp"),
    ("payload=99999", "payload"),
    ("icmp,,tcp", "empty item"),
])
def test_mistakes_name_the_key(spec, named):
    with pytest.raises(FrameSpecError) as info:
        build(spec)
    assert str(info.value).startswith(named) or named in str(info.value), str(info.value)


def test_parse_keeps_the_items_in_order():
    assert list(parse("tcp, tcp_dst=81 ,eth_dst=02:00:00:00:00:12")) == ["tcp", "tcp_dst", "eth_dst"]
    with pytest.raises(FrameSpecError, match="characters"):
        parse("icmp," * 300)
