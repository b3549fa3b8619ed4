"""The twin's checksums: RFC 1071 values, scapy's IPv4/TCP checksums, incremental == full (RFC 1624)."""
import struct

from hypothesis import given, strategies as st
from scapy.layers.inet import IP, TCP

from pyswitch.refpath import csum, csum_update16, csum_update32


def test_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2 (folded).
    assert csum(bytes.fromhex("0001f203f4f5f6f7")) == ~0xDDF2 & 0xFFFF


def test_edge_values():
    assert csum(b"") == 0xFFFF
    assert csum(b"\x00\x00") == 0xFFFF
    assert csum(b"\xff\xff") == 0x0000          # a non-zero sum folds to 0xffff, never to 0
    assert csum(b"\x01") == ~0x0100 & 0xFFFF    # an odd byte is the high half of a word
    assert csum(b"", initial=0x1FFFE) == ~0xFFFF & 0xFFFF
    assert csum(b"\x12\x34", initial=0x0001) == ~0x1235 & 0xFFFF


def test_scapy_ipv4_header_checksum():
    ip = IP(bytes(IP(src="192.0.2.1", dst="198.51.100.2", ttl=9, options=b"\x94\x04\x00\x00") / b"x"))
    hdr = bytearray(bytes(ip)[:ip.ihl * 4])
    struct.pack_into("!H", hdr, 10, 0)
    assert csum(hdr) == ip.chksum
    assert csum(bytes(ip)[:ip.ihl * 4]) == 0    # a correct header sums to zero


def test_scapy_tcp_checksum_with_pseudo_header():
    pkt = IP(bytes(IP(src="192.0.2.1", dst="203.0.113.5") / TCP(sport=1000, dport=22, flags="S") / b"hello"))
    seg = bytearray(bytes(pkt[TCP]))
    struct.pack_into("!H", seg, 16, 0)
    pseudo = bytes([192, 0, 2, 1, 203, 0, 113, 5, 0, 6]) + struct.pack("!H", len(seg))
    partial = sum(struct.unpack("!6H", pseudo))     # the pseudo header as a 32-bit partial sum
    assert csum(seg, initial=partial) == pkt[TCP].chksum
    assert csum(pseudo + seg) == pkt[TCP].chksum


words = st.integers(0, 0xFFFF)


@given(st.binary(min_size=2, max_size=64).map(lambda b: b[:len(b) & ~1]), st.data())
def test_update16_equals_recomputation(data, draw):
    offset = draw.draw(st.integers(0, len(data) // 2 - 1)) * 2
    new = draw.draw(words)
    old = struct.unpack_from("!H", data, offset)[0]
    changed = bytearray(data)
    struct.pack_into("!H", changed, offset, new)
    full = csum(changed)
    inc = csum_update16(csum(data), old, new)
    # One's complement has two zeros; RFC 1624 eqn 3 may give the other one when the sum is all ones.
    assert inc == full or {inc, full} == {0, 0xFFFF}


@given(st.binary(min_size=4, max_size=64).map(lambda b: b[:len(b) & ~1]), st.data())
def test_update32_equals_recomputation(data, draw):
    offset = draw.draw(st.integers(0, len(data) // 2 - 2)) * 2
    new = draw.draw(st.integers(0, 0xFFFFFFFF))
    old = struct.unpack_from("!I", data, offset)[0]
    changed = bytearray(data)
    struct.pack_into("!I", changed, offset, new)
    full = csum(changed)
    inc = csum_update32(csum(data), old, new)
    assert inc == full or {inc, full} == {0, 0xFFFF}
    assert inc == csum_update16(csum_update16(csum(data), old >> 16, new >> 16), old & 0xFFFF, new & 0xFFFF)


@given(st.binary(max_size=200), st.integers(0, 0xFFFFFFFF))
def test_csum_matches_wordwise_definition(data, initial):
    padded = data + b"\x00" * (len(data) & 1)
    total = initial + sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert csum(data, initial) == ~total & 0xFFFF
