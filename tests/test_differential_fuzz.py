"""Differential fuzzing: the C datapath and its Python twin, fed the same random and damaged frames, must agree on
every output byte and every counter (docs/RELIABILITY.md "Differential fuzzing").

tests/test_differential.py compares the twins function by function on frames scapy builds. Here frames are built
header by header (tests/fuzz_frames.py: tags, ARP, IPv4 options and fragments, IPv6 extension headers, TCP options,
lying lengths and checksums) and then damaged (bit flips, truncation, extension, overwritten fields), and they go
through the parser, the offload functions, and two whole datapaths with memory ports configured alike as a switch
and load balancer: L2 flows with VLAN push and pop, routing by LPM and neighbors, two VIPs (connections the slow path
added in every mode, and a Maglev ring), tunnels decapsulated, vnet headers with partial checksums and GSO.

Every bad frame must be dropped and counted, never raise: the counters are checked against what the parser says of
each frame, independently of the datapath that counted them.

Examples per test: a few hundred by default (the file runs in about a minute on a loaded 2-core machine);
PSW_FUZZ_EXAMPLES=N sets N for every test, PSW_FUZZ_SEED=S replays a run (the seed is printed with a failure).
The example database is off, so nothing is written into the repository.
"""
import collections
import os
import random

import pytest
from hypothesis import HealthCheck, given, note, seed, settings, strategies as st

import fuzz_frames as ff
from pyswitch import actions as A, consts, fastpath, refpath
from pyswitch.datapath_types import Conn, ConnTuple, RingBackend
from pyswitch.flowkey import FlowKey

from test_differential import norm_info, norm_stats, valid_actions

SEED = int(os.environ.get("PSW_FUZZ_SEED") or random.getrandbits(32))
_SCALE = os.environ.get("PSW_FUZZ_EXAMPLES")


