"""Maglev rings: new connections scheduled in the datapath, C and twin alike (docs/DATAPATH.md "Maglev rings").

The rings are written through their interface, as the VIP stage writes them, and packets go through whole datapaths
with memory ports (the topology of test_conntrack.py): a client's first packet to a VIP with a ring must leave
already rewritten for the backend the ring holds for its client, with the connection in the table and a CE_NEW
event; what the ring cannot decide still goes up as CONN_MISS. A differential test feeds both datapaths random
rings and packets.
"""
import errno

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from pyswitch import consts, fastpath, refpath
from pyswitch.datapath_types import ConnEvent, ConnTuple, RingBackend
from pyswitch.lb import maglev
from pyswitch.lb.backend import Backend
from test_conntrack import (BACKEND, BACKEND_MAC, BACKEND_PORT, BACKEND_SIDE, CLIENT, CLIENT_MAC, CLIENT_PORT,
                            GW_MAC, SWITCH, T0, VIP, VIP_ID, client_tuple, ip, mac, make_dp, only_output,
                            reply_tcp, routed, send, tcp, tunneled, udp)

NAT_BACKEND = RingBackend(ip(BACKEND), BACKEND_PORT, consts.CONN_NAT, 5)


@pytest.fixture(params=["c", "python"])
def dp(request):
    d = make_dp(fastpath if request.param == "c" else refpath)
    yield d
    d.close()


def ring_of_one(dp, backend=NAT_BACKEND, size=7, index=2):
    """VIP_ID's ring: every slot holds backend `index`."""
    dp.ring_config(VIP_ID, size)
    dp.ring_backend(VIP_ID, index, backend)
    dp.ring_write(VIP_ID, [(slot, index) for slot in range(size)])


# -- the interface --------------------------------------------------------------------------------------------------

def test_config_write_read(dp):
    assert dp.ring_read(VIP_ID) is None
    dp.ring_config(VIP_ID, 11)
    assert dp.ring_read(VIP_ID) == [-1] * 11
    dp.ring_backend(VIP_ID, 3, NAT_BACKEND)
    dp.ring_write(VIP_ID, [(0, 3), (10, 3), (4, -1)])
    assert dp.ring_read(VIP_ID) == [3] + [-1] * 9 + [3]
    assert dp.ring_stats() == {"rings": 1, "slots_written": 3, "scheduled": 0, "bytes_used": 11 * 2 + 4 * 16}
    dp.ring_config(VIP_ID, 5)               # a new ring replaces the old one, empty
    assert dp.ring_read(VIP_ID) == [-1] * 5
    assert dp.ring_stats()["bytes_used"] == 5 * 2
    dp.ring_config(VIP_ID, 0)
    assert dp.ring_read(VIP_ID) is None
    assert dp.ring_stats()["rings"] == dp.ring_stats()["bytes_used"] == 0


def test_reads_page_through_a_large_ring(dp):
    table = maglev.build([Backend(f"192.0.2.{i}", 80) for i in range(1, 4)])
    dp.ring_config(VIP_ID, len(table))
    dp.ring_write(VIP_ID, list(enumerate(table)))
    assert dp.ring_read(VIP_ID) == table


@pytest.mark.parametrize("call", [
    lambda dp: dp.ring_config(0, 7),
    lambda dp: dp.ring_config(consts.RING_MAX_VIPS, 7),
    lambda dp: dp.ring_config(VIP_ID, consts.RING_MAX_SIZE + 1),
    lambda dp: dp.ring_config(VIP_ID, -1),
    lambda dp: dp.ring_backend(VIP_ID, 0, NAT_BACKEND._replace(mode=consts.CONN_FULLNAT)),
    lambda dp: dp.ring_backend(VIP_ID, 0, NAT_BACKEND._replace(mode=9)),
    lambda dp: dp.ring_backend(VIP_ID, consts.RING_MAX_BACKENDS, NAT_BACKEND),
    lambda dp: dp.ring_backend(VIP_ID, 0, NAT_BACKEND._replace(address=b"\x01")),
    lambda dp: dp.ring_backend(VIP_ID, 0, NAT_BACKEND._replace(port=70000)),
    lambda dp: dp.ring_write(VIP_ID, [(0, 1), (7, 1)]),
    lambda dp: dp.ring_write(VIP_ID, [(0, 1), (1, consts.RING_MAX_BACKENDS)]),
    lambda dp: dp.ring_write(VIP_ID, [(0, -2)]),
], ids=["vip-0", "vip-too-big", "size-too-big", "size-negative", "fullnat", "bad-mode", "index-too-big",
        "short-address", "port-too-big", "slot-outside", "value-too-big", "value-negative"])
