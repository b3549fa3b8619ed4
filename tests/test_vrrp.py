"""VRRPv3 (pyswitch.ha): advertisements against scapy, every reason to reject one, and the state machine on a
fake clock, alone and as two routers that hear each other."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.vrrp import VRRPv3

from pyswitch.ha import vrrp
from pyswitch.ha.machine import BecomeBackup, BecomeMaster, SendAdvert, Vrrp
from pyswitch.ha.vrrp import Advert, VrrpError

SRC = bytes([10, 0, 0, 1])
PEER = bytes([10, 0, 0, 2])
VIPS = (bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))


def ip(text):
    return bytes(int(x) for x in text.split("."))


def ones_sum_check(data):
    """RFC 1071 written out word by word, independent of pyswitch's csum: the value for the checksum field."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def with_checksum(message, src=SRC, dst=vrrp.GROUP_ADDRESS):
    """`message` with a correct VRRP checksum, whatever its fields say."""
    message = bytearray(message)
    message[6:8] = b"\0\0"
    pseudo = src + dst + bytes([0, 112]) + len(message).to_bytes(2, "big")
    message[6:8] = ones_sum_check(pseudo + bytes(message)).to_bytes(2, "big")
    return bytes(message)


def raw_message(first=0x31, group=51, priority=150, count=1, interval=100, addresses=VIPS[:1]):
    return with_checksum(bytes([first, group, priority, count]) + interval.to_bytes(2, "big") + b"\0\0"
                         + b"".join(addresses))


def ip_header(payload_len, src=SRC, dst=vrrp.GROUP_ADDRESS, ttl=255, proto=112, first=0x45, frag=0):
    header = bytearray(bytes([first, 0xC0]) + (20 + payload_len).to_bytes(2, "big") + b"\0\0"
                       + frag.to_bytes(2, "big") + bytes([ttl, proto, 0, 0]) + src + dst)
    header[10:12] = ones_sum_check(bytes(header)).to_bytes(2, "big")
    return bytes(header)


ADVERT = Advert(group=51, priority=150, interval_cs=10, addresses=VIPS)


# --- constants and small helpers ---

def test_constants():
    assert vrrp.IP_PROTO_VRRP == 112 and vrrp.TTL == 255 and vrrp.VERSION == 3 and vrrp.TYPE_ADVERTISEMENT == 1
    assert vrrp.GROUP_ADDRESS == ip("224.0.0.18")
    # RFC 1112 6.4: 01:00:5e followed by the low 23 bits of the group address.
    assert vrrp.GROUP_MAC == bytes([1, 0, 0x5E]) + bytes([vrrp.GROUP_ADDRESS[1] & 0x7F]) + vrrp.GROUP_ADDRESS[2:]
    assert vrrp.MAX_INTERVAL_CS == 4095
    assert issubclass(VrrpError, ValueError)


def test_virtual_mac():
    assert vrrp.virtual_mac(1) == bytes.fromhex("00005e000101")
    assert vrrp.virtual_mac(51) == bytes.fromhex("00005e000133")
    assert vrrp.virtual_mac(255) == bytes.fromhex("00005e0001ff")
    for bad in (0, 256, -1):
        with pytest.raises(ValueError):
            vrrp.virtual_mac(bad)


@pytest.mark.parametrize("seconds, cs", [
    (1.0, 100), (0.1, 10), (1.234, 123), (1.236, 124), (1.15, 115), (0.01, 1), (0.004, 1), (0.0, 1), (-3.0, 1),
    (40.95, 4095), (41.0, 4095), (1e9, 4095), (math.inf, 4095), (-math.inf, 1),
])
def test_interval_cs(seconds, cs):
    assert vrrp.interval_cs(seconds) == cs


def test_interval_cs_nan():
    with pytest.raises(ValueError):
        vrrp.interval_cs(math.nan)


