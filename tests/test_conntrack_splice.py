"""L7 delayed binding in the connection table, C and twin alike (docs/DATAPATH.md "Hold and splice").

A held connection's packets come up to the slow path untouched (UPCALL_L7); a spliced one's are rewritten by their
connection (nat, fullnat) and then shifted by their direction's splice. The expected frames are built here from
scratch (addresses, ports, TTL and MACs written and every checksum computed by the oracle of
tests/test_splice_rewrite.py), then passed through the twin's tcp_splice_rewrite with the same deltas: what the
engine will compute its deltas against. A differential test runs random operations and segments through both
datapaths.
"""
import errno
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pyswitch import actions as A, consts, fastpath, refpath
from pyswitch.datapath_types import Conn, ConnTuple, Splice
from pyswitch.ha import sync
from pyswitch.refpath import splice as twin
from test_conntrack import (BACKEND, BACKEND_MAC, BACKEND_PORT, BACKEND_SIDE, CLIENT, CLIENT_MAC, CLIENT_PORT,
                            GW_MAC, SWITCH, T0, TIMEOUTS, VIP, VIP_ID, client_tuple, conn_state, ip, make_dp,
                            nat_conn, only_output, other_conn, send)
from test_splice_rewrite import OPTION_PIECES, ones_sum, pseudo_sum, sack, tcp_checksum, ts

HOLD, SPLICED = consts.CONN_F_HOLD, consts.CONN_F_SPLICED
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
UNRESOLVED = "203.0.113.99"             # on the backends' VLAN, no neighbor: ROUTE would ask for it
L4 = 14 + 20                            # the TCP header of the segments built here
SNAT_PORT = 50000                       # nat_conn's fullnat source port for client port 40000


@pytest.fixture(params=["c", "python"])
def dp(request):
    d = make_dp(fastpath if request.param == "c" else refpath)
    yield d
    d.close()


def segment(src, dst, sport, dport, seq=1000, ack=2000, flags=ACK | PSH, options=b"", payload=b"GET / HTTP/1.1\r\n",
            eth_src=CLIENT_MAC, eth_dst=GW_MAC, ttl=64, doff=None, partial=False):
    """An Ethernet/IPv4/TCP frame with every checksum computed by the oracle (the pseudo-header's sum in the TCP
    field if `partial`); `options` padded with EOL to a multiple of 4."""
    options += b"\0" * (-len(options) % 4)
    tcp_len = 20 + len(options)
    doff = tcp_len // 4 if doff is None else doff
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0) + options + payload
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, ttl, 6, 0, ip(src), ip(dst))
    iph = iph[:10] + struct.pack("!H", ~ones_sum(iph) & 0xFFFF) + iph[12:]
    out = bytearray(eth_dst + eth_src + b"\x08\x00" + iph + tcp)
    check = pseudo_sum(iph, len(tcp)) if partial else tcp_checksum(bytes(out))
    out[L4 + 16:L4 + 18] = struct.pack("!H", check)
    return bytes(out)


def client_segment(**fields):
    return segment(CLIENT, VIP, 40000, 80, **fields)


def reply_segment(mode=consts.CONN_NAT, **fields):
    dst, dport = (SWITCH, SNAT_PORT) if mode == consts.CONN_FULLNAT else (CLIENT, 40000)
    return segment(BACKEND, dst, BACKEND_PORT, dport, eth_src=BACKEND_MAC, **fields)


def nat_output(mode, reply, **fields):
    """What nat or fullnat (no splice) makes of the segment with `fields`, routed: built, not rewritten."""
    fields = dict(fields, eth_src=GW_MAC, ttl=63)
    if reply:
        dst, dport = (CLIENT, 40000)
        return segment(VIP, dst, 80, dport, eth_dst=CLIENT_MAC, **fields)
    src, sport = (SWITCH, SNAT_PORT) if mode == consts.CONN_FULLNAT else (CLIENT, 40000)
    return segment(src, BACKEND, sport, BACKEND_PORT, eth_dst=BACKEND_MAC, **fields)


def expected(mode, reply, splice, **fields):
    """The spliced output: the NAT output shifted by the twin's rewrite, which must find the segment good."""
    r = twin.tcp_splice_rewrite(nat_output(mode, reply, **fields), None, splice)
    assert r.result == consts.SPLICE_OK
    return r.frame


def u32(data: bytes, at: int) -> int:
    return struct.unpack_from("!I", data, at)[0]