def test_bad_arguments_are_value_errors_and_change_nothing(dp, call):
    dp.ring_config(VIP_ID, 7)
    with pytest.raises(ValueError):
        call(dp)
    assert dp.ring_read(VIP_ID) == [-1] * 7
    assert dp.ring_stats() == {"rings": 1, "slots_written": 0, "scheduled": 0, "bytes_used": 14}


def test_a_vip_without_a_ring_is_enoent(dp):
    for call in (lambda: dp.ring_backend(VIP_ID, 0, NAT_BACKEND), lambda: dp.ring_write(VIP_ID, [(0, 0)])):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.ENOENT


# -- scheduling ---------------------------------------------------------------------------------------------------

def test_a_syn_is_scheduled_rewritten_and_reported(dp):
    ring_of_one(dp)
    pkt = tcp()
    out = only_output(send(dp, pkt), BACKEND_SIDE)
    assert out == routed(pkt, BACKEND_MAC, dst=BACKEND, dport=BACKEND_PORT)
    conn = dp.conn_get(client_tuple())
    assert (conn.mode, conn.state, conn.vip_id, conn.backend_id, conn.packets) == \
        (consts.CONN_NAT, consts.CS_SYN, VIP_ID, 5, 1)
    assert conn.reply == ConnTuple(6, ip(BACKEND), ip(CLIENT), BACKEND_PORT, 40000)
    assert dp.conn_events() == [], "a half-open connection is not reported: a SYN flood costs the slow path nothing"
    assert dp.upcalls() == []
    assert dp.ring_stats()["scheduled"] == 1
    s = dp.conn_stats()
    assert (s["inserts"], s["misses"], s["hits"]) == (1, 0, 0)
    # The backend's answer and the client's next packet find the connection like any other.
    back = reply_tcp()
    assert only_output(send(dp, back, BACKEND_SIDE), CLIENT_PORT) == routed(back, CLIENT_MAC, src=VIP, sport=80)
    send(dp, tcp(flags="A"))
    assert dp.conn_get(client_tuple()).state == consts.CS_ESTABLISHED
    assert dp.ring_stats()["scheduled"] == 1 and dp.conn_stats()["hits"] == 2


def test_udp_is_scheduled_on_any_first_packet(dp):
    ring_of_one(dp)
    pkt = udp()
    assert only_output(send(dp, pkt), BACKEND_SIDE) == routed(pkt, BACKEND_MAC, dst=BACKEND, dport=BACKEND_PORT)
    assert dp.conn_get(client_tuple(proto=17, dport=53)).state == consts.CS_UDP


@pytest.mark.parametrize("mode, proto", [(consts.CONN_IPIP, 4), (consts.CONN_GRE, 47)], ids=["ipip", "gre"])
def test_tunnel_backends(dp, mode, proto):
    ring_of_one(dp, RingBackend(ip(BACKEND), 0, mode, 6, ip(SWITCH)))
    pkt = tcp()
    assert only_output(send(dp, pkt), BACKEND_SIDE) == tunneled(pkt, proto)
    conn = dp.conn_get(client_tuple())
    assert (conn.reply, conn.backend, conn.tunnel_src) == (None, ip(BACKEND), ip(SWITCH))


