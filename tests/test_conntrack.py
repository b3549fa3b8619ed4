"""The connection table and the LB actions, C and twin alike (docs/DATAPATH.md "Connection table").

Whole datapaths with memory ports and a fake clock: connections are added as the slow path would, packets go in on
the client port (flow: LB) or the backend port (flow: LB_REPLY), and what comes out is compared with what scapy
builds from scratch, checksums included. The table's own behaviour (states, timeouts, eviction, events, stats) is
checked through the same interface, and a differential test feeds both datapaths random tables and packets.
"""
import errno
import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import GRE, Dot1Q, Ether

from pyswitch import actions as A, consts, fastpath, refpath
from pyswitch.datapath_types import Conn, ConnEvent, ConnTuple
from pyswitch.flowkey import FlowKey

CLIENT, CLIENT2 = "192.0.2.10", "192.0.2.11"
VIP, VIP_ID = "198.51.100.1", 7
BACKEND, BACKEND_PORT = "203.0.113.5", 8080
FAR_BACKEND = "198.51.100.70"               # behind the router 203.0.113.254
SWITCH = "203.0.113.1"                      # the switch's address toward the backends: fullnat and tunnel source
GW_MAC = b"\x02\x00\x00\x00\xff\x01"        # the switch on every VLAN
CLIENT_MAC = b"\x02\x00\x00\x00\x00\x10"
BACKEND_MAC = b"\x02\x00\x00\x00\x00\x05"
ROUTER_MAC = b"\x02\x00\x00\x00\x00\x77"
NH_CLIENTS, NH_BACKENDS, NH_LOCAL, NH_VIA = 1, 2, 3, 4
CLIENT_PORT, BACKEND_SIDE = 1, 3
T0 = 1000                                   # the fake clock's start


def ip(text):
    return ipaddress.IPv4Address(text).packed


def mac(raw):
    return ":".join(f"{b:02x}" for b in raw)


@pytest.fixture(params=["c", "python"])
def impl(request):
    return fastpath if request.param == "c" else refpath


def make_dp(impl):
    d = impl.Datapath(max_upcalls=64)
    for p in range(4):
        d.add_port(p, "memory")
    # Clients on VLAN 10 behind port 1; backends on VLAN 30 behind port 3, some behind a router there.
    d.nexthop_set(NH_CLIENTS, "connected", 10, src_mac=GW_MAC)
    d.nexthop_set(NH_BACKENDS, "connected", 30, src_mac=GW_MAC)
    d.nexthop_set(NH_LOCAL, "local", 30)
    d.nexthop_set(NH_VIA, "gateway", 30, gateway=ip("203.0.113.254"), src_mac=GW_MAC)
    d.route_add(ip("192.0.2.0"), 24, NH_CLIENTS)
    d.route_add(ip("203.0.113.0"), 24, NH_BACKENDS)
    d.route_add(ip(SWITCH), 32, NH_LOCAL)
    d.route_add(ip(VIP), 32, NH_LOCAL)
    d.route_add(ip("198.51.100.64"), 26, NH_VIA)
    d.neigh_set(10, ip(CLIENT), CLIENT_MAC, CLIENT_PORT)
    d.neigh_set(10, ip(CLIENT2), CLIENT_MAC, CLIENT_PORT)
    d.neigh_set(30, ip(BACKEND), BACKEND_MAC, BACKEND_SIDE)
    d.neigh_set(30, ip("203.0.113.254"), ROUTER_MAC, BACKEND_SIDE)
    port_mask = FlowKey.mask_of("in_port")
    d.flow_put(FlowKey(in_port=CLIENT_PORT).pack(), port_mask, 1, [A.lb(VIP_ID)], now_ms=0)
    d.flow_put(FlowKey(in_port=BACKEND_SIDE).pack(), port_mask, 1, [A.lb_reply()], now_ms=0)
    return d


@pytest.fixture
def dp(impl):
    d = make_dp(impl)
    yield d
    d.close()


# -- packets and connections ----------------------------------------------------------------------------------------

def tcp(src=CLIENT, dst=VIP, sport=40000, dport=80, flags="S", ttl=64, tags=(), ip_flags=0, **ip_fields):
    eth = Ether(src=mac(CLIENT_MAC), dst=mac(GW_MAC))
    for vid in tags:
        eth = eth / Dot1Q(vlan=vid)
    return Ether(bytes(eth / IP(src=src, dst=dst, ttl=ttl, flags=ip_flags, **ip_fields)
                       / TCP(sport=sport, dport=dport, flags=flags, seq=100, ack=7) / b"payload"))


def udp(src=CLIENT, dst=VIP, sport=40000, dport=53, ttl=64):
    return Ether(bytes(Ether(src=mac(CLIENT_MAC), dst=mac(GW_MAC)) / IP(src=src, dst=dst, ttl=ttl)
                       / UDP(sport=sport, dport=dport) / b"query"))


def reply_tcp(src=BACKEND, dst=CLIENT, sport=BACKEND_PORT, dport=40000, flags="SA"):
    return Ether(bytes(Ether(src=mac(BACKEND_MAC), dst=mac(GW_MAC)) / IP(src=src, dst=dst, ttl=64)
                       / TCP(sport=sport, dport=dport, flags=flags, seq=900, ack=101) / b"answer"))


