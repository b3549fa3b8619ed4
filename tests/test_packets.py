"""Frames the switch originates decode as the real thing (scapy) with valid checksums."""
import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether

from pyswitch.pipeline import packets as pk

MAC = bytes.fromhex("025000000a01")
HOST = bytes.fromhex("020000000011")
SWITCH_IP, HOST_IP = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 11])


def test_arp_reply():
    frame = pk.ethernet(HOST, MAC, 0x0806, pk.arp(pk.ARP_REPLY, MAC, SWITCH_IP, HOST, HOST_IP))
    p = Ether(frame)
    assert p[ARP].op == 2 and p[ARP].hwsrc == "02:50:00:00:0a:01" and p[ARP].psrc == "198.51.100.1"
    assert p[ARP].pdst == "198.51.100.11" and p.dst == "02:00:00:00:00:11"


def test_echo_reply_checksums():
    request = bytes(IP(src="198.51.100.11", dst="198.51.100.1") / ICMP(id=7, seq=3) / (b"abc" * 10))
    body = request[20:]
    packet = pk.ipv4(SWITCH_IP, HOST_IP, pk.IP_PROTO_ICMP, pk.icmp(pk.ICMP_ECHO_REPLY, 0, body[4:]))
    p = IP(packet)
    assert p[ICMP].type == 0 and p[ICMP].id == 7 and p[ICMP].seq == 3 and bytes(p[ICMP].payload) == b"abc" * 10
    rebuilt = IP(packet)
    del rebuilt.chksum
    del rebuilt[ICMP].chksum
    rebuilt = IP(bytes(rebuilt))
    assert rebuilt.chksum == p.chksum and rebuilt[ICMP].chksum == p[ICMP].chksum


def test_time_exceeded_quotes_the_offending_packet():
    offending = bytes(IP(src="198.51.100.11", dst="192.0.2.11", ttl=1) / ICMP() / (b"x" * 1000))
    packet = pk.ipv4(SWITCH_IP, HOST_IP, pk.IP_PROTO_ICMP, pk.icmp_error(pk.ICMP_TIME_EXCEEDED, 0, offending))
    assert len(packet) <= 576, "RFC 1812: an ICMP error fits in 576 bytes"
    p = IP(packet)
    assert p[ICMP].type == 11 and p[ICMP].code == 0
    quoted = packet[20 + 8:]
    assert quoted == offending[:len(quoted)] and len(quoted) == 576 - 28


def test_udp_checksum_and_fields():
    src, dst = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    datagram = pk.udp(src, dst, 8848, 8848, b"sync")
    parsed = IP(bytes(pk.ipv4(src, dst, pk.IP_PROTO_UDP, datagram)))
    assert (parsed[UDP].sport, parsed[UDP].dport, bytes(parsed[UDP].payload)) == (8848, 8848, b"sync")
    del parsed[UDP].chksum
    assert bytes(IP(bytes(parsed))[UDP])[6:8] == datagram[6:8], "scapy computes the same checksum"
    assert pk.udp_fields(datagram + b"pad") == (8848, 8848, b"sync")
    with pytest.raises(ValueError):
        pk.udp_fields(datagram[:7])