def test_dsr_backend_keeps_the_vip(dp):
    ring_of_one(dp, RingBackend(ip(BACKEND), 0, consts.CONN_DSR, 6))
    pkt = tcp()
    assert only_output(send(dp, pkt), BACKEND_SIDE) == routed(pkt, BACKEND_MAC)
    assert dp.conn_get(client_tuple()).reply is None


@pytest.mark.parametrize("flags", ["R", "RA"])
def test_a_reset_of_no_connection_goes_up(dp, flags):
    ring_of_one(dp)
    assert send(dp, tcp(flags=flags)) == {p: [] for p in range(4)}
    (up,) = dp.upcalls()
    assert (up.reason, up.userdata) == (consts.UPCALL_CONN_MISS, VIP_ID)
    assert dp.conn_stats()["conns"] == 0 and dp.ring_stats()["scheduled"] == 0


@pytest.mark.parametrize("flags, state", [("A", consts.CS_ESTABLISHED), ("PA", consts.CS_ESTABLISHED),
                                          ("F", consts.CS_FIN_WAIT), ("SA", consts.CS_SYN)])
def test_a_lost_connection_goes_on_to_the_same_backend(dp, flags, state):
    """A later packet of a connection the table does not hold (taken over before it was synced) is scheduled
    like a SYN: the ring names the backend the connection had, and the state follows the packet."""
    ring_of_one(dp)
    pkt = tcp(flags=flags)
    assert only_output(send(dp, pkt), BACKEND_SIDE) == routed(pkt, BACKEND_MAC, dst=BACKEND, dport=BACKEND_PORT)
    assert dp.conn_get(client_tuple()).state == state
    assert dp.ring_stats()["scheduled"] == 1 and dp.upcalls() == []


def test_an_empty_slot_or_an_unset_backend_goes_up(dp):
    dp.ring_config(VIP_ID, 7)
    send(dp, tcp())
    reasons = [u.reason for u in dp.upcalls()]
    dp.ring_write(VIP_ID, [(slot, 4) for slot in range(7)])     # backend 4 never set
    send(dp, tcp())
    reasons += [u.reason for u in dp.upcalls()]
    assert reasons == [consts.UPCALL_CONN_MISS] * 2
    assert dp.conn_stats()["misses"] == 2 and dp.conn_stats()["conns"] == 0


def test_other_vips_are_not_scheduled(dp):
    ring_of_one(dp)
    dp.ring_config(VIP_ID, 0)
    send(dp, tcp())
    assert dp.upcalls()[0].reason == consts.UPCALL_CONN_MISS


def test_the_slot_is_the_one_maglev_lookup_names(dp):
    """Three backends from a real Maglev table: each client lands where maglev.lookup says."""
    backends = [Backend(f"203.0.113.{i}", 8080) for i in (5, 6, 7)]
    table = maglev.build(backends, 13)
    dp.ring_config(VIP_ID, 13)
    for index, b in enumerate(maglev.ordered(backends)):
        dp.ring_backend(VIP_ID, index, RingBackend(ip(b.address), b.port, consts.CONN_NAT, index + 1))
        dp.neigh_set(30, ip(b.address), BACKEND_MAC, BACKEND_SIDE)
    dp.ring_write(VIP_ID, list(enumerate(table)))
    for n in range(40):
        client = f"192.0.2.{100 + n}"
        dp.neigh_set(10, ip(client), CLIENT_MAC, CLIENT_PORT)
        send(dp, tcp(src=client))
        want = maglev.lookup(table, maglev.client_hash(ip(client))) + 1
        assert dp.conn_get(client_tuple(src=client)).backend_id == want


def test_a_full_table_refuses_and_counts_without_an_upcall(dp):
    ring_of_one(dp)
    dp.conn_config(3)
    for sport in range(3):
        send(dp, tcp(sport=sport + 1))
        send(dp, tcp(sport=sport + 1, flags="A"))       # established: never evicted for a SYN
    assert send(dp, tcp(sport=9)) == {p: [] for p in range(4)}
    assert dp.upcalls() == []
    s = dp.conn_stats()
    assert (s["refused"], s["conns"]) == (1, 3) and dp.ring_stats()["scheduled"] == 3