def client_tuple(proto=6, src=CLIENT, sport=40000, dport=80):
    return ConnTuple(proto, ip(src), ip(VIP), sport, dport)


def nat_conn(mode=consts.CONN_NAT, proto=6, src=CLIENT, sport=40000, dport=80, state=None, backend_id=3):
    """The slow path's nat/fullnat connection: the backend answers BACKEND:8080 -> client (nat) or -> the switch's
    address and a port of its own (fullnat)."""
    client = client_tuple(proto, src, sport, dport)
    if mode == consts.CONN_FULLNAT:
        reply = ConnTuple(proto, ip(BACKEND), ip(SWITCH), BACKEND_PORT, 50000 + sport % 1000)
    else:
        reply = ConnTuple(proto, ip(BACKEND), ip(src), BACKEND_PORT, sport)
    state = state or (consts.CS_SYN if proto == 6 else consts.CS_UDP)
    return Conn(client, reply, ip(BACKEND), bytes(4), mode, state, VIP_ID, backend_id)


def other_conn(mode, backend=BACKEND, proto=6, sport=40000, state=None):
    """A dsr/ipip/gre connection: no reply tuple."""
    state = state or (consts.CS_SYN if proto == 6 else consts.CS_UDP)
    return Conn(client_tuple(proto, sport=sport, dport=80 if proto == 6 else 53), None, ip(backend), ip(SWITCH),
                mode, state, VIP_ID, 4)


def send(dp, frame, port=CLIENT_PORT, now=T0):
    dp.inject(port, bytes(frame))
    dp.run(now_ms=now)
    return {p: [f for f, _v in dp.take(p)] for p in range(4)}


def only_output(outputs, port):
    assert {p: len(v) for p, v in outputs.items()} == {p: int(p == port) for p in range(4)}, outputs
    return outputs[port][0]


def routed(pkt, dst_mac, **changes):
    """`pkt` as a router makes it after setting IP/L4 `changes` (src, dst, sport, dport): new MACs, untagged,
    TTL - 1, every checksum recomputed by scapy."""
    p = Ether(bytes(pkt))
    inner = p[IP]
    l4 = inner[TCP] if TCP in inner else inner[UDP]
    for name, value in changes.items():
        setattr(inner if name in ("src", "dst") else l4, name, value)
    inner.ttl -= 1
    del inner.chksum
    del l4.chksum
    return bytes(Ether(src=mac(GW_MAC), dst=mac(dst_mac)) / IP(bytes(inner)))


def tunneled(pkt, proto, dst=BACKEND, dst_mac=BACKEND_MAC):
    """`pkt`'s IP packet, untouched, inside an outer header SWITCH -> `dst` (TTL 64, routed: 63; TOS and DF copied;
    id 0), in GRE (no flags, protocol 0x0800) for proto 47."""
    inner = bytes(Ether(bytes(pkt))[IP])
    parsed = IP(inner)
    outer = IP(src=SWITCH, dst=dst, ttl=63, id=0, tos=parsed.tos, flags="DF" if parsed.flags.DF else 0, proto=proto)
    payload = GRE(proto=0x0800) / inner if proto == 47 else inner
    return bytes(Ether(src=mac(GW_MAC), dst=mac(dst_mac)) / outer / payload)


# -- the table through its interface --------------------------------------------------------------------------------

def test_add_get_del_dump(dp):
    conn = nat_conn()
    dp.conn_add(conn, now_ms=T0)
    stored = conn._replace(created_ms=T0, used_ms=T0)
    assert dp.conn_get(conn.client) == stored
    assert dp.conn_get(conn.reply, by_reply=True) == stored
    assert dp.conn_get(conn.reply) is None and dp.conn_get(conn.client, by_reply=True) is None
    assert dp.conn_dump() == [stored]
    udp_conn = nat_conn(proto=17, sport=5000)
    dp.conn_add(udp_conn, now_ms=T0 + 1)
    assert dp.conn_dump() == [stored, udp_conn._replace(created_ms=T0 + 1, used_ms=T0 + 1)]
    assert dp.conn_del(conn.client) is True and dp.conn_del(conn.client) is False
    assert dp.conn_get(conn.reply, by_reply=True) is None
    s = dp.conn_stats()
    assert (s["conns"], s["inserts"], s["deletes"], s["by_state"]["udp"], s["by_state"]["syn"]) == (1, 2, 1, 1, 0)
    assert dp.conn_events() == [], "conn_del reports nothing"


def test_tunnel_and_dsr_connections_have_no_reply(dp):
    for mode in (consts.CONN_DSR, consts.CONN_IPIP, consts.CONN_GRE):
        conn = other_conn(mode, sport=40000 + mode)
        dp.conn_add(conn, now_ms=T0)
        assert dp.conn_get(conn.client).reply is None
    assert dp.conn_get(ConnTuple(0, bytes(4), bytes(4), 0, 0), by_reply=True) is None


@pytest.mark.parametrize("change", [
    dict(mode=0), dict(mode=6), dict(state=0), dict(state=6), dict(state=consts.CS_UDP),
    dict(reply=None), dict(client=ConnTuple(1, ip(CLIENT), ip(VIP), 0, 0)),
    dict(reply=ConnTuple(17, ip(BACKEND), ip(CLIENT), BACKEND_PORT, 40000)),
])
def test_add_refuses_invalid(dp, change):
    with pytest.raises(OSError) as e:
        dp.conn_add(nat_conn()._replace(**change), now_ms=T0)
    assert e.value.errno == errno.EINVAL
    assert dp.conn_stats()["conns"] == 0


