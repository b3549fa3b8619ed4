"""VIP guards: per-VIP limits against SYN floods, C and twin alike (docs/DATAPATH.md "VIP guards").

A VIP's embryonic (SYN-state) connections are counted; at its `max_embryonic` a new SYN-state connection takes
the place of the VIP's least recent one (never an established one, never another VIP's), or is refused when none
of the VIP's own is near the SYN list's head. Its CONN_MISS upcalls pass a token bucket. Whole datapaths with
memory ports and a fake clock (the topology of test_conntrack.py); a differential test feeds both datapaths random
guards, tables and floods.
"""
import errno
import ipaddress
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from pyswitch import consts, fastpath, refpath
from pyswitch.datapath_types import Conn, ConnTuple, RingBackend
from test_conntrack import (BACKEND, BACKEND_MAC, BACKEND_PORT, BACKEND_SIDE, CLIENT_MAC, CLIENT_PORT, GW_MAC, T0,
                            VIP, VIP_ID, conn_state, ip, mac, make_dp, nat_conn, reply_tcp, send, tcp)

OTHER_VIP_ID = 8
NAT_BACKEND = RingBackend(ip(BACKEND), BACKEND_PORT, consts.CONN_NAT, 5)


@pytest.fixture(params=["c", "python"])
def dp(request):
    d = make_dp(fastpath if request.param == "c" else refpath)
    yield d
    d.close()


def guard(dp, vip_id=VIP_ID):
    return dp.vip_guard_stats(vip_id)


def flood_frame(rng, flags="S"):
    """A SYN from a random source of 198.18.0.0/15 and a random port, as a flood sends them."""
    src = f"198.{18 + rng.randrange(2)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return tcp(src=src, sport=rng.randrange(1024, 65536), flags=flags)


def test_embryonic_count_follows_the_syn_state(dp):
    for sport in range(3):
        dp.conn_add(nat_conn(sport=sport), now_ms=T0)
    assert guard(dp)["embryonic"] == 3
    send(dp, tcp(sport=0, flags="A"))           # the client's ACK: ESTABLISHED
    assert guard(dp)["embryonic"] == 2
    dp.conn_del(nat_conn(sport=1).client)
    assert guard(dp) == {"embryonic": 1, "embryonic_evicted": 0, "embryonic_refused": 0, "upcalls_limited": 0}
    assert guard(dp, OTHER_VIP_ID)["embryonic"] == 0


def test_max_embryonic_evicts_the_vips_least_recent_syn_only(dp):
    dp.vip_guard(VIP_ID, max_embryonic=3)
    dp.conn_add(nat_conn(sport=1, state=consts.CS_ESTABLISHED), now_ms=T0)
    for sport in (2, 3):                        # another VIP's half-open connections, older than the flood
        dp.conn_add(nat_conn(sport=sport)._replace(vip_id=OTHER_VIP_ID), now_ms=T0)
    for sport in range(10, 18):
        dp.conn_add(nat_conn(sport=sport), now_ms=T0 + sport)
    assert guard(dp) == {"embryonic": 3, "embryonic_evicted": 5, "embryonic_refused": 0, "upcalls_limited": 0}
    gone = [(e.kind, e.vip_id, e.client.sport) for e in dp.conn_events()]
    assert gone == [(consts.CE_GONE, VIP_ID, sport) for sport in range(10, 15)]
    kept = {(c.vip_id, c.client.sport, c.state) for c in dp.conn_dump()}
    assert kept == {(VIP_ID, 1, consts.CS_ESTABLISHED), (OTHER_VIP_ID, 2, consts.CS_SYN),
                    (OTHER_VIP_ID, 3, consts.CS_SYN), (VIP_ID, 15, 1), (VIP_ID, 16, 1), (VIP_ID, 17, 1)}
    s = dp.conn_stats()
    assert (s["conns"], s["evictions"], s["refused"]) == (6, 0, 0), "a VIP's own limit, not the table's"