def upcalls(dp):
    return [(u.reason, u.userdata, u.data) for u in dp.upcalls()]


def held_conn(mode=consts.CONN_NAT, **kw):
    return nat_conn(mode, **kw)._replace(flags=HOLD)


# -- hold ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [consts.CONN_NAT, consts.CONN_FULLNAT], ids=["nat", "fullnat"])
def test_a_held_connection_comes_up_untouched_both_ways(dp, mode):
    dp.conn_add(held_conn(mode), now_ms=T0)
    for now, frame, port in ((T0 + 10, client_segment(flags=SYN), CLIENT_PORT),
                             (T0 + 20, reply_segment(mode, flags=SYN | ACK), BACKEND_SIDE)):
        outputs = send(dp, frame, port, now=now)
        assert all(not frames for frames in outputs.values()), "nothing forwarded"
        assert upcalls(dp) == [(consts.UPCALL_L7, VIP_ID, frame)]
    conn = dp.conn_get(client_tuple())
    assert (conn.state, conn.packets, conn.bytes, conn.flags) == (consts.CS_SYN, 0, 0, HOLD)
    assert (conn.created_ms, conn.used_ms) == (T0, T0 + 20), "recency moves, nothing else"
    s = dp.conn_stats()
    assert (s["l7_upcalls"], s["hits"], s["misses"]) == (2, 2, 0)
    assert dp.stats()["routed"] == 0 and dp.conn_events() == [], "no RTT event from a held SYN+ACK"


def test_hold_is_decided_before_routing(dp):
    """A held connection whose backend ROUTE could not resolve still goes up as L7, not as NO_NEIGH."""
    conn = held_conn()._replace(reply=ConnTuple(6, ip(UNRESOLVED), ip(CLIENT), BACKEND_PORT, 40000))
    dp.conn_add(conn, now_ms=T0)
    frame = client_segment()
    send(dp, frame)
    assert upcalls(dp) == [(consts.UPCALL_L7, VIP_ID, frame)]
    dp.conn_hold(client_tuple(), False)
    send(dp, frame)
    assert [u.reason for u in dp.upcalls()] == [consts.UPCALL_NO_NEIGH]


def test_an_active_hold_does_not_expire(dp):
    dp.conn_config(None, TIMEOUTS)                   # SYN: 100 ms
    dp.conn_add(held_conn(), now_ms=T0)
    send(dp, client_segment(flags=SYN), now=T0 + 90)
    assert dp.conn_expire(now_ms=T0 + 150) == 0
    assert dp.conn_expire(now_ms=T0 + 190) == 1


def test_releasing_the_hold_forwards_as_plain_nat(dp):
    dp.conn_add(held_conn(), now_ms=T0)
    send(dp, client_segment(flags=SYN))
    dp.conn_hold(client_tuple(), False)
    assert dp.conn_get(client_tuple()).flags == 0
    out = only_output(send(dp, client_segment(flags=SYN), now=T0 + 5), BACKEND_SIDE)
    assert out == nat_output(consts.CONN_NAT, False, flags=SYN)
    out = only_output(send(dp, reply_segment(flags=SYN | ACK), BACKEND_SIDE, now=T0 + 6), CLIENT_PORT)
    assert out == nat_output(consts.CONN_NAT, True, flags=SYN | ACK)
    conn = dp.conn_get(client_tuple())
    assert (conn.packets, conn.state) == (2, consts.CS_SYN)
    assert dp.conn_stats()["l7_upcalls"] == 1
    dp.conn_hold(client_tuple(), True)
    assert dp.conn_get(client_tuple()).flags == HOLD
    send(dp, client_segment())
    assert [u.reason for u in dp.upcalls()] == [consts.UPCALL_L7]


@pytest.mark.parametrize("conn", [
    other_conn(consts.CONN_DSR)._replace(flags=HOLD),
    other_conn(consts.CONN_IPIP)._replace(flags=HOLD),
    nat_conn(proto=17)._replace(flags=HOLD),
    nat_conn(consts.CONN_FULLNAT, proto=17)._replace(flags=HOLD),
    nat_conn()._replace(flags=SPLICED),              # only conn_splice makes it
    nat_conn()._replace(flags=HOLD | SPLICED),
    nat_conn()._replace(flags=0x1), nat_conn()._replace(flags=0x2), nat_conn()._replace(flags=0xFF),
    nat_conn()._replace(flags=0x400), nat_conn()._replace(flags=0x8000),
], ids=["dsr", "ipip", "udp", "fullnat-udp", "spliced", "hold-spliced", "internal-1", "internal-2", "internal-ff",
        "0x400", "0x8000"])