def test_add_refuses_invalid_other_modes(dp):
    for conn in (other_conn(consts.CONN_DSR)._replace(reply=nat_conn().reply),
                 nat_conn(proto=17)._replace(state=consts.CS_SYN),
                 other_conn(consts.CONN_GRE, proto=17, state=consts.CS_ESTABLISHED)):
        with pytest.raises(OSError) as e:
            dp.conn_add(conn, now_ms=T0)
        assert e.value.errno == errno.EINVAL


def test_add_refuses_duplicates(dp):
    conn = nat_conn()
    dp.conn_add(conn, now_ms=T0)
    same_reply = conn._replace(client=client_tuple(sport=40001))
    for dup in (conn, conn._replace(reply=conn.reply._replace(sport=1)), same_reply):
        with pytest.raises(OSError) as e:
            dp.conn_add(dup, now_ms=T0)
        assert e.value.errno == errno.EEXIST
    assert dp.conn_stats()["inserts"] == 1


def test_bad_arguments_are_value_errors(dp):
    for conn in (nat_conn()._replace(backend=b"\x01\x02"), nat_conn()._replace(vip_id=-1),
                 nat_conn()._replace(client=client_tuple(sport=70000)), nat_conn()._replace(mode="bridge")):
        with pytest.raises(ValueError):
            dp.conn_add(conn, now_ms=T0)
    with pytest.raises(ValueError):
        dp.conn_config(16, {9: 1000})


def test_modes_by_name(dp):
    dp.conn_add(nat_conn()._replace(mode="fullnat"), now_ms=T0)
    assert dp.conn_get(client_tuple()).mode == consts.CONN_FULLNAT


def test_config(dp):
    for bad in (0, consts.CT_MAX_CONNS + 1):
        with pytest.raises(OSError) as e:
            dp.conn_config(bad)
        assert e.value.errno == errno.EINVAL
    dp.conn_config(10)
    assert dp.conn_stats()["max_conns"] == 10
    dp.conn_add(nat_conn(), now_ms=T0)
    with pytest.raises(OSError) as e:
        dp.conn_config(20)
    assert e.value.errno == errno.EBUSY
    dp.conn_config(10, {consts.CS_SYN: 5})        # the same bound is not a change
    dp.conn_config(None, {consts.CS_UDP: 7})
    assert dp.conn_stats()["max_conns"] == 10
    assert dp.conn_expire(now_ms=T0 + 4) == 0
    assert dp.conn_expire(now_ms=T0 + 5) == 1
    dp.conn_config(consts.CT_MAX_CONNS)


# -- forwarding -----------------------------------------------------------------------------------------------------

def test_nat_rewrites_destination_and_routes(dp):
    dp.conn_add(nat_conn(), now_ms=T0)
    pkt = tcp()
    out = only_output(send(dp, pkt), BACKEND_SIDE)
    assert out == routed(pkt, BACKEND_MAC, dst=BACKEND, dport=BACKEND_PORT)
    conn = dp.conn_get(client_tuple())
    assert (conn.packets, conn.bytes, conn.used_ms) == (1, len(bytes(pkt)), T0)
    s = dp.stats()
    assert (s["routed"], s["upcalls"]) == (1, 0)


def test_nat_reply_comes_back_from_the_vip(dp):
    dp.conn_add(nat_conn(), now_ms=T0)
    back = reply_tcp()
    out = only_output(send(dp, back, BACKEND_SIDE, now=T0 + 5), CLIENT_PORT)
    assert out == routed(back, CLIENT_MAC, src=VIP, sport=80)
    assert dp.conn_get(client_tuple()).packets == 1
    assert dp.conn_stats()["hits"] == 1


def test_fullnat_rewrites_both_ends(dp):
    conn = nat_conn(consts.CONN_FULLNAT)
    dp.conn_add(conn, now_ms=T0)
    pkt = tcp()
    out = only_output(send(dp, pkt), BACKEND_SIDE)
    assert out == routed(pkt, BACKEND_MAC, src=SWITCH, sport=conn.reply.dport, dst=BACKEND, dport=BACKEND_PORT)
    back = reply_tcp(dst=SWITCH, dport=conn.reply.dport)
    out = only_output(send(dp, back, BACKEND_SIDE), CLIENT_PORT)
    assert out == routed(back, CLIENT_MAC, src=VIP, sport=80, dst=CLIENT, dport=40000)


def test_udp_nat(dp):
    conn = nat_conn(proto=17, dport=53)
    dp.conn_add(conn, now_ms=T0)
    pkt = udp()
    assert only_output(send(dp, pkt), BACKEND_SIDE) == routed(pkt, BACKEND_MAC, dst=BACKEND, dport=BACKEND_PORT)


def test_tagged_client_packet(dp):
    dp.conn_add(nat_conn(), now_ms=T0)
    pkt = tcp(tags=(10,))
    assert only_output(send(dp, pkt), BACKEND_SIDE) == routed(pkt, BACKEND_MAC, dst=BACKEND, dport=BACKEND_PORT)


@pytest.mark.parametrize("backend, dst_mac", [(BACKEND, BACKEND_MAC), (FAR_BACKEND, ROUTER_MAC)],
                         ids=["connected", "via-gateway"])