def test_max_embryonic_refuses_when_none_of_its_own_is_near_the_head(dp):
    for sport in range(consts.VIP_GUARD_SCAN):
        dp.conn_add(nat_conn(sport=sport)._replace(vip_id=OTHER_VIP_ID), now_ms=T0)
    dp.vip_guard(VIP_ID, max_embryonic=1)
    dp.conn_add(nat_conn(sport=1000), now_ms=T0 + 1)
    with pytest.raises(OSError) as e:
        dp.conn_add(nat_conn(sport=1001), now_ms=T0 + 2)
    assert e.value.errno == errno.ENOSPC
    assert guard(dp)["embryonic_refused"] == 1 and guard(dp)["embryonic"] == 1
    assert guard(dp, OTHER_VIP_ID)["embryonic"] == consts.VIP_GUARD_SCAN, "another VIP's are never taken"
    dp.conn_add(nat_conn(sport=1002, state=consts.CS_ESTABLISHED), now_ms=T0 + 3)   # only SYN-state adds count


def test_ring_vip_under_a_flood_stays_bounded_and_keeps_its_established(dp):
    dp.conn_config(1000)
    dp.vip_guard(VIP_ID, max_embryonic=50)
    dp.ring_config(VIP_ID, 7)
    dp.ring_backend(VIP_ID, 0, NAT_BACKEND)
    dp.ring_write(VIP_ID, [(slot, 0) for slot in range(7)])
    send(dp, tcp(sport=5555, flags="S"))        # a real client's handshake, then the flood
    send(dp, tcp(sport=5555, flags="A"))
    rng = random.Random(7)
    for burst in range(20):
        for _ in range(50):                     # one batch of the datapath's
            dp.inject(CLIENT_PORT, bytes(flood_frame(rng)))
        dp.run(now_ms=T0 + 1 + burst)
        assert len(dp.take(BACKEND_SIDE)) == 50, "every SYN still reaches a backend: the oldest make room"
    g = guard(dp)
    assert (g["embryonic"], g["embryonic_evicted"], g["embryonic_refused"]) == (50, 950, 0)
    s = dp.conn_stats()
    assert s["conns"] == 51 and s["by_state"]["established"] == 1 and s["evictions"] == 0
    established = [c for c in dp.conn_dump() if c.state == consts.CS_ESTABLISHED]
    assert [c.client.sport for c in established] == [5555]
    out = send(dp, tcp(sport=5555, flags="PA"), now=T0 + 20)
    assert len(out[BACKEND_SIDE]) == 1, "the established connection still carries data"
    events = [(e.kind, e.client.sport) for e in dp.conn_events()]
    assert events == [(consts.CE_NEW, 5555)], "the flood's half-open connections cost the slow path no event"


def test_a_ring_connection_is_reported_once_past_its_handshake(dp):
    dp.ring_config(VIP_ID, 7)
    dp.ring_backend(VIP_ID, 0, NAT_BACKEND)
    dp.ring_write(VIP_ID, [(slot, 0) for slot in range(7)])
    send(dp, tcp(sport=1, flags="S"), now=T0)
    send(dp, reply_tcp(dport=1, flags="SA"), port=BACKEND_SIDE, now=T0 + 3)
    assert dp.conn_events() == [], "half-open: neither NEW nor RTT yet"
    send(dp, tcp(sport=1, flags="A"), now=T0 + 4)
    assert [(e.kind, e.state, e.rtt_us) for e in dp.conn_events()] == \
        [(consts.CE_NEW, consts.CS_ESTABLISHED, 0), (consts.CE_RTT, consts.CS_ESTABLISHED, 3000)]
    send(dp, tcp(sport=2, flags="S"), now=T0 + 5)   # never answered: it expires without a word
    send(dp, tcp(sport=3, flags="S"), now=T0 + 5)
    send(dp, tcp(sport=3, flags="F"), now=T0 + 6)   # closes before its handshake: NEW, then closing
    assert dp.conn_expire(now_ms=T0 + 5 + consts.CT_SYN_TIMEOUT_MS) == 1
    assert [(e.kind, e.client.sport, e.state) for e in dp.conn_events()] == \
        [(consts.CE_NEW, 3, consts.CS_FIN_WAIT), (consts.CE_STATE, 3, consts.CS_FIN_WAIT)]