def test_add_refuses_hold_where_it_cannot_splice_and_other_flags(dp, conn):
    with pytest.raises(OSError) as e:
        dp.conn_add(conn, now_ms=T0)
    assert e.value.errno == errno.EINVAL and dp.conn_stats()["conns"] == 0


def test_flags_beyond_16_bits_do_not_fit(dp):
    with pytest.raises(ValueError):
        dp.conn_add(nat_conn()._replace(flags=0x10000), now_ms=T0)


def test_hold_refused_alike(dp):
    dp.conn_add(other_conn(consts.CONN_DSR), now_ms=T0)
    dp.conn_add(nat_conn(proto=17, sport=5000), now_ms=T0)
    for client, hold in ((client_tuple(), True), (client_tuple(proto=17, sport=5000, dport=80), True),
                         (client_tuple(proto=17, sport=5000, dport=80), False)):
        with pytest.raises(OSError) as e:
            dp.conn_hold(client, hold)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        dp.conn_hold(client_tuple(sport=1), True)
    assert e.value.errno == errno.ENOENT


def test_internal_flags_are_never_reported(dp):
    """The RTT flag (internal bit 1) is set by the backend's SYN+ACK; conn_get reports none of it."""
    dp.conn_add(nat_conn(), now_ms=T0)
    send(dp, reply_segment(flags=SYN | ACK), BACKEND_SIDE)
    assert dp.conn_get(client_tuple()).flags == 0 and dp.conn_dump()[0].flags == 0


# -- splice ----------------------------------------------------------------------------------------------------------

# Client ISN c, the switch's cookie s, its ISN toward the backend c2, the backend's b (docs/L7.md).
C_ISN, S_ISN, C2_ISN, B_ISN = 0xFFFFFF00, 0x10, 0x7FFFFFF0, 0xFFFFFFFA
DELTA = 0xFFFFFFFF


def splices(timestamps=True, ts_client=0x100, ts_switch=0xFFFFFF00, ts_backend=0x80000000):
    """The deltas docs/L7.md derives from the four ISNs (wrapping at 2**32) and, with timestamps, the clocks."""
    to_backend = Splice(seq_delta=(C2_ISN - C_ISN) & DELTA, ack_delta=(B_ISN - S_ISN) & DELTA,
                        tsval_delta=(ts_switch - ts_client) & DELTA if timestamps else 0,
                        tsecr_delta=(ts_backend - ts_switch) & DELTA if timestamps else 0, timestamps=timestamps)
    to_client = Splice(seq_delta=(S_ISN - B_ISN) & DELTA, ack_delta=(C_ISN - C2_ISN) & DELTA,
                       tsval_delta=(ts_switch - ts_backend) & DELTA if timestamps else 0,
                       tsecr_delta=(ts_client - ts_switch) & DELTA if timestamps else 0, timestamps=timestamps)
    return to_backend, to_client