def test_dsr_routes_toward_the_backend_and_keeps_the_vip(dp, backend, dst_mac):
    dp.conn_add(other_conn(consts.CONN_DSR, backend=backend), now_ms=T0)
    pkt = tcp()
    assert only_output(send(dp, pkt), BACKEND_SIDE) == routed(pkt, dst_mac)


@pytest.mark.parametrize("mode, proto", [(consts.CONN_IPIP, 4), (consts.CONN_GRE, 47)], ids=["ipip", "gre"])
@pytest.mark.parametrize("ip_fields", [{}, dict(tos=0xB8, ip_flags="DF"), dict(options=b"\x94\x04\x00\x00")],
                         ids=["plain", "tos-df", "options"])
def test_tunnel_modes_encapsulate(dp, mode, proto, ip_fields):
    dp.conn_add(other_conn(mode), now_ms=T0)
    pkt = tcp(**ip_fields)
    out = only_output(send(dp, pkt), BACKEND_SIDE)
    assert out == tunneled(pkt, proto)
    outer = Ether(out)[IP]
    assert (outer.ttl, outer.id, outer.proto, outer.len) == (63, 0, proto, len(out) - 14)
    check = IP(bytes(outer))
    del check.chksum
    assert outer.chksum == IP(bytes(check)).chksum


def test_tunnel_to_a_backend_behind_a_router(dp):
    dp.conn_add(other_conn(consts.CONN_IPIP, backend=FAR_BACKEND), now_ms=T0)
    pkt = tcp()
    assert only_output(send(dp, pkt), BACKEND_SIDE) == tunneled(pkt, 4, dst=FAR_BACKEND, dst_mac=ROUTER_MAC)


def test_tunnel_keeps_partial_checksum_offsets(dp):
    """A partial (offloaded) checksum stays the kernel's job: csum_start moves with the L4 header."""
    dp.conn_add(other_conn(consts.CONN_GRE), now_ms=T0)
    frame = bytes(tcp())
    vnet = bytes([1, 0]) + (0).to_bytes(2, "little") * 2 + (34).to_bytes(2, "little") + (16).to_bytes(2, "little")
    dp.inject(CLIENT_PORT, frame, vnet)
    dp.run(now_ms=T0)
    ((_out, out_vnet),) = dp.take(BACKEND_SIDE)
    assert int.from_bytes(out_vnet[6:8], "little") == 34 + 24


def test_execute_with_lb_uses_its_clock(dp):
    dp.conn_add(nat_conn(), now_ms=T0)
    pkt = tcp()
    dp.execute(CLIENT_PORT, bytes(pkt), bytes(10), [A.lb(VIP_ID)], now_ms=T0 + 42)
    assert [f for f, _v in dp.take(BACKEND_SIDE)] == [routed(pkt, BACKEND_MAC, dst=BACKEND, dport=BACKEND_PORT)]
    assert dp.conn_get(client_tuple()).used_ms == T0 + 42


def test_actions_after_lb_see_the_rewritten_frame(dp):
    dp.conn_add(nat_conn(), now_ms=T0)
    dp.flow_put(FlowKey(in_port=CLIENT_PORT).pack(), FlowKey.mask_of("in_port"), 1,
                [A.output(0), A.lb(VIP_ID), A.output(2)], now_ms=0)
    pkt = tcp()
    out = send(dp, pkt)
    assert out[0] == [bytes(pkt)]
    assert out[2] == out[BACKEND_SIDE] == [routed(pkt, BACKEND_MAC, dst=BACKEND, dport=BACKEND_PORT)]


# -- misses and upcalls ---------------------------------------------------------------------------------------------

def test_miss_is_a_conn_miss_upcall_with_the_vip(dp):
    pkt = tcp()
    assert send(dp, pkt) == {p: [] for p in range(4)}
    (up,) = dp.upcalls()
    assert (up.reason, up.userdata, up.data, up.in_port) == (consts.UPCALL_CONN_MISS, VIP_ID, bytes(pkt), 1)
    assert dp.conn_stats()["misses"] == 1


@pytest.mark.parametrize("frame", [
    bytes(Ether() / IP(src=CLIENT, dst=VIP) / ICMP()),
    bytes(Ether() / IP(src=CLIENT, dst=VIP, frag=10, proto=6) / b"later fragment"),
    bytes(Ether() / IP(src=CLIENT, dst=VIP) / TCP())[:14 + 20 + 19],
], ids=["icmp", "later-fragment", "truncated-tcp"])
def test_what_lb_cannot_look_up_comes_up_too(dp, frame):
    dp.execute(CLIENT_PORT, frame, bytes(10), [A.lb(VIP_ID)], now_ms=T0)
    (up,) = dp.upcalls()
    assert (up.reason, up.userdata, up.data) == (consts.UPCALL_CONN_MISS, VIP_ID, frame)
    assert dp.conn_stats()["misses"] == 0, "no lookup, no miss"


def test_reply_miss_is_routed_unchanged(dp):
    back = reply_tcp()
    out = only_output(send(dp, back, BACKEND_SIDE), CLIENT_PORT)
    assert out == routed(back, CLIENT_MAC)
    s = dp.conn_stats()
    assert (s["reply_misses"], s["hits"], s["misses"]) == (1, 0, 0)


