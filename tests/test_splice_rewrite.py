"""ps_tcp_splice_rewrite (csrc/splice.c) and its twin (pyswitch/refpath/splice.py): hand-computed cases, a checksum
oracle (the incremental checksum equals a full recomputation) and a differential test, every output byte."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from pyswitch import consts, fastpath
from pyswitch.datapath_types import Splice, SpliceStats
from pyswitch.refpath import splice as twin

IMPLS = {"c": fastpath.tcp_splice_rewrite, "py": twin.tcp_splice_rewrite}
CLIENT, VIP = bytes([198, 51, 100, 7]), bytes([203, 0, 113, 20])
SNAT, BACKEND = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 21])
ETH = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
L4 = 14 + 20                    # the TCP header's offset in frames built here
ACK, PSH, SYN = 0x10, 0x08, 0x02


def ones_sum(data: bytes, initial: int = 0) -> int:
    """The folded one's complement sum, word by word: the oracle, independent of both implementations."""
    if len(data) & 1:
        data += b"\0"
    total = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo_sum(ip: bytes, size: int) -> int:
    return ones_sum(ip[12:20] + struct.pack("!BBH", 0, 6, size))


def offsets(frame: bytes) -> tuple[int, int]:
    """(IPv4 header, TCP header) of a frame built here: behind any VLAN tags, past any IP options."""
    l3 = 14
    while frame[l3 - 2:l3] in (b"\x81\x00", b"\x88\xa8"):
        l3 += 4
    return l3, l3 + (frame[l3] & 0xF) * 4


def tcp_checksum(frame: bytes) -> int:
    """The TCP checksum `frame` should carry, computed over the whole segment with its field taken as 0."""
    l3, l4 = offsets(frame)
    seg = bytearray(frame[l4:])
    seg[16:18] = b"\0\0"
    return ~ones_sum(bytes(seg), pseudo_sum(frame[l3:l4], len(seg))) & 0xFFFF


def ip_checksum(frame: bytes) -> int:
    l3, l4 = offsets(frame)
    ip = bytearray(frame[l3:l4])
    ip[10:12] = b"\0\0"
    return ~ones_sum(bytes(ip)) & 0xFFFF


def tcp_field(frame: bytes) -> int:
    return struct.unpack_from("!H", frame, offsets(frame)[1] + 16)[0]


def ip_field(frame: bytes) -> int:
    return struct.unpack_from("!H", frame, offsets(frame)[0] + 10)[0]


def frame(seq=1000, ack=2000, flags=ACK | PSH, options=b"", payload=b"GET / HTTP/1.1\r\n\r\n", doff=None,
          src=CLIENT, dst=VIP, partial=False, proto=6, tags=0, ip_options=b""):
    """An Ethernet/IPv4/TCP frame with correct checksums; `options` padded with EOL to a multiple of 4, `tags`
    802.1Q tags, `ip_options` (a multiple of 4) in the IPv4 header.  `partial`: the TCP field holds the
    pseudo-header's sum instead, as a NEEDS_CSUM frame does."""
    options += b"\0" * (-len(options) % 4)
    tcp_len = 20 + len(options)
    doff = tcp_len // 4 if doff is None else doff
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, seq, ack, doff << 4, flags, 65535, 0, 0) + options + payload
    ihl = 5 + len(ip_options) // 4
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(tcp), 1, 0x4000, 64, proto, 0, src, dst)
    ip += ip_options
    ip = ip[:10] + struct.pack("!H", ~ones_sum(ip) & 0xFFFF) + ip[12:]
    eth = ETH[:12] + b"".join(struct.pack("!HH", 0x8100, 10 + k) for k in range(tags)) + ETH[12:]
    out = bytearray(eth + ip + tcp)
    l4 = len(eth) + len(ip)
    check = pseudo_sum(ip, len(tcp)) if partial else tcp_checksum(bytes(out))
    out[l4 + 16:l4 + 18] = struct.pack("!H", check)
    return bytes(out)


def partial_vnet(csum_start=L4, gso=False):
    gso_type, hdr_len, gso_size = (consts.VNET_GSO_TCPV4, csum_start + 20, 1000) if gso else (0, 0, 0)
    return struct.pack("<BBHHHH", consts.VNET_F_NEEDS_CSUM, gso_type, hdr_len, gso_size, csum_start, 16)


def u32(data: bytes, at: int) -> int:
    return struct.unpack_from("!I", data, at)[0]


def sack(*blocks) -> bytes:
    return struct.pack("!BB", 5, 2 + 8 * len(blocks)) + b"".join(struct.pack("!II", a, b) for a, b in blocks)