@pytest.mark.parametrize("mode", [consts.CONN_NAT, consts.CONN_FULLNAT], ids=["nat", "fullnat"])
@pytest.mark.parametrize("timestamps", [True, False], ids=["ts", "no-ts"])
def test_spliced_segments_are_the_nat_rewrite_shifted(dp, mode, timestamps):
    to_backend, to_client = splices(timestamps)
    dp.conn_add(held_conn(mode, state=consts.CS_ESTABLISHED), now_ms=T0)
    dp.conn_splice(client_tuple(), to_backend, to_client)
    conn = dp.conn_get(client_tuple())
    assert conn.flags == SPLICED and conn.backend == ip(BACKEND), "HOLD cleared, the backend reported as added"
    assert dp.conn_get_splice(client_tuple()) == (to_backend, to_client)

    # The request, 200 bytes into the client's stream (near 2**32), with a timestamp.
    fields = dict(seq=(C_ISN + 200) & DELTA, ack=S_ISN + 1, options=b"\x01\x01" + ts(0x150, 0xFFFFFF20))
    out = only_output(send(dp, client_segment(**fields), now=T0 + 1), BACKEND_SIDE)
    assert out == expected(mode, False, to_backend, **fields)
    assert (u32(out, L4 + 4), u32(out, L4 + 8)) == ((C2_ISN + 200) & DELTA, (B_ISN + 1) & DELTA)
    tsval, tsecr = u32(out, L4 + 24), u32(out, L4 + 28)
    assert (tsval, tsecr) == ((0xFFFFFF50, 0x80000020) if timestamps else (0x150, 0xFFFFFF20))
    assert struct.unpack_from("!H", out, L4 + 16)[0] == tcp_checksum(out)

    # The backend's answer acknowledges it and SACKs two later blocks of the client's, in its own numbers.
    blocks = ((C2_ISN + 300) & DELTA, (C2_ISN + 400) & DELTA), ((C2_ISN + 500) & DELTA, (C2_ISN + 600) & DELTA)
    fields = dict(seq=(B_ISN + 1) & DELTA, ack=(C2_ISN + 300) & DELTA, payload=b"HTTP/1.1 200 OK\r\n",
                  options=b"\x01\x01" + ts(0x80000100, 0xFFFFFF50) + b"\x01\x01" + sack(*blocks))
    out = only_output(send(dp, reply_segment(mode, **fields), BACKEND_SIDE, now=T0 + 2), CLIENT_PORT)
    assert out == expected(mode, True, to_client, **fields)
    assert (u32(out, L4 + 4), u32(out, L4 + 8)) == (S_ISN + 1, (C_ISN + 300) & DELTA)
    edges = [u32(out, L4 + 36 + 4 * k) for k in range(4)]
    assert edges == [(C_ISN + n) & DELTA for n in (300, 400, 500, 600)], "SACK edges name the client's bytes"
    if timestamps:
        assert (u32(out, L4 + 24), u32(out, L4 + 28)) == ((0x80000100 + 0x7FFFFF00) & DELTA, 0x150)
    assert struct.unpack_from("!H", out, L4 + 16)[0] == tcp_checksum(out)

    s = dp.conn_stats()
    assert (s["splices"], s["splice_rewritten"], s["splice_dropped"], s["l7_upcalls"]) == (1, 2, 0, 0)
    assert dp.conn_get(client_tuple()).packets == 2


def test_a_spliced_partial_checksum_keeps_the_pseudo_header_sum(dp):
    """NEEDS_CSUM (a GSO frame's): the NAT rewrite keeps the pseudo-header's sum, the deltas leave it."""
    to_backend, to_client = splices()
    dp.conn_add(nat_conn(state=consts.CS_ESTABLISHED), now_ms=T0)
    dp.conn_splice(client_tuple(), to_backend, to_client)
    vnet = struct.pack("<BBHHHH", consts.VNET_F_NEEDS_CSUM, 0, 0, 0, L4, 16)
    fields = dict(seq=C_ISN + 1, ack=S_ISN + 1, options=b"\x01\x01" + ts(1, 2), partial=True)
    dp.inject(CLIENT_PORT, client_segment(**fields), vnet)
    dp.run(now_ms=T0)
    [(out, out_vnet)] = dp.take(BACKEND_SIDE)
    want = twin.tcp_splice_rewrite(nat_output(consts.CONN_NAT, False, **fields), vnet, to_backend)
    assert (out, out_vnet) == (want.frame, vnet)
    assert struct.unpack_from("!H", out, L4 + 16)[0] == pseudo_sum(out[14:L4], len(out) - L4)


def test_splicing_again_replaces_the_deltas(dp):
    dp.conn_add(nat_conn(state=consts.CS_ESTABLISHED), now_ms=T0)
    dp.conn_splice(client_tuple(), Splice(seq_delta=1), Splice(ack_delta=2))
    new = (Splice(seq_delta=-5, ack_delta=7, timestamps=True), Splice(seq_delta=3))
    dp.conn_splice(client_tuple(), *new)
    assert dp.conn_get_splice(client_tuple()) == (Splice(seq_delta=2**32 - 5, ack_delta=7, timestamps=True),
                                                 Splice(seq_delta=3))
    assert dp.conn_stats()["splices"] == 1
    out = only_output(send(dp, client_segment(seq=100, ack=50)), BACKEND_SIDE)
    assert (u32(out, L4 + 4), u32(out, L4 + 8)) == (95, 57)


def test_splice_clears_a_renewed_hold(dp):
    dp.conn_add(nat_conn(state=consts.CS_ESTABLISHED), now_ms=T0)
    dp.conn_splice(client_tuple(), Splice(seq_delta=1), Splice())
    dp.conn_hold(client_tuple(), True)
    assert dp.conn_get(client_tuple()).flags == HOLD | SPLICED
    send(dp, client_segment())
    assert [u.reason for u in dp.upcalls()] == [consts.UPCALL_L7], "a hold wins over the splice"
    dp.conn_splice(client_tuple(), Splice(seq_delta=1), Splice())
    assert dp.conn_get(client_tuple()).flags == SPLICED
    only_output(send(dp, client_segment()), BACKEND_SIDE)