def test_reply_that_is_not_tcp_or_udp_is_routed(dp):
    ping = Ether(bytes(Ether(src=mac(BACKEND_MAC), dst=mac(GW_MAC)) / IP(src=BACKEND, dst=CLIENT) / ICMP()))
    out = only_output(send(dp, ping, BACKEND_SIDE), CLIENT_PORT)
    assert Ether(out)[IP].ttl == 63
    assert dp.conn_stats()["reply_misses"] == 0


def test_unresolved_backend_upcalls_the_original_frame_and_counts_nothing(dp):
    """The route is decided before the rewrite: NO_NEIGH carries the client's frame as it came, the connection
    counts nothing, and the slow path's retry with the same LB action goes through once the neighbor is known."""
    dp.neigh_del(30, ip(BACKEND))
    dp.conn_add(nat_conn(), now_ms=T0)
    pkt = tcp()
    assert send(dp, pkt) == {p: [] for p in range(4)}
    (up,) = dp.upcalls()
    assert (up.reason, up.userdata, up.data) == (consts.UPCALL_NO_NEIGH, NH_BACKENDS, bytes(pkt))
    assert dp.conn_get(client_tuple()).packets == 0
    dp.neigh_set(30, ip(BACKEND), BACKEND_MAC, BACKEND_SIDE)
    dp.execute(up.in_port, up.data, up.vnet, [A.lb(VIP_ID)], now_ms=T0 + 1)
    assert [f for f, _v in dp.take(BACKEND_SIDE)] == [routed(pkt, BACKEND_MAC, dst=BACKEND, dport=BACKEND_PORT)]
    assert dp.conn_get(client_tuple()).packets == 1


def test_tunnel_route_upcall_carries_the_inner_frame(dp):
    dp.conn_add(other_conn(consts.CONN_IPIP, backend="203.0.113.99"), now_ms=T0)
    pkt = tcp()
    send(dp, pkt)
    (up,) = dp.upcalls()
    assert (up.reason, up.data) == (consts.UPCALL_NO_NEIGH, bytes(pkt))


def test_route_drops_count_as_route_drops(dp):
    dp.route_add(ip(BACKEND), 32, 9)
    dp.nexthop_set(9, "blackhole", 0)
    dp.conn_add(nat_conn(), now_ms=T0)
    assert send(dp, tcp()) == {p: [] for p in range(4)}
    assert dp.stats()["route_dropped"] == 1 and dp.upcalls() == []


def test_actions_apply_has_no_table(impl):
    pkt = bytes(tcp())
    outs = impl.actions_apply(pkt, bytes(10), 1, [A.output(2), A.lb(VIP_ID), A.output(3)])
    assert [(o.port, o.frame, o.userdata) for o in outs] == [(2, pkt, 0), (consts.UPCALL_PORT, pkt, VIP_ID)]
    outs = impl.actions_apply(pkt, bytes(10), 1, [A.lb_reply(), A.output(3)])
    assert [(o.port, o.frame, o.userdata) for o in outs] == [(consts.UPCALL_PORT, pkt, 0)]


def test_helpers_and_describe():
    assert A.describe([A.lb(7), A.lb_reply(), A.decap()]) == "lb:7,lb_reply,decap"
    assert [a.type for a in (A.lb(1), A.lb_reply(), A.decap())] == [13, 14, 15]
    with pytest.raises(ValueError):
        A.lb(-1)


# -- TCP states, timeouts, events -----------------------------------------------------------------------------------

def state_of(dp):
    return dp.conn_get(client_tuple()).state


def test_tcp_state_machine(dp):
    dp.conn_add(nat_conn(), now_ms=T0)
    steps = [  # (direction, flags, state after)
        ("client", "S", consts.CS_SYN),
        ("reply", "SA", consts.CS_SYN),
        ("client", "A", consts.CS_ESTABLISHED),
        ("client", "PA", consts.CS_ESTABLISHED),
        ("client", "FA", consts.CS_FIN_WAIT),
        ("reply", "FA", consts.CS_FIN_WAIT),
        ("client", "S", consts.CS_SYN),          # the port is reused
        ("reply", "A", consts.CS_ESTABLISHED),   # a reply ACK establishes too
        ("reply", "R", consts.CS_CLOSE),
        ("client", "FA", consts.CS_CLOSE),       # FIN after RST stays CLOSE
        ("client", "SA", consts.CS_CLOSE),       # not a fresh SYN
        ("client", "S", consts.CS_SYN),
    ]
    for i, (direction, flags, want) in enumerate(steps):
        if direction == "client":
            send(dp, tcp(flags=flags), now=T0 + i)
        else:
            send(dp, reply_tcp(flags=flags), BACKEND_SIDE, now=T0 + i)
        assert state_of(dp) == want, (i, direction, flags)
    conn = dp.conn_get(client_tuple())
    assert conn.packets == len(steps)
    assert conn.created_ms == T0 + len(steps) - 1, "a reused port starts a new connection's age"
    by_state = dp.conn_stats()["by_state"]
    assert by_state == {"syn": 1, "established": 0, "fin_wait": 0, "close": 0, "udp": 0}


def test_udp_stays_udp(dp):
    dp.conn_add(nat_conn(proto=17, dport=53), now_ms=T0)
    send(dp, udp())
    assert dp.conn_get(client_tuple(17, dport=53)).state == consts.CS_UDP