def test_upcall_rate_limits_a_vips_conn_misses(dp):
    dp.vip_guard(VIP_ID, upcall_rate=10, upcall_burst=5)
    rng = random.Random(1)
    for _ in range(20):
        dp.inject(CLIENT_PORT, bytes(flood_frame(rng)))
    dp.run(now_ms=T0)
    assert len(dp.upcalls()) == 5, "the bucket starts full: the burst goes up"
    assert guard(dp)["upcalls_limited"] == 15
    for now, n_up in ((T0 + 99, 0), (T0 + 100, 1), (T0 + 350, 2), (T0 + 100000, 5)):
        for _ in range(20):
            dp.inject(CLIENT_PORT, bytes(flood_frame(rng)))
        dp.run(now_ms=now)
        assert len(dp.upcalls()) == n_up, now
    assert dp.conn_stats()["misses"] == 100, "the lookups still missed; only the upcalls were limited"


def test_upcall_rate_applies_only_above_the_threshold(dp):
    dp.vip_guard(VIP_ID, upcall_rate=1, upcall_burst=1, upcall_threshold=3)
    for sport in range(30):                     # no flood: however many new clients, all go up
        dp.inject(CLIENT_PORT, bytes(tcp(sport=sport)))
    dp.run(now_ms=T0)
    assert len(dp.upcalls()) == 30 and guard(dp)["upcalls_limited"] == 0
    for sport in range(3):                      # the slow path added three half-open connections: a flood
        dp.conn_add(nat_conn(sport=sport), now_ms=T0)
    for sport in range(100, 110):
        dp.inject(CLIENT_PORT, bytes(tcp(sport=sport)))
    dp.run(now_ms=T0)
    assert len(dp.upcalls()) == 1 and guard(dp)["upcalls_limited"] == 9
    send(dp, tcp(sport=0, flags="A"))           # one completes its handshake: below the threshold again
    for sport in range(200, 210):
        dp.inject(CLIENT_PORT, bytes(tcp(sport=sport)))
    dp.run(now_ms=T0)
    assert len(dp.upcalls()) == 10


def test_upcall_rate_spares_known_connections(dp):
    dp.vip_guard(VIP_ID, upcall_rate=1, upcall_burst=1)
    dp.conn_add(nat_conn(state=consts.CS_ESTABLISHED), now_ms=T0)
    for i in range(50):
        dp.inject(CLIENT_PORT, bytes(tcp(flags="PA")))
    dp.run(now_ms=T0)
    assert len(dp.take(BACKEND_SIDE)) == 50 and guard(dp)["upcalls_limited"] == 0


def test_guard_set_keeps_counters_and_refills(dp):
    dp.vip_guard(VIP_ID, upcall_rate=1, upcall_burst=1)
    dp.inject(CLIENT_PORT, bytes(tcp(sport=1)))
    dp.inject(CLIENT_PORT, bytes(tcp(sport=2)))
    dp.run(now_ms=T0)
    assert len(dp.upcalls()) == 1 and guard(dp)["upcalls_limited"] == 1
    dp.vip_guard(VIP_ID, upcall_rate=1, upcall_burst=1)
    dp.inject(CLIENT_PORT, bytes(tcp(sport=3)))
    dp.run(now_ms=T0)
    assert len(dp.upcalls()) == 1 and guard(dp)["upcalls_limited"] == 1
    dp.vip_guard(VIP_ID)                        # no limits
    for sport in range(10, 30):
        dp.inject(CLIENT_PORT, bytes(tcp(sport=sport)))
    dp.run(now_ms=T0)
    assert len(dp.upcalls()) == 20


@pytest.mark.parametrize("args", [dict(vip_id=0), dict(vip_id=consts.VIP_GUARD_MAX_VIPS),
                                  dict(upcall_rate=5, upcall_burst=0),
                                  dict(upcall_rate=consts.VIP_GUARD_MAX_RATE + 1, upcall_burst=1),
                                  dict(upcall_rate=1, upcall_burst=consts.VIP_GUARD_MAX_RATE + 1),
                                  dict(max_embryonic=-1), dict(max_embryonic=1 << 32)])
def test_bad_guards_are_value_errors(dp, args):
    args = dict(dict(vip_id=VIP_ID), **args)
    with pytest.raises(ValueError):
        dp.vip_guard(args.pop("vip_id"), **args)
    with pytest.raises(ValueError):
        dp.vip_guard_stats(0)


# -- C and twin alike -----------------------------------------------------------------------------------------------