def test_a_clients_new_syn_on_a_spliced_connection_goes_up(dp):
    """The client reuses the ports for a new connection: the engine's handshake answers it, the old deltas
    would turn it into nonsense.  A SYN+ACK, or any SYN from the backend's side, is spliced as usual."""
    dp.conn_add(nat_conn(state=consts.CS_FIN_WAIT), now_ms=T0)
    dp.conn_splice(client_tuple(), Splice(seq_delta=1), Splice(seq_delta=2))
    syn = client_segment(flags=SYN)
    outputs = send(dp, syn)
    assert all(not frames for frames in outputs.values())
    assert upcalls(dp) == [(consts.UPCALL_L7, VIP_ID, syn)]
    assert dp.conn_get(client_tuple()).state == consts.CS_FIN_WAIT, "the old connection is the engine's to end"
    only_output(send(dp, client_segment(flags=SYN | ACK)), BACKEND_SIDE)
    only_output(send(dp, reply_segment(flags=SYN), BACKEND_SIDE), CLIENT_PORT)
    assert dp.conn_stats()["l7_upcalls"] == 1


def test_a_route_upcall_of_a_spliced_connection_carries_the_frame_untouched(dp):
    conn = nat_conn(state=consts.CS_ESTABLISHED)._replace(
        reply=ConnTuple(6, ip(UNRESOLVED), ip(CLIENT), BACKEND_PORT, 40000))
    dp.conn_add(conn, now_ms=T0)
    dp.conn_splice(client_tuple(), Splice(seq_delta=9), Splice())
    frame = client_segment(options=b"\x05\x0c" + bytes(10))      # bad options too: the route decides first
    send(dp, frame)
    assert [(u.reason, u.data) for u in dp.upcalls()] == [(consts.UPCALL_NO_NEIGH, frame)]
    s = dp.conn_stats()
    assert (s["splice_rewritten"], s["splice_dropped"]) == (0, 0)


@pytest.mark.parametrize("options", [
    b"\x05\x0c" + bytes(10),                 # SACK of a block and a half
    b"\x08\x09" + bytes(7),                  # a 9-byte timestamp
    b"\x01\x01" + ts(1, 2) + b"\x05\x10" + bytes(4),     # SACK running past the header
    b"\x02\x00",                             # length 0
])
@pytest.mark.parametrize("reply", [False, True], ids=["client", "reply"])
def test_bad_options_on_a_spliced_connection_are_dropped_and_counted(dp, options, reply):
    dp.conn_add(nat_conn(state=consts.CS_ESTABLISHED), now_ms=T0)
    dp.conn_splice(client_tuple(), *splices())
    frame = (reply_segment if reply else client_segment)(flags=FIN | ACK, options=options)
    outputs = send(dp, frame, BACKEND_SIDE if reply else CLIENT_PORT)
    assert all(not frames for frames in outputs.values()) and dp.upcalls() == []
    conn = dp.conn_get(client_tuple())
    assert (conn.packets, conn.state) == (0, consts.CS_ESTABLISHED), "dropped before it counts: no FIN_WAIT"
    s = dp.conn_stats()
    assert (s["splice_dropped"], s["splice_rewritten"], s["hits"]) == (1, 0, 1)
    assert dp.stats()["routed"] == 0


def test_a_data_offset_past_the_frame_is_dropped(dp):
    """The parser refuses such a frame on a port; execute() hands it to LB as it is."""
    dp.conn_add(nat_conn(state=consts.CS_ESTABLISHED), now_ms=T0)
    dp.conn_splice(client_tuple(), *splices())
    dp.execute(CLIENT_PORT, client_segment(doff=15, payload=b"short"), bytes(10), [A.lb(VIP_ID)], now_ms=T0)
    assert all(not dp.take(p) for p in range(4))
    assert dp.conn_stats()["splice_dropped"] == 1


def test_the_same_options_unspliced_are_forwarded(dp):
    """Only a splice cares about options: plain nat forwards what it does not understand."""
    dp.conn_add(nat_conn(state=consts.CS_ESTABLISHED), now_ms=T0)
    only_output(send(dp, client_segment(options=b"\x05\x0c" + bytes(10))), BACKEND_SIDE)