def ts(tsval, tsecr) -> bytes:
    return struct.pack("!BBII", 8, 10, tsval, tsecr)


@pytest.fixture(params=sorted(IMPLS))
def rewrite(request):
    return IMPLS[request.param]


def assert_checksums_good(out: bytes):
    assert tcp_field(out) == tcp_checksum(out)
    assert ip_field(out) == ip_checksum(out)


def test_seq_and_ack_wrap_at_2_32(rewrite):
    r = rewrite(frame(seq=0xFFFFFFF0, ack=0xFFFFFFFF), None, Splice(seq_delta=0x20, ack_delta=1))
    assert r.result == consts.SPLICE_OK and r.stats == SpliceStats(rewritten=1)
    assert (u32(r.frame, L4 + 4), u32(r.frame, L4 + 8)) == (0x10, 0)
    assert_checksums_good(r.frame)


def test_negative_delta_is_twos_complement(rewrite):
    r = rewrite(frame(seq=5, ack=7), None, Splice(seq_delta=-10, ack_delta=-(1 << 31)))
    assert (u32(r.frame, L4 + 4), u32(r.frame, L4 + 8)) == (0xFFFFFFFB, 7 + (1 << 31))
    assert_checksums_good(r.frame)


def test_ack_number_without_ack_flag_is_left(rewrite):
    r = rewrite(frame(flags=SYN, ack=1234, options=ts(1, 99)), None,
                Splice(seq_delta=1, ack_delta=1000, tsval_delta=5, tsecr_delta=5, timestamps=True))
    assert u32(r.frame, L4 + 8) == 1234 and u32(r.frame, L4 + 20 + 2) == 6 and u32(r.frame, L4 + 20 + 6) == 99
    assert_checksums_good(r.frame)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_sack_edges_shift_by_the_ack_delta(rewrite, n):
    blocks = [(0xFFFFFF00 + 0x10 * i, 0xFFFFFF08 + 0x10 * i) for i in range(n)]
    r = rewrite(frame(options=b"\x01\x01" + sack(*blocks)), None, Splice(seq_delta=3, ack_delta=0x100))
    assert r.result == consts.SPLICE_OK and r.stats.sack_blocks == n
    edges = [u32(r.frame, L4 + 24 + 4 * k) for k in range(2 * n)]
    assert edges == [(e + 0x100) & 0xFFFFFFFF for block in blocks for e in block]
    assert_checksums_good(r.frame)


@pytest.mark.parametrize("options,ts_at,sack_at", [
    (b"\x01\x01" + ts(10, 20) + b"\x01\x01" + sack((100, 200)), 22, 34),   # Linux's order, aligned
    (sack((100, 200)) + ts(10, 20), 30, 20),                             # SACK first, no NOPs
    (b"\x01" + ts(10, 20) + sack((100, 200)), 21, 31),                   # odd offsets: three words per field
    (b"\x02\x04\x05\xb4" + b"\x01" + b"\x03\x03\x07" + ts(10, 20), 28, None),  # MSS and window scale skipped
    (b"\xfe\x04\xab\xcd" + ts(10, 20), 24, None),                         # an unknown option skipped
])
def test_options_in_any_order(rewrite, options, ts_at, sack_at):
    sp = Splice(seq_delta=7, ack_delta=1 << 20, tsval_delta=-3, tsecr_delta=0x01000000, timestamps=True)
    r = rewrite(frame(options=options), None, sp)
    assert r.result == consts.SPLICE_OK and r.stats.timestamps == 1
    assert (u32(r.frame, L4 + ts_at + 2), u32(r.frame, L4 + ts_at + 6)) == (7, 20 + 0x01000000)
    if sack_at is not None:
        assert (u32(r.frame, L4 + sack_at + 2), u32(r.frame, L4 + sack_at + 6)) == (100 + (1 << 20), 200 + (1 << 20))
    assert_checksums_good(r.frame)


def test_timestamps_left_when_not_both_sides_use_them(rewrite):
    original = frame(options=b"\x01\x01" + ts(10, 20))
    r = rewrite(original, None, Splice(tsval_delta=5, tsecr_delta=5))
    assert r.frame == original and r.stats.timestamps == 0


def test_options_after_eol_are_padding(rewrite):
    r = rewrite(frame(options=b"\x00" + b"\x05\x01\x01\x01"), None, Splice(ack_delta=1))
    assert r.result == consts.SPLICE_OK and r.frame[L4 + 20:L4 + 28] == b"\x00\x05\x01\x01\x01\0\0\0"