G_SOURCES = ["192.0.2.10", "192.0.2.11", "198.18.0.1", "198.18.0.2", "198.19.255.254"]
G_SPORTS = [40000, 40001, 40002]
g_flags = st.sampled_from(["S", "S", "S", "SA", "A", "PA", "R", "F"])


@st.composite
def g_conns(draw):
    """A connection of VIP 7 or 8, half-open or established."""
    client = ConnTuple(6, ip(draw(st.sampled_from(G_SOURCES))), ip(VIP), draw(st.sampled_from(G_SPORTS)), 80)
    reply = ConnTuple(6, ip(BACKEND), client.src, BACKEND_PORT, client.sport)
    state = draw(st.sampled_from([consts.CS_SYN, consts.CS_SYN, consts.CS_ESTABLISHED, consts.CS_CLOSE]))
    return Conn(client, reply, ip(BACKEND), bytes(4), consts.CONN_NAT, state,
                draw(st.sampled_from([VIP_ID, OTHER_VIP_ID])), 3)


@st.composite
def g_frames(draw):
    src = draw(st.sampled_from(G_SOURCES))
    if draw(st.integers(0, 5)) == 0:
        l4 = UDP(sport=draw(st.sampled_from(G_SPORTS)), dport=80)
    else:
        l4 = TCP(sport=draw(st.sampled_from(G_SPORTS)), dport=80, flags=draw(g_flags))
    return bytes(Ether(src=mac(CLIENT_MAC), dst=mac(GW_MAC)) / IP(src=src, dst=VIP) / l4 / b"x")


def g_reply(conn):
    return bytes(Ether(src=mac(BACKEND_MAC), dst=mac(GW_MAC)) / IP(src=BACKEND, dst=str(ipaddress.IPv4Address(conn.client.src)))
                 / TCP(sport=BACKEND_PORT, dport=conn.client.sport, flags="SA"))


def guard_state(dp):
    return conn_state(dp), dp.vip_guard_stats(VIP_ID), dp.vip_guard_stats(OTHER_VIP_ID)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([0, 1, 2, 5]), st.sampled_from([0, 1, 10, 1000]), st.sampled_from([1, 3]),
       st.sampled_from([0, 0, 1, 2]), st.booleans(), st.sampled_from([3, 100]), st.lists(g_conns(), max_size=8),
       st.data())
def test_vip_guard_datapath_equal(max_embryonic, upcall_rate, upcall_burst, upcall_threshold, ring, max_conns,
                                  conns, data):
    dps = [make_dp(fastpath), make_dp(refpath)]
    try:
        for dp in dps:
            dp.conn_config(max_conns)
            dp.vip_guard(VIP_ID, max_embryonic, upcall_rate, upcall_burst, upcall_threshold)
            dp.vip_guard(OTHER_VIP_ID, max_embryonic=1)
            if ring:
                dp.ring_config(VIP_ID, 5)
                dp.ring_backend(VIP_ID, 0, NAT_BACKEND)
                dp.ring_write(VIP_ID, [(slot, 0) for slot in range(0, 5, 2)])
        now = T0
        for conn in conns:
            results = []
            for dp in dps:
                try:
                    dp.conn_add(conn, now_ms=now)
                    results.append(None)
                except OSError as e:
                    results.append(e.errno)
            assert results[0] == results[1], conn
            now += data.draw(st.integers(0, 30))
        assert guard_state(dps[0]) == guard_state(dps[1])
        for _round in range(data.draw(st.integers(1, 4))):
            frames = data.draw(st.lists(g_frames(), max_size=15))
            answered = [g_reply(c) for c in dps[1].conn_dump() if c.reply and data.draw(st.booleans())]
            for dp in dps:
                for frame in frames:
                    dp.inject(CLIENT_PORT, frame)
                for frame in answered:
                    dp.inject(BACKEND_SIDE, frame)
                dp.run(now_ms=now)
            assert guard_state(dps[0]) == guard_state(dps[1])
            now += data.draw(st.sampled_from([0, 1, 50, 100, 333, 5000]))
            assert dps[0].conn_expire(now_ms=now) == dps[1].conn_expire(now_ms=now)
            assert guard_state(dps[0]) == guard_state(dps[1])
    finally:
        for dp in dps:
            dp.close()