def test_splice_refusals(dp):
    dp.conn_add(nat_conn(), now_ms=T0)
    dp.conn_add(other_conn(consts.CONN_DSR, sport=40001), now_ms=T0)
    dp.conn_add(other_conn(consts.CONN_GRE, sport=40002), now_ms=T0)
    dp.conn_add(nat_conn(proto=17, sport=5000), now_ms=T0)
    for client in (client_tuple(sport=40001), client_tuple(sport=40002), client_tuple(17, sport=5000)):
        with pytest.raises(OSError) as e:
            dp.conn_splice(client, Splice(), Splice())
        assert e.value.errno == errno.EINVAL
    for bad in (Splice(src=ip(SWITCH)), Splice(dst=ip(BACKEND)), Splice(sport=1), Splice(dport=8080)):
        for to_backend, to_client in ((bad, Splice()), (Splice(), bad)):
            with pytest.raises(OSError) as e:
                dp.conn_splice(client_tuple(), to_backend, to_client)
            assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        dp.conn_splice(client_tuple(sport=1), Splice(), Splice())
    assert e.value.errno == errno.ENOENT
    for bad in (Splice(src=b"\x01"), Splice(sport=70000), Splice(seq_delta="1")):
        with pytest.raises(ValueError):
            dp.conn_splice(client_tuple(), bad, Splice())
    assert dp.conn_get_splice(client_tuple()) is None and dp.conn_get_splice(client_tuple(sport=1)) is None
    s = dp.conn_stats()
    assert (s["splices"], s["splice_refused"]) == (0, 0)
    assert [c.flags for c in dp.conn_dump()] == [0, 0, 0, 0]


def test_splice_table_bound(dp):
    for bad in (0, consts.CT_MAX_CONNS + 1):
        with pytest.raises(OSError) as e:
            dp.splice_config(bad)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(ValueError):
        dp.splice_config(-1)
    assert dp.conn_stats()["max_splices"] == consts.CT_MAX_SPLICES_DEFAULT
    dp.splice_config(2)
    for sport in (1, 2, 3):
        dp.conn_add(nat_conn(sport=sport), now_ms=T0)
    dp.conn_splice(client_tuple(sport=1), Splice(seq_delta=1), Splice())
    dp.conn_splice(client_tuple(sport=2), Splice(seq_delta=2), Splice())
    with pytest.raises(OSError) as e:
        dp.conn_splice(client_tuple(sport=3), Splice(seq_delta=3), Splice())
    assert e.value.errno == errno.ENOSPC
    dp.conn_splice(client_tuple(sport=2), Splice(seq_delta=4), Splice())     # a replacement needs no room
    s = dp.conn_stats()
    assert (s["splices"], s["max_splices"], s["splice_refused"]) == (2, 2, 1)
    assert dp.conn_get(client_tuple(sport=3)).flags == 0
    with pytest.raises(OSError) as e:
        dp.splice_config(1)
    assert e.value.errno == errno.EBUSY
    dp.splice_config(3)
    dp.conn_splice(client_tuple(sport=3), Splice(seq_delta=3), Splice())
    assert dp.conn_stats()["splices"] == 3


def full_of_splices(dp):
    """A table of max_splices 1 holding one spliced connection (client port 1) and an unspliced one (2)."""
    dp.conn_config(None, TIMEOUTS)
    dp.splice_config(1)
    dp.conn_add(nat_conn(sport=1, state=consts.CS_SYN), now_ms=T0)
    dp.conn_add(nat_conn(sport=2, state=consts.CS_ESTABLISHED), now_ms=T0)
    dp.conn_splice(client_tuple(sport=1), Splice(seq_delta=1), Splice())
    with pytest.raises(OSError):
        dp.conn_splice(client_tuple(sport=2), Splice(seq_delta=2), Splice())


def splice_fits_again(dp):
    assert dp.conn_stats()["splices"] == 0 and dp.conn_get_splice(client_tuple(sport=1)) is None
    dp.conn_splice(client_tuple(sport=2), Splice(seq_delta=2), Splice())
    assert dp.conn_stats()["splices"] == 1
    assert dp.conn_get_splice(client_tuple(sport=2)) == (Splice(seq_delta=2), Splice())


def test_a_splice_is_freed_on_del(dp):
    full_of_splices(dp)
    assert dp.conn_del(client_tuple(sport=1))
    splice_fits_again(dp)


def test_a_splice_is_freed_on_expiry(dp):
    full_of_splices(dp)
    assert dp.conn_expire(now_ms=T0 + 100) == 1            # the SYN one
    splice_fits_again(dp)