def test_rtt_is_reported_once(dp):
    dp.conn_add(nat_conn(backend_id=9), now_ms=T0)
    send(dp, tcp(flags="S"), now=T0)
    send(dp, reply_tcp(flags="SA"), BACKEND_SIDE, now=T0 + 250)
    send(dp, reply_tcp(flags="SA"), BACKEND_SIDE, now=T0 + 400)       # a retransmitted SYN+ACK
    assert dp.conn_events() == [ConnEvent(consts.CE_RTT, VIP_ID, 9, consts.CS_SYN, 250000, client_tuple())]
    assert dp.conn_events() == [], "events are drained"


def test_rtt_is_reported_again_after_reuse(dp):
    dp.conn_add(nat_conn(state=consts.CS_FIN_WAIT), now_ms=T0)
    send(dp, tcp(flags="S"), now=T0 + 1000)
    send(dp, reply_tcp(flags="SA"), BACKEND_SIDE, now=T0 + 1003)
    assert [e.rtt_us for e in dp.conn_events() if e.kind == consts.CE_RTT] == [3000]


def test_closing_and_reopening_are_reported(dp):
    """The slow path counts only open connections as active (least-connection): it hears when one starts
    closing, and when a closing one's port is reused, once each."""
    dp.conn_add(nat_conn(backend_id=4), now_ms=T0)
    for i, (flags, reply) in enumerate((("S", False), ("A", False), ("FA", False), ("FA", True), ("A", False),
                                        ("S", False), ("R", True))):
        send(dp, reply_tcp(flags=flags) if reply else tcp(flags=flags), BACKEND_SIDE if reply else CLIENT_PORT,
             now=T0 + i)
    states = [e.state for e in dp.conn_events() if e.kind == consts.CE_STATE]
    assert states == [consts.CS_FIN_WAIT, consts.CS_SYN, consts.CS_CLOSE]


TIMEOUTS = {consts.CS_SYN: 100, consts.CS_ESTABLISHED: 1000, consts.CS_FIN_WAIT: 300, consts.CS_CLOSE: 50,
            consts.CS_UDP: 600}


def test_each_state_has_its_timeout(dp):
    dp.conn_config(None, TIMEOUTS)
    for i, state in enumerate((consts.CS_SYN, consts.CS_ESTABLISHED, consts.CS_FIN_WAIT, consts.CS_CLOSE)):
        dp.conn_add(nat_conn(sport=40000 + i, state=state), now_ms=T0)
    dp.conn_add(nat_conn(proto=17, sport=5000), now_ms=T0)
    gone = []
    for now in sorted({T0 + t for t in TIMEOUTS.values()} | {T0 + t - 1 for t in TIMEOUTS.values()}):
        n = dp.conn_expire(now_ms=now)
        events = dp.conn_events()
        assert n == len(events)
        gone += [(now - T0, e.state) for e in events]
        assert all(e.kind == consts.CE_GONE and e.vip_id == VIP_ID and e.backend_id == 3 for e in events)
    assert gone == [(50, consts.CS_CLOSE), (100, consts.CS_SYN), (300, consts.CS_FIN_WAIT), (600, consts.CS_UDP),
                    (1000, consts.CS_ESTABLISHED)]
    assert dp.conn_stats()["expired"] == 5 and dp.conn_stats()["conns"] == 0


def test_traffic_keeps_a_connection(dp):
    dp.conn_config(None, TIMEOUTS)
    dp.conn_add(nat_conn(state=consts.CS_ESTABLISHED), now_ms=T0)
    send(dp, tcp(flags="A"), now=T0 + 900)
    assert dp.conn_expire(now_ms=T0 + 1000) == 0
    assert dp.conn_expire(now_ms=T0 + 1900) == 1


def test_expiry_is_exact_within_a_granule(dp):
    """A hit in the granule of the last move does not move the entry, so B (moved later) may sit behind A (used
    later): expiry still finds exactly the idle ones."""
    dp.conn_config(None, TIMEOUTS)
    a, b = nat_conn(sport=1, state=consts.CS_ESTABLISHED), nat_conn(sport=2, state=consts.CS_ESTABLISHED)
    dp.conn_add(a, now_ms=120)
    dp.conn_add(b, now_ms=130)
    send(dp, tcp(sport=1, flags="A"), now=150)
    assert [c.client.sport for c in dp.conn_dump()] == [1, 2]
    assert dp.conn_expire(now_ms=1140) == 1
    assert [c.client.sport for c in dp.conn_dump()] == [1]
    assert dp.conn_expire(now_ms=1149) == 0 and dp.conn_expire(now_ms=1150) == 1


def test_hits_reorder_once_per_granule(dp):
    for sport in (1, 2):
        dp.conn_add(nat_conn(sport=sport, state=consts.CS_ESTABLISHED), now_ms=T0)
    send(dp, tcp(sport=1, flags="A"), now=T0 + 50)
    assert [c.client.sport for c in dp.conn_dump()] == [1, 2]
    send(dp, tcp(sport=1, flags="A"), now=T0 + 100)
    assert [c.client.sport for c in dp.conn_dump()] == [2, 1]


# -- a full table ---------------------------------------------------------------------------------------------------

