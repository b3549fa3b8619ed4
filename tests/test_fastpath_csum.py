"""ps_csum (RFC 1071) and ps_csum_update16/32 (RFC 1624 eqn 3)."""
import struct

from hypothesis import given, strategies as st
from scapy.layers.inet import IP, TCP, UDP

from pyswitch.fastpath import csum, csum_update16, csum_update32


def reference_csum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 written the slow, obvious way."""
    if len(data) % 2:
        data += b"\x00"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_rfc1071_example():
    # RFC 1071 section 3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2, so the checksum is 220d.
    assert csum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_odd_length_pads_with_zero():
    assert csum(b"\x01") == (~0x0100 & 0xFFFF)
    assert csum(bytes.fromhex("0001f203f4f5f6f7ab")) == reference_csum(bytes.fromhex("0001f203f4f5f6f7ab"))


def test_empty_and_initial():
    assert csum(b"") == 0xFFFF
    assert csum(b"", 0x1234) == (~0x1234 & 0xFFFF)
    assert csum(b"\xff\xff", 1) == (~1 & 0xFFFF)


def test_ipv4_header_checksums_of_scapy_packets():
    for pkt in (IP(src="198.51.100.1", dst="198.51.100.2") / TCP(),
                IP(src="192.0.2.7", dst="203.0.113.200", ttl=3, options=b"\x01\x01\x01\x00") / UDP(),
                IP(src="198.51.100.250", dst="198.51.100.9", tos=0xB8, id=0xBEEF, flags="DF")):
        raw = bytes(pkt)
        ihl = (raw[0] & 0x0F) * 4
        expected = struct.unpack_from("!H", raw, 10)[0]
        zeroed = raw[:10] + b"\x00\x00" + raw[12:ihl]
        assert csum(zeroed) == expected
        assert csum(raw[:ihl]) == 0        # a correct header sums to all ones


@given(st.binary(max_size=300), st.integers(0, 0xFFFFFFFF))
def test_matches_reference(data, initial):
    assert csum(data, initial) == reference_csum(data, initial)


@given(st.binary(min_size=20, max_size=20).map(bytearray), st.integers(0, 9), st.integers(0, 0xFFFF))
def test_update16_equals_recomputation(header, word, new):
    header[10:12] = b"\x00\x00"
    old = struct.unpack_from("!H", header, word * 2)[0]
    if word == 5:
        return                              # the checksum field itself
    check = csum(bytes(header))
    struct.pack_into("!H", header, word * 2, new)
    full = csum(bytes(header))
    updated = csum_update16(check, old, new)
    # One's complement has two zeros: eqn 3 never yields 0xffff -> 0x0000 confusion for a nonzero sum.
    assert updated == full or {updated, full} == {0, 0xFFFF}


@given(st.binary(min_size=20, max_size=20).map(bytearray), st.integers(0, 0xFFFFFFFF))
def test_update32_equals_recomputation(header, new):
    header[10:12] = b"\x00\x00"
    old = struct.unpack_from("!I", header, 12)[0]
    check = csum(bytes(header))
    struct.pack_into("!I", header, 12, new)
    full = csum(bytes(header))
    updated = csum_update32(check, old, new)
    assert updated == full or {updated, full} == {0, 0xFFFF}


def test_update_rewrites_ip_source_like_a_nat():
    pkt = bytes(IP(src="198.51.100.1", dst="198.51.100.2") / UDP())
    check = struct.unpack_from("!H", pkt, 10)[0]
    new_src = bytes([203, 0, 113, 5])
    rewritten = bytes(IP(src="203.0.113.5", dst="198.51.100.2") / UDP())
    new_check = csum_update32(check, struct.unpack_from("!I", pkt, 12)[0], int.from_bytes(new_src, "big"))
    assert new_check == struct.unpack_from("!H", rewritten, 10)[0]