@pytest.mark.parametrize("options", [
    b"\x05\x00\x00\x00",                    # length 0
    b"\x08\x01\x00\x00",                    # length 1
    b"\x01\x01\x01" + b"\x05",              # a kind with no room for its length
    b"\x05\x0c" + bytes(10),                # SACK of a block and a half
    b"\x05\x02\x00\x00",                    # SACK of no block
    b"\x08\x09" + bytes(7) + b"\x00",       # a 9-byte timestamp
    b"\x01\x01" + ts(1, 2) + b"\x05\x10" + bytes(4),     # SACK running past the header
])
def test_malformed_options_left_and_counted(rewrite, options):
    original = frame(seq=1, ack=2, options=options)
    r = rewrite(original, None, Splice(dst=BACKEND, seq_delta=10, ack_delta=20, tsval_delta=1, timestamps=True))
    assert r.result == consts.SPLICE_BAD_OPTIONS and r.stats == SpliceStats(bad_options=1)
    assert (u32(r.frame, L4 + 4), u32(r.frame, L4 + 8)) == (11, 22) and r.frame[30:34] == BACKEND
    assert r.frame[L4 + 20:L4 + 20 + len(options)] == original[L4 + 20:L4 + 20 + len(options)]
    assert_checksums_good(r.frame)


@pytest.mark.parametrize("original,counted", [
    (frame(doff=4), "bad_header"),
    (frame(doff=15, payload=b"short"), "bad_header"),
    (frame(proto=17), "not_tcp"),
    (frame()[:L4 + 19], "not_tcp"),
    (b"\x00" * 10, "not_tcp"),
])
def test_unrewritable_frames_are_unchanged_and_counted(rewrite, original, counted):
    r = rewrite(original, None, Splice(src=SNAT, seq_delta=1, ack_delta=1))
    assert r.frame == original and r.stats == SpliceStats(**{counted: 1})


def test_fullnat_addresses_and_ports_with_the_deltas(rewrite):
    sp = Splice(src=SNAT, dst=BACKEND, sport=50001, dport=8080, seq_delta=0x7FFFFFFF, ack_delta=0x80000001,
                tsval_delta=1, tsecr_delta=2, timestamps=True)
    r = rewrite(frame(options=b"\x01\x01" + ts(0xFFFFFFFF, 0xFFFFFFFE) + b"\x01\x01" + sack((1, 2))), None, sp)
    assert r.frame[26:34] == SNAT + BACKEND and struct.unpack_from("!HH", r.frame, L4) == (50001, 8080)
    assert u32(r.frame, L4 + 24) == 0 and u32(r.frame, L4 + 28) == 0
    assert_checksums_good(r.frame)


def test_partial_checksum_keeps_the_pseudo_header_sum(rewrite):
    """NEEDS_CSUM: the field holds the pseudo-header sum, which only the addresses change; the kernel sums the
    rewritten header words with the data later."""
    sp = Splice(src=SNAT, dst=BACKEND, sport=50001, seq_delta=99, ack_delta=5, tsval_delta=4, timestamps=True)
    original = frame(options=b"\x01" + ts(10, 20) + sack((1, 2)), partial=True)
    r = rewrite(original, partial_vnet(), sp)
    assert r.result == consts.SPLICE_OK and u32(r.frame, L4 + 4) == 1099
    tcp_len = len(r.frame) - L4
    assert struct.unpack_from("!H", r.frame, L4 + 16)[0] == pseudo_sum(r.frame[14:34], tcp_len)
    assert struct.unpack_from("!H", r.frame, 24)[0] == ip_checksum(r.frame)


def test_csum_start_elsewhere_is_full_mode(rewrite):
    r = rewrite(frame(), partial_vnet(csum_start=L4 + 2), Splice(seq_delta=1))
    assert_checksums_good(r.frame)


# Generated segments: options from the pieces TCP stacks send and a few damaged ones, any order.

OPTION_PIECES = st.one_of(
    st.just(b"\x01"), st.just(b"\x00"), st.just(b"\x02\x04\x05\xb4"), st.just(b"\x03\x03\x07"), st.just(b"\x04\x02"),
    st.builds(ts, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), min_size=1, max_size=4)
    .map(lambda blocks: sack(*blocks)),
    st.binary(min_size=1, max_size=6),
)
DELTAS = st.integers(0, 2**32 - 1) | st.sampled_from([0, 1, 2**31, 2**32 - 1])