def test_full_table_evicts_the_least_recent(dp):
    dp.conn_config(3)
    for sport in (1, 2, 3):
        dp.conn_add(nat_conn(sport=sport, state=consts.CS_ESTABLISHED), now_ms=T0 + sport * 100)
    send(dp, tcp(sport=1, flags="A"), now=T0 + 500)
    dp.conn_add(nat_conn(sport=4, state=consts.CS_ESTABLISHED), now_ms=T0 + 600)
    assert sorted(c.client.sport for c in dp.conn_dump()) == [1, 3, 4]
    (event,) = dp.conn_events()
    assert (event.kind, event.client.sport, event.state) == (consts.CE_GONE, 2, consts.CS_ESTABLISHED)
    s = dp.conn_stats()
    assert (s["evictions"], s["conns"], s["inserts"]) == (1, 3, 4)


def test_eviction_order_close_syn_fin_wait_then_oldest(dp):
    dp.conn_config(5)
    states = {1: consts.CS_ESTABLISHED, 2: consts.CS_FIN_WAIT, 3: consts.CS_SYN, 4: consts.CS_CLOSE}
    for sport, state in states.items():
        dp.conn_add(nat_conn(sport=sport, state=state), now_ms=T0 + sport)
    dp.conn_add(nat_conn(proto=17, sport=5), now_ms=T0 + 5)
    evicted = []
    for sport in range(10, 15):
        dp.conn_add(nat_conn(sport=sport, state=consts.CS_ESTABLISHED), now_ms=T0 + sport)
        evicted += [e.client.sport for e in dp.conn_events()]
    # CLOSE, SYN, FIN_WAIT; then the older of the ESTABLISHED and UDP heads: 1 (T0+1), 5 (T0+5), then 10...
    assert evicted == [4, 3, 2, 1, 5]


def test_syn_flood_never_evicts_established(dp):
    dp.conn_config(100)
    for sport in range(100):
        dp.conn_add(nat_conn(sport=sport, state=consts.CS_ESTABLISHED), now_ms=T0)
    for sport in range(1000, 1500):
        with pytest.raises(OSError) as e:
            dp.conn_add(nat_conn(sport=sport), now_ms=T0 + 1)
        assert e.value.errno == errno.ENOSPC
    s = dp.conn_stats()
    assert (s["refused"], s["evictions"], s["by_state"]["established"]) == (500, 0, 100)
    # Half of the table half-open: a flood recycles those and only those.
    for sport in range(50):
        assert dp.conn_del(client_tuple(sport=sport))
    for sport in range(2000, 2050):
        dp.conn_add(nat_conn(sport=sport), now_ms=T0 + 2)
    for sport in range(3000, 3500):
        dp.conn_add(nat_conn(sport=sport), now_ms=T0 + 3)
    s = dp.conn_stats()
    assert (s["by_state"]["established"], s["by_state"]["syn"], s["evictions"]) == (50, 50, 500)
    assert all(e.state == consts.CS_SYN for e in dp.conn_events())
    assert {c.client.sport for c in dp.conn_dump() if c.state == consts.CS_ESTABLISHED} == set(range(50, 100))