def fuzz_settings(default_examples: int):
    """`default_examples` unless PSW_FUZZ_EXAMPLES says otherwise; no deadline (the machine is shared), no
    database (nothing written into the repository)."""
    return settings(max_examples=int(_SCALE) if _SCALE else default_examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def fuzz(default_examples: int):
    """The decorators every fuzz test takes: its settings and the run's seed; a longer run set by
    PSW_FUZZ_EXAMPLES is not cut short by the suite's per-test timeout."""
    def wrap(test):
        test = seed(SEED)(fuzz_settings(default_examples)(test))
        return pytest.mark.timeout(0)(test) if _SCALE else test
    return wrap


def say_seed():
    note(f"replay with PSW_FUZZ_SEED={SEED}")


def outcome(fn, *args):
    """What a call answers: its result, or the error it refused with (OSError: the errno)."""
    try:
        return fn(*args)
    except OSError as exc:
        return ("refused", exc.errno)


def describe_parse(result):
    return f"{consts.PARSE_ERROR_NAMES[result.error]} {FlowKey.unpack(result.key)} l3={result.l3_ofs} " \
           f"l4={result.l4_ofs}"


def both_parse(frame, in_port=0, max_frame=0, is_gso=False):
    c = fastpath.parse(frame, in_port, max_frame, is_gso)
    py = refpath.parse(frame, in_port, max_frame, is_gso)
    assert tuple(c) == tuple(py), (f"frame={frame.hex()} in_port={in_port} max_frame={max_frame} is_gso={is_gso}\n"
                                   f"C:  {describe_parse(c)}\npy: {describe_parse(py)}")
    assert 0 <= py.error < consts.PE_COUNT
    return py


# -- the parser ----------------------------------------------------------------------------------------------------

@fuzz(400)
@given(ff.built_frames())
def test_parse_built_frames_as_the_contract_says(built):
    """An honest frame parses to exactly what was built (error, every key field, offsets), in both twins."""
    say_seed()
    got = both_parse(built.data)
    if built.expect is not None:
        assert tuple(got) == tuple(built.expect), \
            f"frame={built.data.hex()}\ngot:      {describe_parse(got)}\nexpected: {describe_parse(built.expect)}"


@fuzz(500)
@given(ff.any_frames(), st.integers(0, 0xFFFF), st.sampled_from([0, 0, 60, 100, 1514]), st.booleans())
def test_parse_damaged_frames_agree(frame, in_port, max_frame, is_gso):
    say_seed()
    both_parse(frame, in_port, max_frame, is_gso)


@fuzz(60)
@given(ff.built_frames())
def test_parse_every_truncation_agrees(built):
    say_seed()
    for n in range(len(built.data) + 1):
        both_parse(built.data[:n], 3)


# -- offloads (docs/DATAPATH.md "Offloads") ------------------------------------------------------------------------

@fuzz(300)
@given(ff.frames_with_vnets(ff.built_frames(l3_kinds=("ip4", "ip4", "ip6"))), st.data())
def test_offloads_agree(built_vnet, data):
    """offload_rx_csum, offload_csum, gso_plan and gso_segments: the same bytes or the same refusal."""
    say_seed()
    built, vnet = built_vnet
    frames = [built.data]
    if data.draw(st.booleans()):
        frames.append(data.draw(ff.mutate(built.data)))
    for frame in frames:
        for name, args in (("offload_rx_csum", (frame, vnet)), ("offload_rx_csum", (frame, None)),
                           ("offload_csum", (frame, vnet)), ("gso_plan", (frame, vnet))):
            c, py = outcome(getattr(fastpath, name), *args), outcome(getattr(refpath, name), *args)
            assert c == py, f"{name} frame={frame.hex()} vnet={vnet.hex()}\nC:  {c}\npy: {py}"
        plan = outcome(refpath.gso_plan, frame, vnet)
        if not (isinstance(plan, tuple) and plan[0] == "refused") and plan.n_segs <= 512:
            c, py = outcome(fastpath.gso_segments, frame, vnet), outcome(refpath.gso_segments, frame, vnet)
            assert c == py, f"gso_segments frame={frame.hex()} vnet={vnet.hex()}"


# -- whole datapaths: a switch and load balancer configured alike ---------------------------------------------------

def ip(text):
    return bytes(int(part) for part in text.split("."))


N_PORTS = 6
RMAC = b"\x02\x00\x00\x00\xff\x01"           # the switch on every VLAN
CLIENT_MAC, BACKEND_MAC, ROUTER_MAC = b"\x02\x00\x00\x00\x00\x10", b"\x02\x00\x00\x00\x00\x05", \
    b"\x02\x00\x00\x00\x00\x77"
L2_MACS = (b"\x02\x00\x00\x00\x00\x31", b"\x02\x00\x00\x00\x00\x41")
CLIENTS = (ip("192.0.2.10"), ip("192.0.2.11"), ip("192.0.2.12"))       # .12 has no neighbor
VIP_NAT, VIP_RING = ip("198.51.100.1"), ip("198.51.100.2")            # vip ids 1 and 2
VIP_IDS = {VIP_NAT: 1, VIP_RING: 2}
BACKENDS = (ip("203.0.113.5"), ip("203.0.113.6"), ip("198.51.100.70"), ip("203.0.113.99"))  # .99: no neighbor
SWITCH = ip("203.0.113.1")
TUNNEL_END = ip("203.0.113.6")                # tunnels to a backend, decapsulated for it (DECAP deliver)
ROUTER = ip("203.0.113.254")
MARTIANS = (ip("0.0.0.0"), ip("127.0.0.1"), ip("224.0.0.5"), ip("255.255.255.255"))
ELSEWHERE = (ip("198.18.0.9"), ip("198.51.100.200"), ip("198.51.100.129"))   # blackhole, no route, no next hop
VIP_PORTS = (80, 53, 443)
CLIENT_PORTS = (40000, 40001)
WORLD_POOLS = ff.Pools(macs=(RMAC, RMAC, RMAC, CLIENT_MAC, BACKEND_MAC, b"\xff" * 6) + L2_MACS,
                       ip4s=CLIENTS + (VIP_NAT, VIP_RING) + BACKENDS + (SWITCH, ROUTER) + MARTIANS + ELSEWHERE,
                       ip6s=ff.DEFAULT_POOLS.ip6s, ports=VIP_PORTS + CLIENT_PORTS + (8080, 50000))
TIMEOUTS = {consts.CS_SYN: 200, consts.CS_ESTABLISHED: 2000, consts.CS_FIN_WAIT: 300, consts.CS_CLOSE: 100,
            consts.CS_UDP: 1000}
CLIENT_SIDE, CLIENT_TRUNK, BACKEND_SIDE, L2_ACCESS, L2_TRUNK, SMALL = range(N_PORTS)
PORT_MAX_FRAME = {L2_TRUNK: 1514, SMALL: 100}


def mask(*names):
    return FlowKey.mask_of(*names)


def world_flows(extra_after_route):
    """(key, mask, priority, actions): the switch's flows, highest priority first."""
    ipv4 = dict(eth_dst=RMAC, eth_type=consts.ETH_TYPE_IPV4)
    m_vip = mask("eth_dst", "eth_type", "nw_dst")
    m_l3 = mask("eth_dst", "eth_type")
    return [
        (FlowKey(nw_dst=VIP_NAT.ljust(16, b"\0"), **ipv4).pack(), m_vip, 30, [A.lb(1)]),
        (FlowKey(nw_dst=VIP_RING.ljust(16, b"\0"), **ipv4).pack(), m_vip, 30, [A.lb(2)]),
        (FlowKey(in_port=BACKEND_SIDE, **ipv4).pack(), mask("in_port", "eth_dst", "eth_type"), 20, [A.lb_reply()]),
        (FlowKey(nw_proto=4, nw_dst=TUNNEL_END.ljust(16, b"\0"), **ipv4).pack(),
         mask("eth_dst", "eth_type", "nw_proto", "nw_dst"), 25, [A.decap(deliver=True), A.route()]),
        (FlowKey(nw_proto=47, **ipv4).pack(), mask("eth_dst", "eth_type", "nw_proto"), 15, [A.decap(), A.route()]),
        (FlowKey(**ipv4).pack(), m_l3, 10, [A.route()] + extra_after_route),
        (FlowKey(in_port=L2_ACCESS).pack(), mask("in_port"), 5, [A.push_vlan(20, 3), A.output(L2_TRUNK)]),
        (FlowKey(in_port=L2_TRUNK, vlan_tci=consts.VLAN_PRESENT | 20).pack(),
         FlowKey.mask_of("in_port", "vlan_tci", vlan_vid_only=True), 5, [A.pop_vlan(), A.output(L2_ACCESS)]),
        (FlowKey(eth_dst=b"\xff" * 6).pack(), mask("eth_dst"), 4, [A.flood(range(N_PORTS))]),
        (FlowKey(eth_type=consts.ETH_TYPE_IPV6).pack(), mask("eth_type"), 2, [A.upcall(6)]),
        (FlowKey(in_port=SMALL).pack(), mask("in_port"), 1,
         [A.output(L2_ACCESS), A.set_eth_dst(L2_MACS[1]), A.output(L2_TRUNK), A.output(9)]),
    ]


def make_world(impl, extra_after_route, max_conns, max_flows=24, max_upcalls=48):
    dp = impl.Datapath(max_flows=max_flows, emc_entries=16, max_upcalls=max_upcalls)
    for p in range(N_PORTS):
        dp.add_port(p, "memory", max_frame=PORT_MAX_FRAME.get(p, 0))
    dp.nexthop_set(1, "connected", 10, src_mac=RMAC)
    dp.nexthop_set(2, "connected", 30, src_mac=RMAC)
    dp.nexthop_set(3, "local", 30)
    dp.nexthop_set(4, "gateway", 30, gateway=ROUTER, src_mac=RMAC)
    dp.nexthop_set(5, "blackhole", 0)
    dp.route_add(ip("192.0.2.0"), 24, 1)
    dp.route_add(ip("203.0.113.0"), 24, 2)
    for local in (SWITCH, VIP_NAT, VIP_RING):
        dp.route_add(local, 32, 3)
    dp.route_add(ip("198.51.100.64"), 26, 4)
    dp.route_add(ip("198.18.0.0"), 15, 5)
    dp.route_add(ip("198.51.100.128"), 25, 6)             # a next hop never set: NO_ROUTE
    dp.neigh_set(10, CLIENTS[0], CLIENT_MAC, CLIENT_SIDE)
    dp.neigh_set(10, CLIENTS[1], CLIENT_MAC, CLIENT_TRUNK, out_tci=10)
    dp.neigh_set(30, BACKENDS[0], BACKEND_MAC, BACKEND_SIDE)
    dp.neigh_set(30, BACKENDS[1], BACKEND_MAC, BACKEND_SIDE, out_tci=0x201E)
    dp.neigh_set(30, ROUTER, ROUTER_MAC, BACKEND_SIDE)
    for key, m, prio, acts in world_flows(extra_after_route):
        dp.flow_put(key, m, prio, acts, idle_timeout_ms=0, cookie=prio, now_ms=0)
    dp.conn_config(max_conns, TIMEOUTS)
    return dp


@st.composite
def world_conns(draw):
    """Connections as the slow path adds them for VIP 1, in every mode."""
    proto = draw(st.sampled_from([6, 6, 17]))
    client = ConnTuple(proto, draw(st.sampled_from(CLIENTS)), VIP_NAT, draw(st.sampled_from(CLIENT_PORTS)),
                       draw(st.sampled_from(VIP_PORTS)))
    mode = draw(st.integers(1, 5))
    backend = draw(st.sampled_from(BACKENDS))
    state = draw(st.sampled_from([1, 1, 2, 3, 4])) if proto == 6 else consts.CS_UDP
    reply = None
    if mode == consts.CONN_NAT:
        reply = ConnTuple(proto, backend, client.src, draw(st.sampled_from([8080, 80])), client.sport)
    elif mode == consts.CONN_FULLNAT:
        reply = ConnTuple(proto, backend, SWITCH, 8080, draw(st.integers(50000, 50002)))
    return Conn(client, reply, backend, SWITCH, mode, state, 1, draw(st.integers(0, 9)))


ring_backends = st.builds(RingBackend, st.sampled_from(BACKENDS), st.sampled_from([80, 8080]),
                          st.sampled_from(consts.RING_MODES), st.integers(1, 9), st.just(SWITCH))
TCP_FLAGS = (0x002, 0x002, 0x012, 0x010, 0x010, 0x018, 0x001, 0x011, 0x004, 0x014, 0x000, 0x003)


@st.composite
def world_frames(draw, conns, honest=False, partial=False):
    """(port, Built) of traffic the world's tables know: a connection's client or backend, tunnels, routed
    packets, L2 frames, and anything at all. `honest`: every IPv4 length and checksum right."""
    kind = draw(st.sampled_from(["client", "client", "stranger", "reply", "reply", "tunnel", "routed", "l2", "any"]))
    flags = draw(st.sampled_from(TCP_FLAGS))
    if kind in ("client", "stranger"):
        if conns and kind == "client":
            proto, src, dst, sport, dport = draw(st.sampled_from([c.client for c in conns]))
        else:
            proto, src, dst = draw(st.sampled_from([6, 17])), draw(st.sampled_from(CLIENTS)), \
                draw(st.sampled_from([VIP_NAT, VIP_RING]))
            sport, dport = draw(st.sampled_from(CLIENT_PORTS)), draw(st.sampled_from(VIP_PORTS))
        fix = dict(eth_dst=RMAC, src=src, dst=dst, proto=proto, sport=sport, dport=dport, flags=flags)
        port = draw(st.sampled_from([CLIENT_SIDE, CLIENT_TRUNK]))
    elif kind == "reply":
        replies = [c.reply for c in conns if c.reply]
        if replies and draw(st.integers(0, 3)):
            proto, src, dst, sport, dport = draw(st.sampled_from(replies))
        else:
            proto, src, dst = draw(st.sampled_from([6, 17])), draw(st.sampled_from(BACKENDS)), \
                draw(st.sampled_from(CLIENTS + (SWITCH,)))
            sport, dport = draw(st.sampled_from([8080, 80])), draw(st.sampled_from(CLIENT_PORTS + (50000,)))
        fix = dict(eth_dst=RMAC, src=src, dst=dst, proto=proto, sport=sport, dport=dport, flags=flags)
        port = BACKEND_SIDE
    elif kind == "tunnel":
        fix = dict(eth_dst=RMAC, dst=draw(st.sampled_from([TUNNEL_END, SWITCH, BACKENDS[0]])),
                   proto=draw(st.sampled_from([4, 47])))
        port = draw(st.sampled_from([BACKEND_SIDE, CLIENT_SIDE]))
    elif kind == "routed":
        fix = dict(eth_dst=RMAC)
        port = draw(st.integers(0, N_PORTS - 1))
    else:
        fix = {}
        port = draw(st.sampled_from([L2_ACCESS, L2_TRUNK, SMALL]) | st.integers(0, N_PORTS - 1))
    l3_kinds = ("ip4",) if kind not in ("l2", "any") else ("ip4", "ip4", "ip6", "arp", "other", "llc")
    if honest or partial:
        fix["honest"] = True
    if partial:
        fix["partial"] = True
        l3_kinds = ("ip4",)
    return port, draw(ff.built_frames(WORLD_POOLS, l3_kinds, fix))


@st.composite
def world_inputs(draw, conns):
    """(port, frame, vnet): world_frames, some damaged, with the vnet headers a guest could send with them."""
    port, built = draw(world_frames(conns))
    vnet = draw(ff.vnets_for(built))
    frame = built.data
    damage = draw(st.integers(0, 40))
    if damage in (0, 1, 2, 3, 4, 5):
        frame = draw(ff.mutate(frame))
    elif damage in (6, 7, 8, 9, 10):
        frame = frame[:draw(st.integers(0, len(frame)))]
    elif damage == 11:
        # As large as a port takes (a GSO super-frame's size): tags and tunnel headers grow it beyond.
        frame += bytes(consts.FRAME_MAX - len(frame) - draw(st.sampled_from([0, 0, 1, 4])))
    return port, frame, vnet


# Actions a flow may run after ROUTE, and what the slow path may execute(): every kind, NAT and LB included.
execute_actions = st.lists(valid_actions | st.sampled_from([A.route(), A.lb(1), A.lb(2), A.lb_reply(),
                                                            A.decap(), A.decap(deliver=True)]), max_size=5)


def world_state(dp):
    conn_stats = dp.conn_stats()
    del conn_stats["bytes_used"], conn_stats["bytes_per_conn"]
    return {
        # A detached port's answer is its refusal (ENOENT).
        "outputs": {p: outcome(dp.take, p) for p in range(N_PORTS)},
        "upcalls": [tuple(u) for u in dp.upcalls()],
        "stats": norm_stats(dp.stats()),
        "ports": {p: outcome(dp.port_stats, p) for p in range(N_PORTS)},
        "flows": sorted(map(norm_info, dp.flows())),
        "conn_stats": conn_stats,
        "conns": dp.conn_dump(),
        "events": dp.conn_events(),
        "ring": dp.ring_read(2),
        "ring_stats": dp.ring_stats(),
    }


def assert_same_state(dps, when):
    c, py = world_state(dps[0]), world_state(dps[1])
    for part in c:
        assert c[part] == py[part], f"{part} differ {when}\nC:  {c[part]}\npy: {py[part]}"
    return py


def parse_verdicts(inputs):
    """Per port: frames received and frames the parser refuses, by error name (what rx_errors must count)."""
    received = collections.Counter()
    refused = collections.Counter()
    for port, frame, vnet in inputs:
        received[port] += 1
        gso = vnet[1] & consts.VNET_GSO_TYPE_MASK != 0
        error = refpath.parse(frame, port, PORT_MAX_FRAME.get(port, 0), gso).error
        if error:
            refused[(port, consts.PARSE_ERROR_NAMES[error])] += 1
    return received, refused


@st.composite
def world_extra_flows(draw, conns):
    """Flows the slow path might add besides the switch's: keyed on a frame of the world, any mask, above or
    below the switch's flows, with any actions, idle timeouts and cookies."""
    flows = []
    for _ in range(draw(st.integers(0, 3))):
        port, frame, _vnet = draw(world_inputs(conns))
        key = refpath.parse(frame, port).key
        flow_mask = draw(st.sampled_from([mask("in_port"), mask("in_port", "eth_dst"), mask("eth_type", "nw_proto"),
                                          mask("eth_type", "nw_proto", "tp_dst"), mask("nw_src", "nw_dst"),
                                          mask("vlan_tci"), bytes(64)]))
        flows.append((key, flow_mask, draw(st.sampled_from([0, 12, 35])), draw(execute_actions),
                      draw(st.sampled_from([0, 0, 100, 1000])), draw(st.integers(0, 2**64 - 1))))
    return flows


def slow_path_step(dps, data, now):
    """Do what the slow path does with some of the upcalls, in both datapaths: add the connection a CONN_MISS
    asks for and resend the frame with its LB action; learn a neighbor a NO_NEIGH waits for and resend the frame
    with ROUTE; resend an ACTION upcall's frame out of another port."""
    upcalls = dps[1].upcalls()
    for u in upcalls[:data.draw(st.integers(0, 4), label="upcalls handled")]:
        key = FlowKey.unpack(u.key)
        if u.reason == consts.UPCALL_CONN_MISS and key.nw_proto in (6, 17):
            client = ConnTuple(key.nw_proto, key.nw_src[:4], key.nw_dst[:4], key.tp_src, key.tp_dst)
            conn = data.draw(world_conns(), label="slow path connection")
            reply = conn.reply and conn.reply._replace(proto=client.proto)
            if conn.mode == consts.CONN_NAT:
                reply = reply._replace(dst=client.src, dport=client.sport)
            conn = conn._replace(client=client, reply=reply,
                                 state=consts.CS_UDP if client.proto == 17 else consts.CS_SYN)
            results = [outcome(dp.conn_add, conn, now) for dp in dps]
            assert results[0] == results[1], conn
            resend = [A.lb(u.userdata)]
        elif u.reason == consts.UPCALL_NO_NEIGH:
            addr = data.draw(st.sampled_from(CLIENTS + BACKENDS + (ROUTER,)), label="neighbor")
            vlan, port = data.draw(st.sampled_from([(10, CLIENT_SIDE), (30, BACKEND_SIDE), (30, SMALL)]))
            for dp in dps:
                dp.neigh_set(vlan, addr, BACKEND_MAC, port)
            resend = [A.route()]
        elif u.reason == consts.UPCALL_ACTION:
            resend = [A.output(data.draw(st.integers(0, N_PORTS)))]
        else:
            continue
        for dp in dps:
            dp.execute(u.in_port, u.data, u.vnet, resend, now)       # a bad frame raises nothing
        assert_same_state(dps, f"after the slow path resent upcall {u} with {resend}")


@fuzz(120)
@given(st.lists(world_conns(), max_size=6), st.sampled_from([3, 100]),
       st.dictionaries(st.integers(0, 3), ring_backends, max_size=3), st.sampled_from([0, 1, 7]),
       st.lists(valid_actions, max_size=2), st.sampled_from([(24, 48), (24, 48), (12, 4)]), st.data())
def test_world_datapaths_agree(conns, max_conns, ring_backends_, ring_size, extra_after_route, bounds, data):
    """Both datapaths, configured alike, take the same rounds of frames, the slow path's answers to some upcalls,
    execute() calls, a port going away and coming back, and the clock moving on so that connections and flows
    expire: every output, upcall, counter, flow, connection and event is the same, and every frame taken is
    counted, the refused ones by their parse error."""
    say_seed()
    max_flows, max_upcalls = bounds
    dps = [make_world(impl, extra_after_route, max_conns, max_flows, max_upcalls) for impl in (fastpath, refpath)]
    try:
        now = 1000
        for conn in conns:
            results = [outcome(dp.conn_add, conn, now) for dp in dps]
            assert results[0] == results[1], conn
        for flow in data.draw(world_extra_flows(conns), label="extra flows"):
            results = [outcome(dp.flow_put, *flow, now) for dp in dps]
            assert results[0] == results[1], flow
        if ring_size:
            slots = data.draw(st.lists(st.sampled_from(sorted(ring_backends_)) | st.sampled_from([-1, 3]),
                                       min_size=ring_size, max_size=ring_size) if ring_backends_ else
                              st.just([-1] * ring_size), label="ring slots")
            for dp in dps:
                dp.ring_config(2, ring_size)
                for index, backend in ring_backends_.items():
                    dp.ring_backend(2, index, backend)
                dp.ring_write(2, list(enumerate(slots)))
        assert_same_state(dps, "after the configuration")
        received, refused = collections.Counter(), collections.Counter()    # per attached port
        refused_ever = collections.Counter()                                # by error, as stats() counts
        taken_ever = 0
        detached = set()
        for round_no in range(data.draw(st.integers(1, 3), label="rounds")):
            if data.draw(st.integers(0, 5), label="port churn") == 0:
                # SMALL goes away (its counters with it; outputs to it count bad_port) or comes back fresh.
                for dp in dps:
                    if SMALL in detached:
                        dp.add_port(SMALL, "memory", max_frame=PORT_MAX_FRAME[SMALL])
                    else:
                        dp.del_port(SMALL)
                detached ^= {SMALL}
                received[SMALL] = 0
                for k in [k for k in refused if k[0] == SMALL]:
                    refused[k] = 0
            inputs = [i for i in data.draw(st.lists(world_inputs(conns), max_size=24), label=f"round {round_no}")
                      if i[0] not in detached]
            for dp in dps:
                for port, frame, vnet in inputs:
                    dp.inject(port, frame, vnet)
            taken = [dp.run(now_ms=now) for dp in dps]
            assert taken == [len(inputs)] * 2
            state = assert_same_state(dps, f"after round {round_no}")
            round_received, round_refused = parse_verdicts(inputs)
            received.update(round_received)
            refused.update(round_refused)
            for (_p, name), n in round_refused.items():
                refused_ever[name] += n
            assert {k: v for k, v in state["stats"]["parse_errors"].items() if v} == dict(refused_ever)
            # Every frame taken was refused by the parser or looked up (a hit or a miss), nothing else.
            taken_ever += len(inputs)
            assert state["stats"]["rx_packets"] == taken_ever
            assert state["stats"]["hits"] + state["stats"]["misses"] == taken_ever - sum(refused_ever.values())
            for p in range(N_PORTS):
                if p not in detached:
                    assert state["ports"][p]["rx_packets"] == received[p]
                    assert state["ports"][p]["rx_errors"] == sum(n for (q, _e), n in refused.items() if q == p)
            slow_path_step(dps, data, now)
            for _ in range(data.draw(st.integers(0, 2), label="executes")):
                port, frame, vnet = data.draw(world_inputs(conns))
                acts = data.draw(execute_actions)
                for dp in dps:
                    dp.execute(port, frame, vnet, acts, now)
                assert_same_state(dps, f"after execute({port}, {frame.hex()}, {vnet.hex()}, {acts})")
            now += data.draw(st.sampled_from([0, 50, 99, 150, 400, 1500, 5000]), label="clock")
            assert dps[0].conn_expire(now_ms=now) == dps[1].conn_expire(now_ms=now)
            assert dps[0].expire(now_ms=now) == dps[1].expire(now_ms=now)
            assert_same_state(dps, f"after expiry at {now}")
    finally:
        for dp in dps:
            dp.close()


@fuzz(80)
@given(st.lists(world_conns(), max_size=6), st.lists(valid_actions, max_size=2), st.data())
def test_world_rewrites_keep_checksums_right(conns, extra_after_route, data):
    """An oracle besides the twin: frames whose checksums are all right come out with checksums still right,
    whatever the datapath did to them (TTL, NAT and fullnat rewrites, tunnel headers, decapsulation), since every
    rewrite updates the checksums it touches (RFC 1624). Partial checksums (vnet NEEDS_CSUM) are not finished
    checksums, so these frames carry none."""
    say_seed()
    dps = [make_world(impl, extra_after_route, 100) for impl in (fastpath, refpath)]
    try:
        for conn in conns:
            results = [outcome(dp.conn_add, conn, 1000) for dp in dps]
            assert results[0] == results[1], conn
        inputs = data.draw(st.lists(world_frames(conns, honest=True), max_size=16), label="frames")
        for port, built in inputs:
            assert ff.checksum_faults(built.data) == [], built.data.hex()
            for dp in dps:
                dp.inject(port, built.data)
        for dp in dps:
            dp.run(now_ms=1000)
        state = assert_same_state(dps, "after the run")
        for port, frames in state["outputs"].items():
            for frame, _vnet in frames:
                assert ff.checksum_faults(frame) == [], f"port {port} frame={frame.hex()}"
        for u in state["upcalls"]:
            assert ff.checksum_faults(u[5]) == [], f"upcall {u}"
    finally:
        for dp in dps:
            dp.close()


TCP_PROTO, UDP_PROTO = 6, 17


@st.composite
def partial_inputs(draw, conns):
    """(port, frame, vnet) as a guest with checksum offload sends them: NEEDS_CSUM at the TCP/UDP checksum, the
    field holding the pseudo-header sum; some GSO super-frames of the right type."""
    port, built = draw(world_frames(conns, partial=True))
    field = {TCP_PROTO: 16, UDP_PROTO: 6}.get(built.proto)
    if field is None or not built.l4:
        return port, built.data, bytes(10)
    gso_type, gso_size = 0, 0
    if draw(st.integers(0, 3)) == 0:
        gso_type = consts.VNET_GSO_TCPV4 if built.proto == TCP_PROTO else consts.VNET_GSO_UDP_L4
        gso_size = draw(st.sampled_from([8, 16, 536]))
    return port, built.data, ff.vnet(consts.VNET_F_NEEDS_CSUM, gso_type, 0, gso_size, built.l4, field)


@fuzz(60)
@given(st.lists(world_conns(), max_size=6), st.data())
def test_world_partial_checksums_complete_right(conns, data):
    """The same oracle for partial checksums: whatever the datapath did to a NEEDS_CSUM frame (NAT updates the
    pseudo-header sum, tags and tunnel headers move csum_start), completing it as the kernel would (offload_csum,
    or cutting a GSO frame into segments) gives right checksums."""
    say_seed()
    dps = [make_world(impl, [], 100) for impl in (fastpath, refpath)]
    try:
        for conn in conns:
            results = [outcome(dp.conn_add, conn, 1000) for dp in dps]
            assert results[0] == results[1], conn
        inputs = data.draw(st.lists(partial_inputs(conns), max_size=16), label="frames")
        for port, frame, vnet in inputs:
            assert ff.checksum_faults(finished(frame, vnet)) == [], f"{frame.hex()} {vnet.hex()}"
            for dp in dps:
                dp.inject(port, frame, vnet)
        for dp in dps:
            dp.run(now_ms=1000)
        state = assert_same_state(dps, "after the run")
        for port, frames in state["outputs"].items():
            for frame, vnet in frames:
                assert ff.checksum_faults(finished(frame, vnet)) == [], \
                    f"port {port} frame={frame.hex()} vnet={vnet.hex()}"
    finally:
        for dp in dps:
            dp.close()


def finished(frame, vnet):
    """The frame as the kernel sends it: its partial checksum completed (a GSO frame: its first segment)."""
    flags, gso_type = vnet[0], vnet[1] & consts.VNET_GSO_TYPE_MASK
    if gso_type:
        segments = outcome(refpath.gso_segments, frame, vnet)
        return b"" if isinstance(segments, tuple) else segments[0]
    if flags & consts.VNET_F_NEEDS_CSUM:
        done = outcome(refpath.offload_csum, frame, vnet)
        assert not isinstance(done, tuple), f"offload_csum refused {frame.hex()} {vnet.hex()}"
        return done
    return frame