def test_a_splice_is_freed_on_eviction(dp):
    dp.conn_config(2)
    full_of_splices(dp)
    dp.conn_add(nat_conn(sport=3), now_ms=T0 + 1)          # evicts the SYN one, spliced
    assert dp.conn_get(client_tuple(sport=1)) is None and dp.conn_stats()["evictions"] == 1
    splice_fits_again(dp)


def test_a_re_added_connection_is_not_spliced(dp):
    dp.conn_add(nat_conn(), now_ms=T0)
    dp.conn_splice(client_tuple(), Splice(seq_delta=1), Splice())
    dp.conn_del(client_tuple())
    dp.conn_add(nat_conn(), now_ms=T0)
    assert dp.conn_get(client_tuple()).flags == 0 and dp.conn_get_splice(client_tuple()) is None
    out = only_output(send(dp, client_segment()), BACKEND_SIDE)
    assert out == nat_output(consts.CONN_NAT, False)


def test_the_splice_table_memory_of_c():
    d = fastpath.Datapath()
    try:
        d.conn_add(nat_conn(), now_ms=T0)
        before = d.conn_stats()["bytes_used"]
        d.conn_splice(client_tuple(), Splice(seq_delta=1), Splice())
        grown = d.conn_stats()["bytes_used"] - before
        assert 0 < grown <= 64 * 128, "the first splice allocates a small table, not max_splices entries"
        d.conn_del(client_tuple())
        d.splice_config(10)                                 # none in use: the table is freed
        assert d.conn_stats()["bytes_used"] == before
    finally:
        d.close()


def test_ha_sync_sends_no_l7_connection():
    """A held or spliced connection needs this switch's engine and deltas: the peer is never told of it."""
    sender = sync.SyncSender(epoch=1)
    plain, held, spliced = nat_conn(sport=1), held_conn(sport=2), nat_conn(sport=3)._replace(flags=SPLICED)
    for conn in (plain, held, spliced):
        sender.conn(conn)
    sent = [e for payload in sender.flush(0.0) for e in sync.decode(payload).entries]
    assert sent == [plain]
    sender.conn(nat_conn(sport=4))
    sender.conn(held_conn(sport=4))                         # it began to hold before the flush
    assert sender.pending() == 0
    dump = [e for payload in sender.full([plain, held, spliced], [], 1.0) for e in sync.decode(payload).entries]
    assert dump == [plain]


# -- C and twin alike ------------------------------------------------------------------------------------------------

D_CLIENTS = ["192.0.2.10", "192.0.2.11"]
D_SPORTS = [40000, 40001, 40002]
D_FLAGS = st.sampled_from([ACK, ACK, ACK | PSH, SYN, SYN | ACK, FIN | ACK, RST, RST | ACK, 0, PSH])
DELTAS = st.integers(0, 2**32 - 1) | st.sampled_from([0, 1, 2**31, 2**32 - 1]) | st.integers(-5, -1)


@st.composite
def d_conns(draw):
    """Mostly nat and fullnat TCP connections (held or not), some a splice refuses (dsr, UDP)."""
    kind = draw(st.sampled_from(["nat", "nat", "fullnat", "fullnat", "dsr", "udp"]))
    src = draw(st.sampled_from(D_CLIENTS))
    sport = draw(st.sampled_from(D_SPORTS))
    proto = 17 if kind == "udp" else 6
    client = ConnTuple(proto, ip(src), ip(VIP), sport, 80)
    state = consts.CS_UDP if proto == 17 else draw(st.sampled_from([1, 2, 2, 3]))
    if kind == "dsr":
        return Conn(client, None, ip(BACKEND), bytes(4), consts.CONN_DSR, state, VIP_ID, 1)
    if kind == "fullnat":
        reply = ConnTuple(proto, ip(BACKEND), ip(SWITCH), BACKEND_PORT, SNAT_PORT + D_CLIENTS.index(src) * 2
                          + D_SPORTS.index(sport))
        mode = consts.CONN_FULLNAT
    else:
        reply = ConnTuple(proto, ip(BACKEND), ip(src), BACKEND_PORT, sport)
        mode = consts.CONN_NAT
    flags = HOLD if proto == 6 and draw(st.booleans()) else 0
    return Conn(client, reply, ip(BACKEND), bytes(4), mode, state, draw(st.integers(1, 3)), 2, flags=flags)