@st.composite
def segments(draw):
    options = b"".join(draw(st.lists(OPTION_PIECES, max_size=8)))[:40]
    mode = draw(st.sampled_from(["full", "partial", "gso"]))
    original = frame(seq=draw(DELTAS), ack=draw(DELTAS), flags=draw(st.sampled_from([ACK, ACK | PSH, SYN, 0x11])),
                     options=options, payload=draw(st.binary(max_size=40)), partial=mode != "full",
                     tags=draw(st.integers(0, 2)), ip_options=b"\x01" * 4 * draw(st.integers(0, 2)))
    vnet = None if mode == "full" else partial_vnet(offsets(original)[1], gso=mode == "gso")
    addr = st.none() | st.binary(min_size=4, max_size=4)
    port = st.none() | st.integers(0, 65535)
    sp = Splice(draw(addr), draw(addr), draw(port), draw(port), draw(DELTAS), draw(DELTAS), draw(DELTAS),
                draw(DELTAS), draw(st.booleans()))
    return original, vnet, sp


@settings(max_examples=400, deadline=None)
@given(segments())
def test_c_and_twin_agree_on_every_byte(case):
    original, vnet, sp = case
    assert fastpath.tcp_splice_rewrite(original, vnet, sp) == twin.tcp_splice_rewrite(original, vnet, sp)


@settings(max_examples=300, deadline=None)
@given(segments())
def test_incremental_checksum_equals_recomputation(case):
    original, vnet, sp = case
    r = fastpath.tcp_splice_rewrite(original, vnet, sp)
    l3, l4 = offsets(r.frame)
    if vnet is None:
        assert tcp_field(r.frame) == tcp_checksum(r.frame)
    else:
        assert tcp_field(r.frame) == pseudo_sum(r.frame[l3:l4], len(r.frame) - l4)
    assert ip_field(r.frame) == ip_checksum(r.frame)


@pytest.mark.parametrize("tags, ip_options", [(1, b""), (2, b""), (0, b"\x01" * 8), (2, b"\x01" * 4)])
def test_tags_and_ip_options_move_the_tcp_header(rewrite, tags, ip_options):
    original = frame(seq=0xFFFFFFFF, ack=1, options=b"\x01" + ts(10, 20) + sack((1, 2)), tags=tags,
                     ip_options=ip_options)
    r = rewrite(original, None, Splice(dst=BACKEND, seq_delta=2, ack_delta=3, tsval_delta=4, timestamps=True))
    l3, l4 = offsets(r.frame)
    assert r.result == consts.SPLICE_OK and r.frame[l3 + 16:l3 + 20] == BACKEND
    assert (u32(r.frame, l4 + 4), u32(r.frame, l4 + 8), u32(r.frame, l4 + 23), u32(r.frame, l4 + 33)) == (1, 4, 14, 4)
    assert_checksums_good(r.frame)


@pytest.mark.parametrize("splice", [Splice(src=b"\x01\x02\x03"), Splice(dst=bytes(5))])
def test_an_address_not_of_4_bytes_is_refused_alike(rewrite, splice):
    with pytest.raises(ValueError, match="an IPv4 address is 4 bytes"):
        rewrite(frame(), None, splice)


def test_a_vnet_header_not_of_10_bytes_is_refused_alike(rewrite):
    with pytest.raises(ValueError, match="a vnet header is 10 bytes"):
        rewrite(frame(), bytes(9), Splice(seq_delta=1))


# ps_tcp_splice_check: what LB asks of a spliced connection's segment before it forwards it (conntrack.c).

CHECKS = {"c": fastpath.tcp_splice_check, "py": twin.tcp_splice_check}


@pytest.mark.parametrize("impl", sorted(CHECKS))
@pytest.mark.parametrize("original, result", [
    (frame(options=b"\x01\x01" + ts(1, 2) + sack((3, 4))), consts.SPLICE_OK),
    (frame(options=b"\x05\x0c" + bytes(10)), consts.SPLICE_BAD_OPTIONS),
    (frame(doff=4), consts.SPLICE_BAD_HEADER),
    (frame(proto=17), consts.SPLICE_NOT_TCP),
    (frame()[:L4 + 19], consts.SPLICE_NOT_TCP),
])
def test_check_reads_what_the_rewrite_would_answer(impl, original, result):
    data = bytearray(original)
    assert CHECKS[impl](data) == result
    assert data == original, "the check only reads"


@settings(max_examples=300, deadline=None)
@given(segments())
def test_check_agrees_with_the_rewrite_c_and_twin(case):
    original, vnet, sp = case
    expected = twin.tcp_splice_rewrite(original, vnet, sp).result
    assert fastpath.tcp_splice_check(original) == twin.tcp_splice_check(original) == expected