def test_events_are_bounded(dp):
    dp.conn_config(None, {consts.CS_UDP: 0})
    n = consts.CT_MAX_EVENTS + 3
    for i in range(n):
        dp.conn_add(nat_conn(proto=17, src="192.0.2.%d" % (1 + i % 200), sport=1024 + i // 200), now_ms=T0)
    assert dp.conn_expire(now_ms=T0) == n
    assert len(dp.conn_events()) == consts.CT_MAX_EVENTS
    assert dp.conn_stats()["events_dropped"] == 3


def test_dump_pages_through_many(dp):
    for i in range(700):
        dp.conn_add(nat_conn(src="192.0.2.%d" % (1 + i % 200), sport=1024 + i, state=1 + i % 4), now_ms=T0 + i)
    conns = dp.conn_dump()
    assert len(conns) == 700
    assert [c.state for c in conns] == sorted(c.state for c in conns)


def test_memory_per_connection_of_the_c_table():
    d = fastpath.Datapath()
    try:
        s = d.conn_stats()
        assert s["bytes_used"] == 0, "nothing is allocated before the first connection"
        assert s["bytes_per_conn"] <= 160
        d.conn_add(nat_conn(), now_ms=T0)
        s = d.conn_stats()
        assert 0 < s["bytes_used"] < 16 * 2**20
        d.conn_del(client_tuple())
        d.conn_config(1000)
        assert d.conn_stats()["bytes_used"] == 0 and d.conn_stats()["bytes_per_conn"] <= 160
    finally:
        d.close()


# -- C and twin alike -----------------------------------------------------------------------------------------------

D_CLIENTS = ["192.0.2.10", "192.0.2.11"]
D_VIPS = ["198.51.100.1", "198.51.100.2"]
D_BACKENDS = ["203.0.113.5", "203.0.113.6", "198.51.100.70", "203.0.113.99"]   # the last has no neighbor
D_PORTS = [80, 443]
d_flags = st.sampled_from(["S", "SA", "SA", "A", "A", "PA", "F", "FA", "R", "RA", "", "SF"])


@st.composite
def d_conns(draw):
    proto = draw(st.sampled_from([6, 6, 17]))
    client = ConnTuple(proto, ip(draw(st.sampled_from(D_CLIENTS))), ip(draw(st.sampled_from(D_VIPS))),
                       draw(st.sampled_from([40000, 40001])), draw(st.sampled_from(D_PORTS)))
    mode = draw(st.integers(1, 5))
    backend = ip(draw(st.sampled_from(D_BACKENDS)))
    state = draw(st.sampled_from([1, 1, 2, 3, 4])) if proto == 6 else consts.CS_UDP
    reply = None
    if mode == consts.CONN_NAT:
        reply = ConnTuple(proto, backend, client.src, draw(st.sampled_from([8080, 80])), client.sport)
    elif mode == consts.CONN_FULLNAT:
        reply = ConnTuple(proto, backend, ip(SWITCH), 8080, draw(st.integers(50000, 50003)))
    return Conn(client, reply, backend, ip(SWITCH), mode, state, draw(st.integers(0, 3)), draw(st.integers(0, 9)))


@st.composite
def d_client_frames(draw, conns):
    """Mostly packets of the connections' clients, sometimes strangers and what LB cannot look up (ICMP)."""
    kind = draw(st.sampled_from(["conn", "conn", "conn", "stranger", "icmp"]))
    if kind == "conn":
        proto, src, dst, sport, dport = draw(st.sampled_from([c.client for c in conns]))
        src, dst = ipaddress.IPv4Address(src).compressed, ipaddress.IPv4Address(dst).compressed
    else:
        proto = 17 if kind == "stranger" and draw(st.booleans()) else 6
        src, dst = draw(st.sampled_from(D_CLIENTS)), draw(st.sampled_from(D_VIPS))
        sport, dport = draw(st.sampled_from([40000, 40001])), draw(st.sampled_from(D_PORTS))
    iph = IP(src=src, dst=dst, ttl=draw(st.sampled_from([64, 64, 64, 2, 1])), tos=draw(st.sampled_from([0, 0xB8])),
             flags=draw(st.sampled_from([0, "DF", "MF"])))
    if kind == "icmp":
        l4 = ICMP()
    elif proto == 6:
        l4 = TCP(sport=sport, dport=dport, flags=draw(d_flags))
    else:
        l4 = UDP(sport=sport, dport=dport)
    eth = Ether(src=mac(CLIENT_MAC), dst=mac(GW_MAC))
    if draw(st.booleans()):
        eth = eth / Dot1Q(vlan=10)
    return bytes(eth / iph / l4 / b"data")


@st.composite
def d_reply_frames(draw, conns):
    """Mostly the replies the connections expect, sometimes strangers."""
    proto, src, dst, sport, dport = draw(st.sampled_from([c.reply for c in conns if c.reply] or [None])) or \
        (6, ip(BACKEND), ip(CLIENT), 8080, 40000)
    if draw(st.integers(0, 4)) == 0:
        sport += 1
    l4 = TCP(sport=sport, dport=dport, flags=draw(d_flags)) if proto == 6 else UDP(sport=sport, dport=dport)
    return bytes(Ether(src=mac(BACKEND_MAC), dst=mac(GW_MAC))
                 / IP(src=ipaddress.IPv4Address(src).compressed, dst=ipaddress.IPv4Address(dst).compressed) / l4
                 / b"re")


def synack_of(conn):
    _proto, src, dst, sport, dport = conn.reply
    return bytes(Ether(src=mac(BACKEND_MAC), dst=mac(GW_MAC))
                 / IP(src=ipaddress.IPv4Address(src).compressed, dst=ipaddress.IPv4Address(dst).compressed)
                 / TCP(sport=sport, dport=dport, flags="SA"))


def conn_state(dp):
    stats = dp.conn_stats()
    stats.pop("bytes_used")
    stats.pop("bytes_per_conn")
    return {
        "outputs": {p: dp.take(p) for p in range(4)},
        "upcalls": [tuple(u) for u in dp.upcalls()],
        "stats": dp.stats(),
        "conn_stats": stats,
        "conns": dp.conn_dump(),
        "events": dp.conn_events(),
    }


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(d_conns(), min_size=1, max_size=8), st.sampled_from([2, 4, 100]), st.data())
def test_conntrack_datapath_equal(conns, max_conns, data):
    dps = [make_dp(fastpath), make_dp(refpath)]
    try:
        for dp in dps:
            dp.conn_config(max_conns, TIMEOUTS)
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
            now += data.draw(st.integers(0, 60))
        # The backends answer some connections first (SYN+ACK: RTT events), then random rounds.
        handshakes = [synack_of(c) for c in conns if c.reply and c.client.proto == 6 and data.draw(st.booleans())]
        for dp in dps:
            for frame in handshakes:
                dp.inject(BACKEND_SIDE, frame)
            dp.run(now_ms=now)
        assert conn_state(dps[0]) == conn_state(dps[1])
        for _round in range(data.draw(st.integers(1, 4))):
            frames = data.draw(st.lists(st.tuples(st.just(CLIENT_PORT), d_client_frames(conns))
                                        | st.tuples(st.just(BACKEND_SIDE), d_reply_frames(conns)), max_size=12))
            for dp in dps:
                for port, frame in frames:
                    dp.inject(port, frame)
                dp.run(now_ms=now)
            assert conn_state(dps[0]) == conn_state(dps[1])
            now += data.draw(st.sampled_from([0, 40, 99, 100, 250, 700]))
            assert dps[0].conn_expire(now_ms=now) == dps[1].conn_expire(now_ms=now)
            assert conn_state(dps[0]) == conn_state(dps[1])
    finally:
        for dp in dps:
            dp.close()