# Now and then a port a connection's splice may not set (EINVAL).
d_splices = st.builds(Splice, src=st.none(), dst=st.none(), sport=st.none(),
                      dport=st.sampled_from([None] * 9 + [BACKEND_PORT]),
                      seq_delta=DELTAS, ack_delta=DELTAS, tsval_delta=DELTAS, tsecr_delta=DELTAS,
                      timestamps=st.booleans())


@st.composite
def d_segment(draw, conns):
    """A TCP segment of one of the connections, either way, with options as stacks send them (sometimes damaged),
    any flags and numbers, a full or partial checksum; (port, frame, vnet). A UDP connection's tuple in a TCP
    segment is a stranger's packet, a miss."""
    conn = draw(st.sampled_from(conns))
    reply = conn.reply is not None and draw(st.booleans())
    _proto, src, dst, sport, dport = conn.reply if reply else conn.client
    options = b"".join(draw(st.lists(OPTION_PIECES, max_size=6)))[:40]
    partial = draw(st.booleans())
    fields = dict(seq=draw(DELTAS.map(lambda d: d & DELTA)), ack=draw(DELTAS.map(lambda d: d & DELTA)),
                  flags=draw(D_FLAGS), options=options, payload=draw(st.binary(max_size=24)), partial=partial,
                  eth_src=BACKEND_MAC if reply else CLIENT_MAC)
    frame = segment(".".join(map(str, src)), ".".join(map(str, dst)), sport, dport, **fields)
    vnet = struct.pack("<BBHHHH", consts.VNET_F_NEEDS_CSUM, 0, 0, 0, L4, 16) if partial else bytes(10)
    return (BACKEND_SIDE if reply else CLIENT_PORT), frame, vnet


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except OSError as e:
        return ("errno", e.errno)


def dp_state(dp, conns):
    """Everything the datapath shows (test_conntrack.conn_state) and every connection's splices."""
    return dict(conn_state(dp), splices=[dp.conn_get_splice(c.client) for c in conns])


@st.composite
def d_ops(draw, conns):
    """Operations after every connection was added once: mostly segments and splices."""
    n = len(conns)
    frames = st.tuples(st.just("frames"), st.lists(d_segment(conns), min_size=1, max_size=6))
    splice = st.tuples(st.just("splice"), st.integers(0, n - 1), d_splices, d_splices)
    return draw(st.lists(st.one_of(
        frames, frames, frames, splice, splice,
        st.tuples(st.just("add"), st.integers(0, n - 1), st.booleans()),
        st.tuples(st.just("hold"), st.integers(0, n - 1), st.booleans()),
        st.tuples(st.just("del"), st.integers(0, n - 1)),
        st.tuples(st.just("expire"), st.sampled_from([0, 40, 99, 100, 250, 700])),
    ), min_size=3, max_size=14))


def apply(dp, op, conns, now):
    kind = op[0]
    if kind == "add":
        conn = conns[op[1]]
        return outcome(dp.conn_add, conn if op[2] else conn._replace(flags=0), now)
    if kind == "splice":
        return outcome(dp.conn_splice, conns[op[1]].client, op[2], op[3])
    if kind == "hold":
        return outcome(dp.conn_hold, conns[op[1]].client, op[2])
    if kind == "del":
        return outcome(dp.conn_del, conns[op[1]].client)
    if kind == "expire":
        return outcome(dp.conn_expire, now)
    for port, frame, vnet in op[1]:
        dp.inject(port, frame, vnet)
    return outcome(dp.run, now)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(d_conns(), min_size=1, max_size=6), st.sampled_from([2, 3, 100]), st.sampled_from([1, 1, 2, 100]),
       st.data())
def test_hold_and_splice_datapaths_equal(conns, max_conns, max_splices, data):
    dps = [make_dp(fastpath), make_dp(refpath)]
    try:
        for dp in dps:
            dp.conn_config(max_conns, TIMEOUTS)
            dp.splice_config(max_splices)
        now = T0
        for index, conn in enumerate(conns):
            op = ("add", index, True)        # with its drawn HOLD, or without
            results = [apply(dp, op, conns, now) for dp in dps]
            assert results[0] == results[1], op
        for op in data.draw(d_ops(conns)):
            if op[0] == "expire":
                now += op[1]
            results = [apply(dp, op, conns, now) for dp in dps]
            assert results[0] == results[1], op
            assert dp_state(dps[0], conns) == dp_state(dps[1], conns), op
            now += data.draw(st.sampled_from([0, 1, 50, 100]))
    finally:
        for dp in dps:
            dp.close()