def test_an_unresolved_backend_goes_up_with_the_connection_in_place(dp):
    far = "203.0.113.77"                                  # no neighbor yet
    ring_of_one(dp, NAT_BACKEND._replace(address=ip(far)))
    pkt = tcp()
    send(dp, pkt)
    (up,) = dp.upcalls()
    assert (up.reason, up.data) == (consts.UPCALL_NO_NEIGH, bytes(pkt))
    assert dp.conn_get(client_tuple()).backend == ip(far)
    dp.neigh_set(30, ip(far), BACKEND_MAC, BACKEND_SIDE)
    assert only_output(send(dp, tcp()), BACKEND_SIDE) == routed(tcp(), BACKEND_MAC, dst=far, dport=BACKEND_PORT)


# -- C and twin alike ---------------------------------------------------------------------------------------------

R_CLIENTS = [f"192.0.2.{i}" for i in (10, 11, 12, 13, 14)]
R_BACKENDS = ["203.0.113.5", "203.0.113.6", "198.51.100.70", "203.0.113.99"]   # the last has no neighbor


@st.composite
def r_backends(draw):
    mode = draw(st.sampled_from(consts.RING_MODES))
    return RingBackend(ip(draw(st.sampled_from(R_BACKENDS))), draw(st.sampled_from([80, 8080])), mode,
                       draw(st.integers(1, 9)), ip(SWITCH))


@st.composite
def r_frames(draw):
    proto = draw(st.sampled_from([6, 6, 17]))
    iph = IP(src=draw(st.sampled_from(R_CLIENTS)), dst=VIP, ttl=draw(st.sampled_from([64, 64, 1])))
    sport = draw(st.sampled_from([40000, 40001]))
    l4 = TCP(sport=sport, dport=80, flags=draw(st.sampled_from(["S", "S", "A", "SA", "R"]))) if proto == 6 \
        else UDP(sport=sport, dport=53)
    return bytes(Ether(src=mac(CLIENT_MAC), dst=mac(GW_MAC)) / iph / l4 / b"x")


def r_state(dp):
    conn_stats = dp.conn_stats()
    conn_stats.pop("bytes_used")
    conn_stats.pop("bytes_per_conn")
    return {"outputs": {p: dp.take(p) for p in range(4)}, "upcalls": [tuple(u) for u in dp.upcalls()],
            "stats": dp.stats(), "conn_stats": conn_stats, "conns": dp.conn_dump(), "events": dp.conn_events(),
            "ring": dp.ring_read(VIP_ID), "ring_stats": dp.ring_stats()}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([1, 2, 7, 13]), st.dictionaries(st.integers(0, 5), r_backends(), max_size=4),
       st.sampled_from([2, 100]), st.data())
def test_rings_datapath_equal(size, backends, max_conns, data):
    dps = [make_dp(fastpath), make_dp(refpath)]
    try:
        for dp in dps:
            dp.conn_config(max_conns)
            dp.ring_config(VIP_ID, size)
            for index, b in backends.items():
                dp.ring_backend(VIP_ID, index, b)
        for _round in range(data.draw(st.integers(1, 3))):
            writes = data.draw(st.lists(st.tuples(st.integers(0, size - 1), st.sampled_from([-1, 0, 1, 2, 3, 4, 5])),
                                        max_size=size))
            frames = data.draw(st.lists(r_frames(), max_size=10))
            for dp in dps:
                dp.ring_write(VIP_ID, writes)
                for frame in frames:
                    dp.inject(CLIENT_PORT, frame)
                dp.run(now_ms=T0 + _round)
            assert r_state(dps[0]) == r_state(dps[1])
    finally:
        for dp in dps:
            dp.close()
