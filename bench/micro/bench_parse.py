"""parse: one frame to its flow key, C (ps_parse) against the twin (refpath/parse.py)."""
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from pyswitch import consts

ETH = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
FRAMES = {   # operation -> frame; the three kinds of frame a switch sees most
    "parse, TCP/IPv4": bytes(ETH / IP(src="198.51.100.1", dst="198.51.100.2") / TCP(sport=40000, dport=80,
                                                                                       flags="S")),
    "parse, UDP/IPv4 in a VLAN tag": bytes(ETH / Dot1Q(vlan=10) / IP(src="198.51.100.1", dst="203.0.113.9")
                                           / UDP(sport=5353, dport=53) / Raw(b"q" * 18)),
    "parse, TCP/IPv6": bytes(ETH / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40000, dport=443,
                                                                                      flags="A")),
}


@pytest.mark.parametrize("operation", list(FRAMES))
def test_parse(impl, timed, operation):
    result = timed(operation, impl.parse, FRAMES[operation], 1)
    assert result.error == consts.PE_OK and result.l4_ofs > 0