@pytest.mark.parametrize("fields", [
    dict(group=0), dict(group=256), dict(priority=-1), dict(priority=256), dict(interval_cs=0),
    dict(interval_cs=4096), dict(addresses=()), dict(addresses=(b"\1\2\3",)), dict(addresses=(b"\1\2\3\4\5",)),
    dict(addresses=tuple(bytes([10, 0, i // 256, i % 256]) for i in range(256))),
])
def test_advert_fields_out_of_range(fields):
    with pytest.raises(ValueError):
        vrrp.encode(Advert(**{**dict(group=1, priority=100, interval_cs=100, addresses=VIPS), **fields}), SRC)


def test_advert_keeps_addresses_as_tuple():
    advert = Advert(group=1, priority=100, interval_cs=100, addresses=list(VIPS))
    assert advert.addresses == VIPS and advert == Advert(1, 100, 100, VIPS)
    assert hash(advert) == hash(Advert(1, 100, 100, VIPS))


def test_encode_rejects_bad_addresses():
    with pytest.raises(ValueError):
        vrrp.encode(ADVERT, b"\1\2\3")
    with pytest.raises(ValueError):
        vrrp.encode(ADVERT, SRC, b"\1\2\3\4\5")
    with pytest.raises(ValueError):
        vrrp.decode(vrrp.encode(ADVERT, SRC), SRC + b"\0")


# --- encoding, against scapy ---

def scapy_packet(src="10.0.0.1", dst="224.0.0.18", vrid=51, priority=150, adv=10, addrs=("192.0.2.1", "192.0.2.2")):
    return IP(src=src, dst=dst, ttl=255, proto=112) / VRRPv3(vrid=vrid, priority=priority, ipcount=len(addrs),
                                                           adv=adv, addrlist=list(addrs))


def test_encode_layout():
    message = vrrp.encode(ADVERT, SRC)
    assert message[:6] == bytes([0x31, 51, 150, 2, 0, 10])
    assert message[8:] == b"".join(VIPS)
    assert message == with_checksum(message)        # the checksum field holds what an independent sum says


def test_encode_matches_scapy():
    assert vrrp.encode(ADVERT, SRC) == bytes(scapy_packet())[20:]
    # A unicast destination changes the checksum through the pseudo-header, and scapy agrees.
    assert vrrp.encode(ADVERT, SRC, PEER) == bytes(scapy_packet(dst="10.0.0.2"))[20:]


def test_parse_scapy_packet():
    src, advert = vrrp.parse_ip_packet(bytes(scapy_packet()))
    assert src == SRC
    assert advert == Advert(group=51, priority=150, interval_cs=10, addresses=VIPS)


def test_ip_packet_as_scapy_sees_it():
    packet = vrrp.ip_packet(ADVERT, SRC)
    parsed = IP(packet)
    assert (parsed.version, parsed.ihl, parsed.tos, parsed.len, parsed.id) == (4, 5, 0xC0, len(packet), 0)
    assert (parsed.flags.value, parsed.frag, parsed.ttl, parsed.proto) == (0, 0, 255, 112)
    assert (parsed.src, parsed.dst) == ("10.0.0.1", "224.0.0.18")
    v = parsed[VRRPv3]
    assert (v.version, v.type, v.vrid, v.priority, v.ipcount, v.res, v.adv) == (3, 1, 51, 150, 2, 0, 10)
    assert v.addrlist == ["192.0.2.1", "192.0.2.2"]
    # Both checksums as scapy computes them: rebuild without them and compare.
    rebuilt = parsed.copy()
    del rebuilt.chksum
    del rebuilt[VRRPv3].chksum
    assert bytes(rebuilt) == packet
    assert parsed.chksum == IP(bytes(rebuilt)).chksum and v.chksum == IP(bytes(rebuilt))[VRRPv3].chksum


def test_ip_packet_unicast():
    packet = vrrp.ip_packet(ADVERT, SRC, PEER)
    assert IP(packet).dst == "10.0.0.2"
    assert vrrp.parse_ip_packet(packet, unicast_ok=True) == (SRC, ADVERT)
    with pytest.raises(VrrpError, match="224.0.0.18"):
        vrrp.parse_ip_packet(packet)


def test_parse_cuts_ethernet_padding():
    # A 36-byte packet is padded to 46 bytes in a minimum Ethernet frame: the IP total length says where it ends.
    packet = vrrp.ip_packet(Advert(1, 100, 100, VIPS[:1]), SRC)
    assert vrrp.parse_ip_packet(packet + b"\xaa" * (46 - len(packet))) == (SRC, Advert(1, 100, 100, VIPS[:1]))


def test_parse_skips_ip_options():
    message = vrrp.encode(ADVERT, SRC)
    header = bytearray(ip_header(len(message) + 4, first=0x46)[:20] + b"\x01\x01\x01\x00")    # NOPs, EOL
    header[10:12] = b"\0\0"
    header[10:12] = ones_sum_check(bytes(header)).to_bytes(2, "big")
    assert vrrp.parse_ip_packet(bytes(header) + message) == (SRC, ADVERT)


def test_checksum_uses_real_addresses():
    # The same message from another source, or to another destination, fails: the pseudo-header differs.
    message = vrrp.encode(ADVERT, SRC)
    assert vrrp.decode(message, SRC) == ADVERT
    with pytest.raises(VrrpError, match="checksum"):
        vrrp.decode(message, PEER)
    with pytest.raises(VrrpError, match="checksum"):
        vrrp.decode(message, SRC, PEER)
    with pytest.raises(VrrpError, match="checksum"):
        vrrp.parse_ip_packet(ip_header(len(message), src=PEER) + message)


def test_trailing_bytes_are_ignored_but_summed():
    message = with_checksum(vrrp.encode(ADVERT, SRC) + b"\x01\x02\x03")
    assert vrrp.decode(message, SRC) == ADVERT
    assert vrrp.parse_ip_packet(ip_header(len(message)) + message) == (SRC, ADVERT)
    with pytest.raises(VrrpError, match="checksum"):
        vrrp.decode(message[:-1] + b"\x04", SRC)


def test_reserved_bits_are_ignored():
    assert vrrp.decode(raw_message(interval=0xF000 | 100), SRC).interval_cs == 100


# --- every reason to reject ---

@pytest.mark.parametrize("message, why", [
    (b"", "shorter"),
    (raw_message()[:7], "shorter"),
    (raw_message(first=0x21), "version 2"),
    (raw_message(first=0x41), "version 4"),
    (raw_message(first=0x32), "type 2"),
    (raw_message(first=0x30), "type 0"),
    (raw_message(group=0), "VRID 0"),
    (raw_message(interval=0), "interval of 0"),
    (raw_message(interval=0xF000), "interval of 0"),
    (raw_message(count=0, addresses=()), "no address"),
    (raw_message(count=0), "no address"),
    (raw_message(count=2), "too short"),
    (raw_message(count=3, addresses=VIPS), "too short"),
    (raw_message()[:-1], "too short"),
    (vrrp.encode(ADVERT, SRC)[:6] + b"\0\0" + vrrp.encode(ADVERT, SRC)[8:], "checksum"),
    (vrrp.encode(ADVERT, SRC)[:-1] + b"\x03", "checksum"),
])
def test_decode_rejects(message, why):
    with pytest.raises(VrrpError, match=why):
        vrrp.decode(message, SRC)


def test_every_message_error_is_a_valid_checksum_case():
    # The cases above fail for the reason they name, not because their checksum is wrong.
    for message in (raw_message(first=0x21), raw_message(group=0), raw_message(interval=0), raw_message(count=0)):
        assert message == with_checksum(message)


GOOD = vrrp.encode(ADVERT, SRC)


@pytest.mark.parametrize("packet, why", [
    (b"", "shorter than an IPv4 header"),
    (ip_header(len(GOOD))[:19], "shorter than an IPv4 header"),
    (ip_header(len(GOOD), first=0x65) + GOOD, "IP version 6"),
    (ip_header(len(GOOD), first=0x44) + GOOD, "header length 16"),
    (ip_header(len(GOOD), proto=17) + GOOD, "protocol 17"),
    (ip_header(len(GOOD), ttl=254) + GOOD, "TTL 254"),
    (ip_header(len(GOOD), ttl=1) + GOOD, "TTL 1"),
    (ip_header(len(GOOD), dst=PEER) + vrrp.encode(ADVERT, SRC, PEER), "not 224.0.0.18"),
    (ip_header(len(GOOD), dst=ip("224.0.0.5")) + vrrp.encode(ADVERT, SRC, ip("224.0.0.5")), "not 224.0.0.18"),
    (ip_header(len(GOOD)) + GOOD[:-1], "total length"),
    (ip_header(len(GOOD))[:10] + b"\0\0" + ip_header(len(GOOD))[12:] + GOOD, "header checksum"),
    (ip_header(len(GOOD), frag=0x2000) + GOOD, "fragment"),
    (ip_header(len(GOOD), frag=0x0010) + GOOD, "fragment"),
    (ip_header(4) + GOOD[:4], "shorter than its 8-byte header"),
    (ip_header(len(GOOD)) + GOOD[:-1] + b"\x07", "VRRP checksum"),
])
def test_parse_ip_packet_rejects(packet, why):
    with pytest.raises(VrrpError, match=why):
        vrrp.parse_ip_packet(packet)


def test_ttl_is_checked_for_unicast_too():
    message = vrrp.encode(ADVERT, SRC, PEER)
    assert vrrp.parse_ip_packet(ip_header(len(message), dst=PEER) + message, unicast_ok=True) == (SRC, ADVERT)
    with pytest.raises(VrrpError, match="TTL"):
        vrrp.parse_ip_packet(ip_header(len(message), dst=PEER, ttl=64) + message, unicast_ok=True)


# --- round trip ---

addresses4 = st.binary(min_size=4, max_size=4)
adverts = st.builds(Advert, group=st.integers(1, 255), priority=st.integers(0, 255),
                    interval_cs=st.integers(1, 4095), addresses=st.lists(addresses4, min_size=1, max_size=20))


@settings(max_examples=200, deadline=None)
@given(advert=adverts, src=addresses4, dst=addresses4)
def test_round_trip(advert, src, dst):
    assert vrrp.decode(vrrp.encode(advert, src, dst), src, dst) == advert
    packet = vrrp.ip_packet(advert, src)
    assert vrrp.parse_ip_packet(packet) == (src, advert)
    assert vrrp.parse_ip_packet(vrrp.ip_packet(advert, src, dst), unicast_ok=True) == (src, advert)
    # scapy reads the same fields and computes the same checksum.
    parsed = IP(packet)[VRRPv3]
    assert (parsed.vrid, parsed.priority, parsed.adv, parsed.ipcount) == (advert.group, advert.priority,
                                                                         advert.interval_cs, len(advert.addresses))
    assert [ip(a) for a in parsed.addrlist] == list(advert.addresses)
    assert packet[20:] == with_checksum(packet[20:], src)


# --- the state machine ---

A, B = ip("10.0.0.1"), ip("10.0.0.2")


def down_interval(priority, interval):
    return 3 * interval + (256 - priority) * interval / 256


def test_constructor_checks():
    for bad in (0, 256, -1):
        with pytest.raises(ValueError):
            Vrrp(bad, 1.0, True, A)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError):
            Vrrp(100, bad, True, A)


def test_initial_state():
    r = Vrrp(100, 1.0, True, A)
    assert (r.state, r.master, r.last_transition, r.transitions, r.released) == ("init", None, None, 0, False)
    assert r.master_adver_interval_s == 1.0 and r.priority == 100 and r.next_deadline() is None
    assert r.timers(100.0) == [] and r.receive(200, 1.0, B, 1.0) == []


def test_derived_timers():
    r = Vrrp(100, 1.0, True, A)
    assert r.skew_time_s == pytest.approx(156 / 256)
    assert r.master_down_interval_s == pytest.approx(3 + 156 / 256)
    assert Vrrp(255, 2.0, True, A).skew_time_s == pytest.approx(2 / 256)


def test_start_as_owner():
    r = Vrrp(255, 1.0, False, A)
    assert r.start(5.0) == [SendAdvert(255), BecomeMaster()]
    assert (r.state, r.master, r.last_transition, r.transitions) == ("master", A, 5.0, 1)
    assert r.next_deadline() == 6.0
    assert r.start(6.0) == []           # only from init


def test_start_as_backup():
    r = Vrrp(100, 1.0, True, A)
    assert r.start(5.0) == []
    assert (r.state, r.master, r.last_transition, r.transitions) == ("backup", None, 5.0, 1)
    assert r.next_deadline() == pytest.approx(5.0 + down_interval(100, 1.0))


def test_backup_becomes_master_after_exactly_master_down_interval():
    r = Vrrp(100, 1.0, True, A)
    r.start(0.0)
    deadline = r.next_deadline()
    assert deadline == pytest.approx(down_interval(100, 1.0))
    assert r.timers(deadline - 1e-6) == [] and r.state == "backup"
    assert r.timers(deadline) == [SendAdvert(100), BecomeMaster()]
    assert (r.state, r.master, r.last_transition, r.transitions) == ("master", A, deadline, 2)
    assert r.next_deadline() == pytest.approx(deadline + 1.0)


def test_adverts_keep_a_backup_down():
    r = Vrrp(100, 1.0, True, A)
    r.start(0.0)
    for tick in range(2000):                    # 20 s in 10 ms steps, an advert every second
        now = tick / 100
        if tick % 100 == 0:
            assert r.receive(200, 1.0, B, now) == []
        assert r.timers(now) == []
    assert (r.state, r.master, r.transitions) == ("backup", B, 1)


def test_preempt_takes_over_from_a_lower_priority_master():
    r = Vrrp(200, 1.0, True, A)
    r.start(0.0)
    deadline = r.next_deadline()
    for tick in range(1000):
        now = tick / 100
        if tick % 100 == 0:
            r.receive(100, 1.0, B, now)         # discarded: they do not reset the timer
        actions = r.timers(now)
        if actions:
            assert actions == [SendAdvert(200), BecomeMaster()]
            break
    assert r.state == "master" and r.last_transition == pytest.approx(deadline, abs=0.0100001)
    assert deadline == pytest.approx(down_interval(200, 1.0))
    # The old master hears us and steps down; we ignore its adverts until then.
    assert r.receive(100, 1.0, B, now) == [] and r.state == "master"


def test_no_preempt_stays_backup():
    r = Vrrp(200, 1.0, False, A)
    r.start(0.0)
    for tick in range(2000):
        now = tick / 100
        if tick % 100 == 0:
            r.receive(100, 1.0, B, now)
        assert r.timers(now) == []
    assert (r.state, r.master) == ("backup", B)


def test_owner_always_preempts():
    # RFC 5798 6.1: the address owner preempts whatever its Preempt_Mode; here through the backup rules.
    r = Vrrp(255, 1.0, False, A)
    r.start(0.0)
    r.set_fault(True, 0.0)
    r.set_fault(False, 1.0)
    assert r.state == "backup"
    deadline = r.next_deadline()
    r.receive(100, 1.0, B, 2.0)
    assert r.next_deadline() == deadline       # discarded
    assert r.timers(deadline) == [SendAdvert(255), BecomeMaster()]


def test_priority_zero_advert_means_takeover_after_skew_time():
    r = Vrrp(100, 1.0, True, A)
    r.start(0.0)
    r.receive(200, 1.0, B, 1.0)
    assert r.master == B
    assert r.receive(0, 1.0, B, 1.5) == []
    assert r.master is None
    deadline = r.next_deadline()
    assert deadline == pytest.approx(1.5 + 156 / 256)
    assert r.timers(deadline - 1e-6) == []
    assert r.timers(deadline) == [SendAdvert(100), BecomeMaster()]


def master_at(now, priority=100, address=A, interval=1.0):
    r = Vrrp(priority, interval, True, address)
    r.start(now - down_interval(priority, interval))
    assert r.timers(now) == [SendAdvert(priority), BecomeMaster()]
    return r


@pytest.mark.parametrize("priority, src, steps_down", [
    (101, ip("10.0.0.0"), True),            # higher priority, whatever the address
    (255, B, True),
    (100, ip("10.0.0.2"), True),            # equal priority, higher address
    (100, ip("10.0.1.0"), True),
    (100, ip("10.0.0.0"), False),           # equal priority, lower address
    (100, ip("9.255.255.255"), False),
    (99, ip("10.0.0.9"), False),            # lower priority, even from a higher address
    (1, ip("255.255.255.255"), False),
])
def test_master_steps_down(priority, src, steps_down):
    r = master_at(10.0)
    actions = r.receive(priority, 2.0, src, 10.5)
    if steps_down:
        assert actions == [BecomeBackup()]
        assert (r.state, r.master, r.master_adver_interval_s, r.transitions) == ("backup", src, 2.0, 3)
        assert r.next_deadline() == pytest.approx(10.5 + down_interval(100, 2.0))
    else:
        assert actions == []
        assert (r.state, r.master, r.next_deadline()) == ("master", A, 11.0)


def test_address_comparison_is_unsigned():
    # 200.0.0.1 is above 10.0.0.1 as an unsigned number (a signed comparison would order them the other way).
    r = master_at(10.0, address=ip("10.0.0.1"))
    assert r.receive(100, 1.0, ip("200.0.0.1"), 10.5) == [BecomeBackup()]
    r = master_at(10.0, address=ip("200.0.0.1"))
    assert r.receive(100, 1.0, ip("10.0.0.1"), 10.5) == []


def test_master_answers_a_priority_zero_advert_at_once():
    r = master_at(10.0, priority=150)
    assert r.receive(0, 1.0, B, 10.3) == [SendAdvert(150)]
    assert r.state == "master" and r.next_deadline() == pytest.approx(11.3)


@pytest.mark.parametrize("pa, pb", [(100, 100), (200, 100), (100, 200)])
@pytest.mark.parametrize("a_first", [True, False])
def test_split_brain_resolves_on_one_advert_each(pa, pb, a_first):
    a, b = master_at(10.0, pa, A), master_at(10.2, pb, B)
    # The partition heals: each sends its next advert within one interval, and each hears the other's.
    sent_a, sent_b = a.timers(11.0), b.timers(11.2)
    assert sent_a == [SendAdvert(pa)] and sent_b == [SendAdvert(pb)]
    deliveries = [(b, pa, A), (a, pb, B)] if a_first else [(a, pb, B), (b, pa, A)]
    for router, priority, src in deliveries:
        router.receive(priority, 1.0, src, 11.2)
    masters = [r for r in (a, b) if r.state == "master"]
    assert len(masters) == 1
    winner = a if (pa, A) > (pb, B) else b
    assert masters == [winner]
    loser = b if winner is a else a
    assert loser.state == "backup" and loser.master == winner.primary_address


def test_adver_timer_period():
    r = master_at(0.0, priority=150)
    sent = []
    for tick in range(1, 1001):
        now = tick / 100
        if r.timers(now):
            sent.append(now)
    assert len(sent) == 10
    assert all(t2 - t1 == pytest.approx(1.0, abs=0.0100001) for t1, t2 in zip(sent, sent[1:]))
    # At the exact deadline, the period is exactly the interval.
    r = master_at(0.0, priority=150, interval=0.5)
    for k in range(1, 6):
        assert r.next_deadline() == pytest.approx(0.5 * k)
        assert r.timers(r.next_deadline() - 1e-6) == []
        assert r.timers(r.next_deadline()) == [SendAdvert(150)]


def test_fault_from_master_resigns_and_comes_back_as_backup():
    r = master_at(10.0, priority=150)
    assert r.set_fault(True, 11.0) == [SendAdvert(0), BecomeBackup()]
    assert (r.state, r.master, r.next_deadline(), r.last_transition) == ("fault", None, None, 11.0)
    assert r.set_fault(True, 12.0) == []                            # already down
    assert r.receive(200, 1.0, B, 12.0) == [] and r.master is None   # adverts ignored
    assert r.timers(100.0) == [] and r.state == "fault"
    assert r.set_fault(False, 20.0) == []
    assert (r.state, r.master, r.last_transition) == ("backup", None, 20.0)
    assert r.next_deadline() == pytest.approx(20.0 + down_interval(150, 1.0))
    assert r.set_fault(False, 21.0) == [] and r.state == "backup"     # already up


def test_fault_from_backup_and_before_start():
    r = Vrrp(100, 1.0, True, A)
    r.start(0.0)
    r.receive(200, 3.0, B, 1.0)
    assert r.set_fault(True, 2.0) == [] and (r.state, r.master) == ("fault", None)
    r.set_fault(False, 3.0)
    # Back from a fault, the router starts over: the interval learned before is forgotten (RFC 5798 6.4.1).
    assert r.master_adver_interval_s == 1.0
    r = Vrrp(100, 1.0, True, A)
    assert r.set_fault(True, 0.0) == [] and r.state == "fault"
    assert r.start(1.0) == [] and r.state == "fault"      # a faulted router does not start...
    assert r.set_fault(False, 2.0) == [] and r.state == "backup"  # ...until the port is back


def test_release_hands_over_and_suppresses_preemption():
    r = master_at(10.0, priority=200)
    assert r.release(10.5) == [SendAdvert(0), BecomeBackup()]
    assert (r.state, r.released, r.master) == ("backup", True, None)
    assert r.release(10.6) == []                # only a master can release
    # The peer (lower priority) takes over and advertises: we stay backup although we preempt.
    for tick in range(1100, 3000):
        now = tick / 100
        if tick % 100 == 0:
            r.receive(100, 1.0, B, now)
        assert r.timers(now) == []
    assert (r.state, r.master, r.released) == ("backup", B, True)
    # The peer fails: our timer makes us master again, and that ends the release.
    deadline = r.next_deadline()
    assert deadline == pytest.approx(29.0 + down_interval(200, 1.0))
    assert r.timers(deadline) == [SendAdvert(200), BecomeMaster()]
    assert r.released is False


def test_hold_preempt_delays_preemption():
    r = Vrrp(200, 1.0, True, A)
    r.start(0.0)
    r.hold_preempt(10.0)
    assert r.preempt_hold_until == 10.0
    became_master = None
    for tick in range(3000):
        now = tick / 100
        if tick % 100 == 0 and r.state == "backup":
            r.receive(100, 1.0, B, now)
        if r.timers(now):
            became_master = now
            break
    # Accepted before t=10 (the last, at t=9, resets the timer), discarded from t=10 on: the hold ends at 10.
    assert became_master == pytest.approx(9.0 + down_interval(200, 1.0), abs=0.0100001)


def test_hold_preempt_does_not_delay_a_takeover_from_a_silent_master():
    r = Vrrp(200, 1.0, True, A)
    r.start(0.0)
    r.hold_preempt(1000.0)
    r.receive(100, 1.0, B, 1.0)
    assert r.timers(1.0 + down_interval(200, 1.0)) == [SendAdvert(200), BecomeMaster()]


def test_shutdown():
    r = master_at(10.0, priority=150)
    assert r.shutdown(11.0) == [SendAdvert(0), BecomeBackup()]
    assert (r.state, r.master, r.next_deadline(), r.last_transition) == ("init", None, None, 11.0)
    assert r.shutdown(12.0) == []
    r.start(13.0)
    assert r.state == "backup"
    assert r.shutdown(14.0) == [] and r.state == "init"       # a backup has nothing to resign


def test_next_deadline_follows_the_state():
    r = Vrrp(100, 1.0, True, A)
    assert r.next_deadline() is None
    r.start(0.0)
    assert r.next_deadline() == pytest.approx(down_interval(100, 1.0))
    r.receive(150, 1.0, B, 2.0)
    assert r.next_deadline() == pytest.approx(2.0 + down_interval(100, 1.0))
    r.receive(0, 1.0, B, 3.0)
    assert r.next_deadline() == pytest.approx(3.0 + 156 / 256)
    r.timers(r.next_deadline())
    assert r.next_deadline() == pytest.approx(4.0 + 156 / 256)
    r.set_fault(True, 5.0)
    assert r.next_deadline() is None


def test_learned_interval_changes_the_down_interval():
    r = Vrrp(100, 1.0, True, A)
    r.start(0.0)
    r.receive(200, 2.5, B, 1.0)
    assert r.master_adver_interval_s == 2.5
    assert r.skew_time_s == pytest.approx(156 * 2.5 / 256)
    assert r.master_down_interval_s == pytest.approx(down_interval(100, 2.5))
    assert r.next_deadline() == pytest.approx(1.0 + down_interval(100, 2.5))
    r.receive(200, 0.5, B, 2.0)
    assert r.next_deadline() == pytest.approx(2.0 + down_interval(100, 0.5))


def test_receive_checks_its_arguments():
    r = Vrrp(100, 1.0, True, A)
    with pytest.raises(ValueError):
        r.receive(256, 1.0, B, 0.0)
    with pytest.raises(ValueError):
        r.receive(100, 0.0, B, 0.0)


# --- two routers on a fake clock ---

class Pair:
    """Two routers whose adverts reach each other at once; time runs in 10 ms ticks (integers, no float drift)."""

    def __init__(self, pa=200, pb=100, interval=1.0, preempt=True):
        self.routers = {"a": Vrrp(pa, interval, preempt, A), "b": Vrrp(pb, interval, preempt, B)}
        self.alive = {"a": True, "b": True}
        self.tick = 0

    @property
    def now(self):
        return self.tick / 100

    def deliver(self, sender, actions):
        other = "b" if sender == "a" else "a"
        s = self.routers[sender]
        for action in actions:
            if isinstance(action, SendAdvert) and self.alive[sender] and self.alive[other]:
                self.deliver(other, self.routers[other].receive(action.priority, s.advert_interval_s,
                                                                 s.primary_address, self.now))

    def start(self, name):
        self.alive[name] = True
        self.deliver(name, self.routers[name].start(self.now))

    def run(self, seconds, until=None):
        for _ in range(round(seconds * 100)):
            self.tick += 1
            for name, router in self.routers.items():
                if self.alive[name]:
                    self.deliver(name, router.timers(self.now))
            if until is not None and until():
                return self.now
        return None

    def masters(self):
        return sorted(n for n, r in self.routers.items() if self.alive[n] and r.state == "master")


def test_pair_elects_the_higher_priority_and_stays_stable():
    pair = Pair()
    pair.start("a")
    pair.start("b")
    pair.run(10)
    assert pair.masters() == ["a"]
    assert pair.routers["b"].master == A
    transitions = pair.routers["a"].transitions, pair.routers["b"].transitions
    pair.run(60)
    assert pair.masters() == ["a"] and (pair.routers["a"].transitions, pair.routers["b"].transitions) == transitions


@pytest.mark.parametrize("interval", [1.0, 0.3, 3.0])
def test_pair_backup_takes_over_when_the_master_dies(interval):
    pair = Pair(interval=interval)
    pair.start("a")
    pair.start("b")
    pair.run(20 * interval)
    assert pair.masters() == ["a"]
    pair.run(0.37)                              # die at some point within an advert interval
    killed = pair.now
    pair.alive["a"] = False
    b = pair.routers["b"]
    took_over = pair.run(10 * interval, until=lambda: b.state == "master")
    assert took_over is not None
    assert took_over <= killed + 3 * interval + b.skew_time_s + 0.01 + 1e-9
    assert took_over > killed + 2 * interval    # it waited for three missed adverts, not less
    assert b.master == B


def test_pair_recovered_master_preempts_back():
    pair = Pair()
    pair.start("a")
    pair.start("b")
    pair.run(10)
    pair.alive["a"] = False
    pair.run(10)
    assert pair.masters() == ["b"]
    pair.routers["a"] = Vrrp(200, 1.0, True, A)     # restarted process
    pair.start("a")
    pair.run(10)
    assert pair.masters() == ["a"] and pair.routers["b"].master == A


def test_pair_without_preempt_keeps_the_survivor():
    pair = Pair(preempt=False)
    pair.start("a")
    pair.start("b")
    pair.run(10)
    pair.alive["a"] = False
    pair.run(10)
    pair.routers["a"] = Vrrp(200, 1.0, False, A)
    pair.start("a")
    pair.run(20)
    assert pair.masters() == ["b"] and pair.routers["a"].master == B


def test_pair_release_hands_over_within_skew_time():
    pair = Pair()
    pair.start("a")
    pair.start("b")
    pair.run(10)
    released_at = pair.now
    pair.deliver("a", pair.routers["a"].release(pair.now))
    b = pair.routers["b"]
    took_over = pair.run(5, until=lambda: b.state == "master")
    assert took_over is not None and took_over <= released_at + b.skew_time_s + 0.01 + 1e-9
    pair.run(30)
    assert pair.masters() == ["b"] and pair.routers["a"].released


def test_pair_fault_hands_over_and_returns():
    pair = Pair()
    pair.start("a")
    pair.start("b")
    pair.run(10)
    pair.deliver("a", pair.routers["a"].set_fault(True, pair.now))
    pair.run(1)
    assert pair.masters() == ["b"]
    pair.deliver("a", pair.routers["a"].set_fault(False, pair.now))
    pair.run(10)
    assert pair.masters() == ["a"]              # it preempts back once its port is up
