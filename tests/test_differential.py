"""The C fast path and its pure-Python twin fed the same input must answer byte for byte alike.

Frames come from hypothesis: valid ones built with scapy, and malformed ones (truncations of valid frames at every
length, random bytes, lying length fields, bad IHL, bad TCP data offset). Flow tables get random operation
sequences under a fake clock; whole datapaths with memory ports get the same frames and flows.
docs/DATAPATH.md is the contract; a mismatch is reported with the input so it can be replayed.
"""
import errno
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, GRE, LLC, Dot1AD, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from pyswitch import consts, fastpath, refpath
from pyswitch.actions import Action
from pyswitch.datapath_types import FlowTableError
from pyswitch.flowkey import FlowKey
from pyswitch.refpath.nat import ipv4_offset

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

# -- frame strategies ---------------------------------------------------------------------------------------------

macs = st.sampled_from(["02:00:00:00:00:01", "02:00:00:00:00:02", "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01"])
ip4s = st.sampled_from(["192.0.2.1", "192.0.2.2", "198.51.100.7", "203.0.113.200"])
ip6s = st.sampled_from(["2001:db8::1", "2001:db8::2", "2001:db8:1::ff"])
ports16 = st.integers(0, 0xFFFF)
payloads = st.binary(max_size=40).map(Raw)


@st.composite
def l4_for(draw, version):
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "raw"]))
    if kind == "tcp":
        opts = draw(st.sampled_from([[], [("MSS", 1460)], [("NOP", None), ("WScale", 7)], [("SAckOK", b"")]]))
        return TCP(sport=draw(ports16), dport=draw(ports16), flags=draw(st.integers(0, 0xFFF)), options=opts) \
            / draw(payloads)
    if kind == "udp":
        return UDP(sport=draw(ports16), dport=draw(ports16)) / draw(payloads)
    if kind == "icmp":
        if version == 4:
            return ICMP(type=draw(st.integers(0, 255)), code=draw(st.integers(0, 255))) / draw(payloads)
        return ICMPv6EchoRequest(code=draw(st.integers(0, 255))) / draw(payloads)
    return draw(payloads)


@st.composite
def l3s(draw):
    kind = draw(st.sampled_from(["ip4", "ip4", "ip6", "ip6", "arp", "other"]))
    if kind == "ip4":
        frag = draw(st.sampled_from([0, 0, 0, 1, 100]))
        mf = draw(st.booleans()) if frag or draw(st.booleans()) else False
        options = draw(st.sampled_from([b"", b"\x94\x04\x00\x00", b"\x01" * 8]))
        ip = IP(src=draw(ip4s), dst=draw(ip4s), tos=draw(st.integers(0, 255)), ttl=draw(st.integers(0, 255)),
                frag=frag, flags="MF" if mf else 0, options=options)
        l4 = draw(l4_for(4))
        if isinstance(l4, Raw):
            ip.proto = draw(st.sampled_from([6, 17, 1, 47, 58]))
        return ip / l4
    if kind == "ip6":
        ip = IPv6(src=draw(ip6s), dst=draw(ip6s), tc=draw(st.integers(0, 255)), hlim=draw(st.integers(0, 255)))
        exts = draw(st.lists(st.sampled_from(["hbh", "dst", "rt", "frag"]), max_size=3))
        pkt = ip
        for e in exts:
            if e == "hbh":
                pkt = pkt / IPv6ExtHdrHopByHop()
            elif e == "dst":
                pkt = pkt / IPv6ExtHdrDestOpt()
            elif e == "rt":
                pkt = pkt / IPv6ExtHdrRouting()
            else:
                pkt = pkt / IPv6ExtHdrFragment(offset=draw(st.sampled_from([0, 0, 5])), m=draw(st.integers(0, 1)))
        return pkt / draw(l4_for(6))
    if kind == "arp":
        return ARP(op=draw(st.sampled_from([1, 2, 0x0101])), psrc=draw(ip4s), pdst=draw(ip4s))
    return Raw(draw(st.binary(max_size=20)))


@st.composite
def valid_frames(draw):
    """Frames the parser should take, built with scapy (some legitimately fail: UDP length in a fragment...)."""
    if draw(st.integers(0, 9)) == 0:
        return bytes(Dot3(src=draw(macs), dst=draw(macs)) / LLC() / draw(payloads))
    n_tags = draw(st.sampled_from([0, 0, 1, 2]))
    l3 = draw(l3s())
    eth = Ether(src=draw(macs), dst=draw(macs))
    pkt = eth
    for i in range(n_tags):
        tag_cls = Dot1AD if (i == 0 and n_tags == 2 and draw(st.booleans())) else Dot1Q
        pkt = pkt / tag_cls(vlan=draw(st.integers(0, 4095)), prio=draw(st.integers(0, 7)),
                            dei=draw(st.integers(0, 1)))
    if isinstance(l3, Raw):
        # An EtherType nobody parses.
        if n_tags:
            pkt.lastlayer().type = 0x88CC
        else:
            pkt.type = 0x88CC
    frame = bytes(pkt / l3)
    if draw(st.booleans()):
        frame += bytes(draw(st.integers(0, 20)))          # Ethernet padding
    return frame


LYING = [  # (description, offset from the L3 header, struct format, values)
    ("ihl", 0, "!B", st.sampled_from([0x40, 0x44, 0x46, 0x4F, 0x55, 0x65, 0x00])),
    ("tot_len", 2, "!H", st.integers(0, 0xFFFF)),
    ("ip6_plen", 4, "!H", st.integers(0, 0xFFFF)),
    ("ip6_next", 6, "!B", st.sampled_from([0, 43, 44, 51, 60, 6, 17, 58, 59])),
    ("tcp_doff", 32, "!B", st.integers(0, 255)),
    ("l4_len", 24, "!H", st.integers(0, 0xFFFF)),
    ("ext_len", 41, "!B", st.integers(0, 255)),
    ("random", 0, "!B", st.integers(0, 255)),
]


@st.composite
def lying_frames(draw):
    frame = bytearray(draw(valid_frames()))
    for _ in range(draw(st.integers(1, 3))):
        _name, offset, fmt, values = draw(st.sampled_from(LYING))
        l3 = draw(st.sampled_from([14, 18, 22]))
        at = l3 + offset + draw(st.integers(0, 8)) if _name == "random" else l3 + offset
        if at + struct.calcsize(fmt) <= len(frame):
            struct.pack_into(fmt, frame, at, draw(values))
    return bytes(frame)


any_frames = st.one_of(valid_frames(), lying_frames(), st.binary(max_size=80),
                       valid_frames().flatmap(lambda f: st.integers(0, len(f)).map(lambda n: f[:n])))


def both_parse(frame, in_port=0, max_frame=0, is_gso=False):
    c = fastpath.parse(frame, in_port, max_frame, is_gso)
    py = refpath.parse(frame, in_port, max_frame, is_gso)
    assert tuple(c) == tuple(py), (
        f"frame={frame.hex()} in_port={in_port} max_frame={max_frame} is_gso={is_gso}\n"
        f"C:  {c.error} {FlowKey.unpack(c.key)} l3={c.l3_ofs} l4={c.l4_ofs}\n"
        f"py: {py.error} {FlowKey.unpack(py.key)} l3={py.l3_ofs} l4={py.l4_ofs}")
    return py


# -- parse ----------------------------------------------------------------------------------------------------------

@SETTINGS
@given(any_frames, st.integers(0, 0xFFFF), st.sampled_from([0, 0, 60, 100, 1514]), st.booleans())
def test_parse_equal(frame, in_port, max_frame, is_gso):
    both_parse(frame, in_port, max_frame, is_gso)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(valid_frames())
def test_parse_every_truncation(frame):
    for n in range(len(frame) + 1):
        both_parse(frame[:n], 1)


# -- checksums ------------------------------------------------------------------------------------------------------

@SETTINGS
@given(st.binary(max_size=300), st.integers(0, 0xFFFFFFFF))
def test_csum_equal(data, initial):
    assert fastpath.csum(data, initial) == refpath.csum(data, initial)


@SETTINGS
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
       st.integers(0, 0xFFFFFFFF))
def test_csum_update_equal(check, old16, new16, old32, new32):
    assert fastpath.csum_update16(check, old16, new16) == refpath.csum_update16(check, old16, new16)
    assert fastpath.csum_update32(check, old32, new32) == refpath.csum_update32(check, old32, new32)


def test_csum_large_frame():
    data = bytes(range(256)) * 256 + b"\xff" * (consts.FRAME_MAX - 65536 + 1)
    assert fastpath.csum(data, 0xFFFFFFFF) == refpath.csum(data, 0xFFFFFFFF)


# -- actions --------------------------------------------------------------------------------------------------------

mac_bytes = st.sampled_from([bytes(6), b"\x02\x00\x00\x00\x00\x09", b"\xff" * 6])
valid_actions = st.one_of(
    st.builds(lambda p: Action(consts.ACT_OUTPUT, arg=p), st.integers(0, 63)),
    st.builds(lambda b: Action(consts.ACT_FLOOD, ports=b), st.integers(0, 2**64 - 1) | st.integers(0, 15)),
    st.builds(lambda m: Action(consts.ACT_SET_ETH_SRC, data=m), mac_bytes),
    st.builds(lambda m: Action(consts.ACT_SET_ETH_DST, data=m), mac_bytes),
    st.builds(lambda t: Action(consts.ACT_PUSH_VLAN, arg=t), st.integers(0, 0xFFFF)),
    st.just(Action(consts.ACT_POP_VLAN)),
    st.builds(lambda u: Action(consts.ACT_UPCALL, arg32=u), st.integers(0, 2**32 - 1)),
)
# NAT rewrites (docs/DATAPATH.md "NAT rewrites"). Addresses are at most 4 bytes (shorter ones are zero-padded, as
# C's data[16] is): a flow dump gives back 4, so a longer one would not compare.
ip4_bytes = st.sampled_from([bytes([192, 0, 2, 1]), bytes([10, 0, 0, 7]), bytes(4), b"\xff" * 4, b"\x01\x02"]) \
    | st.binary(min_size=4, max_size=4)
nat_actions = st.one_of(
    st.builds(lambda a: Action(consts.ACT_SET_IPV4_SRC, data=a), ip4_bytes),
    st.builds(lambda a: Action(consts.ACT_SET_IPV4_DST, data=a), ip4_bytes),
    st.builds(lambda p: Action(consts.ACT_SET_TP_SRC, arg=p), st.sampled_from([0, 53, 80, 0xFFFF]) | ports16),
    st.builds(lambda p: Action(consts.ACT_SET_TP_DST, arg=p), st.sampled_from([0, 53, 80, 0xFFFF]) | ports16),
)
valid_actions = valid_actions | nat_actions
# The connection and tunnel actions (docs/DATAPATH.md "Connection table", "Tunnels"): without connections LB
# upcalls (CONN_MISS) and LB_REPLY routes; DECAP strips what it can and counts the rest.
lb_actions = st.one_of(
    st.builds(lambda v: Action(consts.ACT_LB, arg32=v), st.integers(0, 2**32 - 1)),
    st.just(Action(consts.ACT_LB_REPLY)),
    st.just(Action(consts.ACT_DECAP)),
    st.just(Action(consts.ACT_DECAP, arg=consts.DECAP_DELIVER)),
)
valid_actions = valid_actions | lb_actions
bad_actions = st.one_of(st.builds(lambda p: Action(consts.ACT_OUTPUT, arg=p), st.integers(64, 0xFFFF)),
                        st.builds(lambda t: Action(t), st.sampled_from([0, 16, 99, 0xFFFF])))
action_lists = st.lists(valid_actions, max_size=16)


@st.composite
def vnets(draw):
    return struct.pack("<BBHHHH", draw(st.sampled_from([0, 1, 2, 3])), draw(st.sampled_from([0, 1, 3, 4, 0x80, 0x81])),
                       draw(st.sampled_from([0, 2, 4, 54, 0xFFFE])), draw(st.integers(0, 0xFFFF)),
                       draw(st.sampled_from([0, 2, 3, 4, 34, 0xFFFD])), draw(st.integers(0, 0xFFFF)))


@SETTINGS
@given(any_frames, vnets(), st.integers(0, 63), action_lists)
def test_actions_apply_equal(frame, vnet, in_port, actions):
    c = fastpath.actions_apply(frame, vnet, in_port, actions)
    py = refpath.actions_apply(frame, vnet, in_port, actions)
    assert [tuple(o) for o in c] == [tuple(o) for o in py], f"frame={frame.hex()} vnet={vnet.hex()} {actions}"


@settings(max_examples=50, deadline=None)
@given(st.lists(valid_actions, max_size=4), bad_actions, st.lists(valid_actions, max_size=4))
def test_actions_apply_refuses_alike(before, bad, after):
    for impl in (fastpath, refpath):
        with pytest.raises(OSError) as e:
            impl.actions_apply(bytes(64), bytes(10), 0, before + [bad] + after)
        assert e.value.errno == errno.EINVAL
    for impl in (fastpath, refpath):
        with pytest.raises(OSError):
            impl.actions_apply(bytes(64), bytes(10), 0, [Action(consts.ACT_POP_VLAN)] * 17)


# -- flow table -----------------------------------------------------------------------------------------------------

def norm_action(a):
    """C carries data in 16 bytes; compare actions as that struct holds them."""
    a = Action(*a)
    return (a.type, a.arg, a.arg32, bytes(a.data).ljust(16, b"\0")[:16], a.ports)


def norm_info(info):
    if info is None:
        return None
    return tuple(info[:8]) + (tuple(norm_action(a) for a in info.actions),)


def norm_stats(stats):
    stats = dict(stats)
    stats["hits"] = stats.pop("emc_hits") + stats.pop("masked_hits")
    return stats


KEYS = [FlowKey(in_port=p, eth_dst=bytes([2, 0, 0, 0, 0, d]), eth_type=t, nw_proto=pr, tp_dst=tp).pack()
        for p in (1, 2) for d in (1, 2) for t in (0x0800, 0x86DD) for pr in (6, 17) for tp in (80, 443)]
MASKS = [FlowKey.mask_of(*names) for names in (
    ("in_port",), ("eth_dst",), ("in_port", "eth_dst"), ("eth_type", "nw_proto"), ("eth_type", "nw_proto", "tp_dst"),
    ("in_port", "eth_dst", "eth_type", "nw_proto", "tp_dst"))] + [bytes(64), b"\xff" * 64]
keys = st.sampled_from(KEYS) | st.binary(min_size=64, max_size=64)
masks = st.sampled_from(MASKS)
priorities = st.sampled_from([0, 1, 5, 0xFFFFFFFF])

ft_ops = st.one_of(
    st.tuples(st.just("put"), keys, masks, priorities, action_lists | st.lists(bad_actions, min_size=1, max_size=1),
              st.sampled_from([0, 50, 300]), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("delete"), keys, masks, priorities),
    st.tuples(st.just("delete_loose"), keys, masks),
    st.tuples(st.just("lookup"), keys, st.integers(0, 9000)),
    st.tuples(st.just("lookup"), keys, st.integers(0, 9000)),
    st.tuples(st.just("expire"), st.integers(0, 5)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("tick"), st.integers(0, 250)),
)


def ft_step(ft, op, now):
    name = op[0]
    if name == "put":
        _, key, mask, prio, acts, idle, cookie = op
        try:
            return ft.put(key, mask, prio, acts, idle, cookie, now)
        except FlowTableError as e:
            return ("error", e.errno)
    if name == "delete":
        return ft.delete(*op[1:])
    if name == "delete_loose":
        return ft.delete_loose(*op[1:])
    if name == "lookup":
        return norm_info(ft.lookup(op[1], op[2], now))
    if name == "expire":
        return ft.expire(now, op[1])
    if name == "flush":
        return ft.flush()
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(1, 6), st.sampled_from([0, 1, 4, 8192]), st.lists(ft_ops, max_size=60))
def test_flowtable_equal(max_flows, emc_entries, ops):
    c = fastpath.FlowTable(max_flows=max_flows, emc_entries=emc_entries)
    py = refpath.FlowTable(max_flows=max_flows, emc_entries=emc_entries)
    now = 1000
    for i, op in enumerate(ops):
        if op[0] == "tick":
            now += op[1]
            continue
        rc, rpy = ft_step(c, op, now), ft_step(py, op, now)
        assert rc == rpy, f"op {i} {op} at {now}"
        assert norm_stats(c.stats()) == norm_stats(py.stats()), f"op {i} {op} at {now}"
        assert len(c) == len(py)
    assert sorted(map(norm_info, c.dump())) == sorted(map(norm_info, py.dump()))


def test_flowtable_subtable_limit_equal():
    c, py = fastpath.FlowTable(), refpath.FlowTable()
    for prio in range(consts.MAX_SUBTABLES + 2):
        assert ft_step(c, ("put", KEYS[0], MASKS[0], prio, [], 0, prio), 0) == \
            ft_step(py, ("put", KEYS[0], MASKS[0], prio, [], 0, prio), 0)
    assert norm_stats(c.stats()) == norm_stats(py.stats())
    assert py.stats()["refused"] == 2


# -- whole datapaths ------------------------------------------------------------------------------------------------

N_PORTS = 4
flow_masks = st.sampled_from([FlowKey.mask_of("in_port"), FlowKey.mask_of("in_port", "eth_dst"),
                              FlowKey.mask_of("eth_type", "nw_proto"), FlowKey.mask_of("vlan_tci"), bytes(64)])
dp_actions = st.lists(st.one_of(valid_actions, st.builds(lambda p: Action(consts.ACT_OUTPUT, arg=p),
                                                          st.integers(0, 5))), max_size=6)


@st.composite
def dp_scenarios(draw):
    frames = draw(st.lists(st.tuples(st.integers(0, N_PORTS - 1), any_frames, vnets()), max_size=40))
    n_flows = draw(st.integers(0, 6))
    flows = []
    for _ in range(n_flows):
        port, frame, _v = draw(st.sampled_from(frames)) if frames else (0, b"", b"")
        key = refpath.parse(frame, port).key if frame else draw(keys)
        flows.append((key, draw(flow_masks), draw(priorities), draw(dp_actions)))
    # Empty frames are left to test_execute_empty_frame: C's take() cannot return them (see there).
    executes = draw(st.lists(st.tuples(st.integers(0, 7), any_frames.filter(len), vnets(), dp_actions), max_size=3))
    return frames, flows, executes, draw(st.sampled_from([0, 80, 1514])), draw(st.sampled_from([1, 3, 256]))


def dp_state(dp):
    return {
        "outputs": {p: dp.take(p) for p in range(N_PORTS)},
        "upcalls": [tuple(u) for u in dp.upcalls()],
        "upcalls_from_1": [tuple(u) for u in dp.upcalls(1)],
        "stats": norm_stats(dp.stats()),
        "ports": {p: dp.port_stats(p) for p in range(N_PORTS)},
        "flows": sorted(map(norm_info, dp.flows())),
    }


def scenario_datapaths(flows, max_frame, max_upcalls):
    """The C datapath and its twin, each with N_PORTS memory ports (port 1 bounded by `max_frame`) and `flows`."""
    dps = [fastpath.Datapath(max_flows=8, emc_entries=16, max_upcalls=max_upcalls),
           refpath.Datapath(max_flows=8, emc_entries=16, max_upcalls=max_upcalls)]
    for dp in dps:
        for p in range(N_PORTS):
            dp.add_port(p, "memory", max_frame=max_frame if p == 1 else 0)
        for key, mask, prio, acts in flows:
            dp.flow_put(key, mask, prio, acts, now_ms=0)
    return dps


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(dp_scenarios())
def test_datapath_equal(scenario):
    frames, flows, executes, max_frame, max_upcalls = scenario
    dps = scenario_datapaths(flows, max_frame, max_upcalls)
    try:
        for batch, now in ((frames[:len(frames) // 2], 10), (frames[len(frames) // 2:], 250)):
            for dp in dps:
                for port, frame, vnet in batch:
                    dp.inject(port, frame, vnet)
            counts = [dp.run(now_ms=now) for dp in dps]
            assert counts[0] == counts[1]
            state_c, state_py = dp_state(dps[0]), dp_state(dps[1])
            assert state_c == state_py
        for in_port, frame, vnet, acts in executes:
            for dp in dps:
                dp.execute(in_port, frame, vnet, acts)
            assert dp_state(dps[0]) == dp_state(dps[1])
        assert [dp.expire(now_ms=10**6) for dp in dps][0] is not None
        assert dp_state(dps[0]) == dp_state(dps[1])
    finally:
        for dp in dps:
            dp.close()


def test_execute_empty_frame():
    """execute() on an empty frame with an OUTPUT must transmit it, and take() must return it.

    C's ps_dp_mem_take returns the frame's size, 0 meaning "queue empty", so fastpath.take() loses a
    zero-length frame (and stops before any frame queued behind it).
    """
    for impl in (refpath, fastpath):
        dp = impl.Datapath()
        try:
            dp.add_port(0, "memory")
            dp.add_port(1, "memory")
            dp.execute(0, b"", bytes(10), [Action(consts.ACT_OUTPUT, arg=1)])
            dp.execute(0, bytes(20), bytes(10), [Action(consts.ACT_OUTPUT, arg=1)])
            assert dp.stats()["tx_packets"] == 2, impl.__name__
            assert dp.take(1) == [(b"", bytes(10)), (bytes(20), bytes(10))], impl.__name__
        finally:
            dp.close()


def test_frame_grown_past_frame_max_is_taken():
    """A frame of FRAME_MAX bytes (the largest a port takes) that a flow's actions grow, by tags or a tunnel header
    into the headroom, is transmitted whole by both datapaths, and take() returns it (found by
    tests/test_differential_fuzz.py: fastpath.take() had a buffer of FRAME_MAX bytes and raised ENOSPC, leaving the
    frame queued and the port's queue stuck behind it)."""
    frame = bytes(range(256)) * (consts.FRAME_MAX // 256) + bytes(consts.FRAME_MAX % 256)
    acts = [Action(consts.ACT_PUSH_VLAN, arg=10)] * 15 + [Action(consts.ACT_OUTPUT, arg=1)]
    taken = []
    for impl in (fastpath, refpath):
        dp = impl.Datapath()
        try:
            dp.add_port(0, "memory")
            dp.add_port(1, "memory")
            dp.flow_put(bytes(64), bytes(64), 0, acts, now_ms=0)
            dp.inject(0, frame)
            dp.inject(0, bytes(60))
            dp.run(now_ms=1)
            taken.append([len(f) for f, _v in dp.take(1)])
        finally:
            dp.close()
    assert taken[0] == taken[1] == [consts.FRAME_MAX + 60, 60 + 60]


def test_frame_larger_than_frame_max_executed_is_taken():
    """execute() is not bounded by FRAME_MAX (a real port's send refuses what its MTU does not take): a memory
    port transmits a larger frame, and take() returns it from both datapaths (C's take() had raised ENOSPC)."""
    for impl in (fastpath, refpath):
        dp = impl.Datapath()
        try:
            dp.add_port(0, "memory")
            frame = bytes(range(256)) * 1000
            dp.execute(0, frame, bytes(10), [Action(consts.ACT_OUTPUT, arg=0), Action(consts.ACT_OUTPUT, arg=0)],
                       now_ms=0)
            assert dp.take(0) == [(frame, bytes(10))] * 2, impl.__name__
            assert dp.port_stats(0)["tx_bytes"] == 2 * len(frame)
        finally:
            dp.close()


def test_bad_port_numbers_refused_alike():
    """Port numbers no port can have (beyond 63, beyond 16 bits, negative) get the same error from both: ENOENT
    where a port is looked up, EINVAL where one is added, and ValueError for execute()'s in_port (found by
    tests/test_differential_fuzz.py: cffi raised OverflowError past 16 bits, and the twin a struct.error from
    deep in the parser)."""
    for impl in (fastpath, refpath):
        dp = impl.Datapath()
        try:
            dp.add_port(0, "memory")
            for port_no in (64, 0xFFFF, 0x10000, 10**9, -1):
                for call, args in ((dp.inject, (port_no, bytes(60))), (dp.take, (port_no,)),
                                   (dp.port_stats, (port_no,)), (dp.del_port, (port_no,))):
                    with pytest.raises(OSError) as e:
                        call(*args)
                    assert e.value.errno == errno.ENOENT, (impl.__name__, call.__name__, port_no)
                with pytest.raises(OSError) as e:
                    dp.add_port(port_no, "memory")
                assert e.value.errno == errno.EINVAL, (impl.__name__, port_no)
            for in_port in (0x10000, -1):
                with pytest.raises(ValueError):
                    dp.execute(in_port, bytes(60), bytes(10), [Action(consts.ACT_OUTPUT, arg=0)], now_ms=0)
            dp.execute(0xFFFF, bytes(60), bytes(10), [Action(consts.ACT_OUTPUT, arg=0)], now_ms=0)
            assert len(dp.take(0)) == 1
        finally:
            dp.close()


# -- routing --------------------------------------------------------------------------------------------------------

ROUTE_BASES = [bytes([198, 51, 100, 0]), bytes([198, 51, 100, 128]), bytes([192, 0, 2, 64]), bytes([203, 0, 113, 7]),
               bytes([198, 51, 0, 0]), bytes([10, 0, 0, 0]), bytes(4)]
route_prefixes = st.sampled_from(ROUTE_BASES) | st.binary(min_size=4, max_size=4)
route_plens = st.sampled_from([0, 1, 8, 16, 23, 24, 25, 26, 30, 31, 32]) | st.integers(0, 32)
route_nhs = st.integers(1, consts.MAX_NEXTHOPS - 1) | st.integers(1, 6)


@st.composite
def route_addrs(draw):
    """Addresses near the prefixes, so that lookups land inside, at the edges of and just outside routes."""
    base = int.from_bytes(draw(route_prefixes), "big")
    delta = draw(st.sampled_from([0, 1, 63, 64, 127, 128, 200, 255, 256, -1, 2**24])) | 0
    return ((base + delta) % 2**32).to_bytes(4, "big")


def brute_lookup(rules, addr):
    """The definition of longest-prefix match, with nothing clever in it."""
    a = int.from_bytes(addr, "big")
    best_len, best_nh = -1, 0
    for (prefix, plen), nh in rules.items():
        mask = ((1 << plen) - 1) << (32 - plen)
        if a & mask == prefix and plen > best_len:
            best_len, best_nh = plen, nh
    return best_nh


def lpm_step(lpm, op):
    try:
        if op[0] == "add":
            return lpm.add(*op[1:])
        return lpm.delete(*op[1:])
    except (ValueError, OSError) as e:
        return (type(e).__name__, getattr(e, "errno", None))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.just("add"), route_prefixes, route_plens, route_nhs), max_size=25),
       st.lists(st.tuples(st.just("del"), route_prefixes, route_plens), max_size=15),
       st.lists(route_addrs(), max_size=30), st.sampled_from([(65536, 4096), (5, 2), (12, 1)]))
def test_lpm_equal(adds, deletes, addrs, bounds):
    c, py = fastpath.Lpm(*bounds), refpath.Lpm(*bounds)
    rules = {}
    ops = adds + deletes
    for phase in (adds, deletes):
        for op in phase:
            rc, rpy = lpm_step(c, op), lpm_step(py, op)
            assert rc == rpy, f"{op}"
            if rc is None:                                   # an add that was taken
                _, prefix, plen, nh = op
                rules[(int.from_bytes(prefix, "big") & (((1 << plen) - 1) << (32 - plen)), plen)] = nh
            elif rc is True:
                _, prefix, plen = op
                del rules[(int.from_bytes(prefix, "big") & (((1 << plen) - 1) << (32 - plen)), plen)]
            assert len(c) == len(py) == len(rules)
        probe = addrs + [p for op in ops for p in (op[1],)]
        for addr in probe:
            expect = brute_lookup(rules, addr)
            assert c.lookup(addr) == py.lookup(addr) == expect, f"{addr.hex()} after {ops}"


def test_lpm_bad_arguments_alike():
    for impl in (fastpath, refpath):
        lpm = impl.Lpm()
        for args in ((bytes(4), 33, 1), (bytes(4), 8, 0), (bytes(4), 8, 4096), (bytes(5), 8, 1)):
            with pytest.raises(ValueError):
                lpm.add(*args)


R_PORTS = 4
R_MACS = [b"\x02\x00\x00\x00\x01" + bytes([i]) for i in range(4)]
R_ADDRS = ["198.51.100.7", "198.51.100.200", "192.0.2.65", "192.0.2.1", "203.0.113.7", "203.0.113.254",
           "10.1.2.3", "0.0.0.9", "127.0.0.1", "224.0.0.5", "239.1.1.1", "240.0.0.1", "255.255.255.255"]
r_addr_bytes = st.sampled_from([bytes(map(int, a.split("."))) for a in R_ADDRS])


@st.composite
def route_tables(draw):
    """Tables that often line up (route -> set next hop -> resolved neighbor), so every step of ROUTE is reached."""
    routes = draw(st.lists(st.tuples(route_prefixes | r_addr_bytes, route_plens, st.integers(1, 6)), max_size=8))
    routes += [(bytes(4), 0, draw(st.integers(1, 6)))] if draw(st.booleans()) else []
    nexthops = [(nh_id, draw(st.sampled_from([1, 1, 2, 2, 3, 4])), draw(st.sampled_from([0, 10, 20])),
                 draw(r_addr_bytes), draw(st.sampled_from(R_MACS)))
                for nh_id in range(1, 7) if draw(st.integers(0, 4))]
    neighs = draw(st.lists(st.tuples(st.sampled_from([0, 10, 20]), r_addr_bytes, st.sampled_from(R_MACS),
                                     st.integers(0, R_PORTS), st.sampled_from([0, 0, 20, 0x3014])), max_size=25))
    # Resolve most gateways and most unicast destinations on the next hops' VLANs.
    for _nh_id, _kind, vlan, gateway, _mac in nexthops:
        for addr in [gateway] + [bytes(map(int, a.split("."))) for a in R_ADDRS[:7]]:
            if draw(st.integers(0, 2)):
                neighs.append((vlan, addr, draw(st.sampled_from(R_MACS)), draw(st.integers(0, R_PORTS - 1)),
                               draw(st.sampled_from([0, 0, 20, 0x3014]))))
    return routes, nexthops, neighs


@st.composite
def route_frames(draw):
    src = draw(st.sampled_from(R_ADDRS[:7]) | st.sampled_from(R_ADDRS))
    dst = draw(st.sampled_from(R_ADDRS[:7]) | st.sampled_from(R_ADDRS))
    ip = IP(src=src, dst=dst, ttl=draw(st.sampled_from([0, 1, 2, 64, 64, 255])),
            tos=draw(st.integers(0, 255)), id=draw(st.integers(0, 0xFFFF)),
            options=draw(st.sampled_from([b"", b"", b"\x94\x04\x00\x00"])),
            frag=draw(st.sampled_from([0, 0, 7])), flags=draw(st.sampled_from([0, "MF", "DF"])))
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:fe")
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        pkt = pkt / Dot1Q(vlan=draw(st.sampled_from([10, 20, 30])))
    return bytes(pkt / ip / draw(l4_for(4)))


@st.composite
def tunnel_frames(draw):
    """An IPIP or GRE packet around a route_frames() packet, so DECAP's delivery to the outer destination is routed."""
    inner = Ether(draw(route_frames()))[IP]
    outer = IP(src=draw(st.sampled_from(R_ADDRS[:7])), dst=draw(st.sampled_from(R_ADDRS[:7])),
               ttl=draw(st.sampled_from([1, 64])))
    body = GRE(proto=0x0800) / inner if draw(st.booleans()) else inner
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:fe") / outer / body)


_route_dp_action_lists = st.lists(st.one_of(
    st.just(Action(consts.ACT_ROUTE)), st.just(Action(consts.ACT_ROUTE)),
    st.builds(lambda p: Action(consts.ACT_OUTPUT, arg=p), st.integers(0, R_PORTS)),
    st.builds(lambda t: Action(consts.ACT_PUSH_VLAN, arg=t), st.sampled_from([10, 0x2014])),
    st.just(Action(consts.ACT_POP_VLAN)),
    st.builds(lambda u: Action(consts.ACT_UPCALL, arg32=u), st.integers(0, 9))), min_size=1, max_size=5)
route_dp_actions = st.one_of(st.just([Action(consts.ACT_ROUTE)]),
                             st.sampled_from([[Action(consts.ACT_DECAP, arg=consts.DECAP_DELIVER),
                                               Action(consts.ACT_ROUTE)],
                                              [Action(consts.ACT_DECAP), Action(consts.ACT_ROUTE)]]),
                             _route_dp_action_lists.map(lambda acts: [Action(consts.ACT_ROUTE)] + acts[:3]),
                             _route_dp_action_lists)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(route_tables(), st.lists(st.tuples(st.integers(0, R_PORTS - 1), route_frames() | tunnel_frames() | any_frames,
                                          vnets()), max_size=30),
       route_dp_actions, st.lists(st.tuples(route_frames() | tunnel_frames(), route_dp_actions), max_size=3))
def test_routing_datapath_equal(tables, frames, actions, executes):
    routes, nexthops, neighs = tables
    dps = [fastpath.Datapath(max_flows=8, emc_entries=16, max_upcalls=64),
           refpath.Datapath(max_flows=8, emc_entries=16, max_upcalls=64)]
    try:
        for dp in dps:
            for p in range(R_PORTS):
                dp.add_port(p, "memory")
            for route in routes:
                dp.route_add(*route)
            for nh_id, kind, vlan, gateway, src_mac in nexthops:
                dp.nexthop_set(nh_id, kind, vlan, gateway, src_mac)
            for vlan, addr, mac, port, out_tci in neighs:
                dp.neigh_set(vlan, addr, mac, port, out_tci)
            dp.flow_put(bytes(64), bytes(64), 0, actions, now_ms=0)
        for dp in dps:
            for port, frame, vnet in frames:
                dp.inject(port, frame, vnet)
        assert dps[0].run(now_ms=5) == dps[1].run(now_ms=5)
        state_c, state_py = dp_state(dps[0]), dp_state(dps[1])
        assert state_c == state_py
        for frame, acts in executes:
            for dp in dps:
                dp.execute(0, frame, bytes(10), acts)
            assert dp_state(dps[0]) == dp_state(dps[1])
        for addr in R_ADDRS:
            a = bytes(map(int, addr.split(".")))
            assert dps[0].route_lookup(a) == dps[1].route_lookup(a)
    finally:
        for dp in dps:
            dp.close()


@SETTINGS
@given(any_frames | route_frames(), vnets(), st.integers(0, 63), route_dp_actions)
def test_actions_apply_with_route_equal(frame, vnet, in_port, actions):
    c = fastpath.actions_apply(frame, vnet, in_port, actions)
    py = refpath.actions_apply(frame, vnet, in_port, actions)
    assert [tuple(o) for o in c] == [tuple(o) for o in py]


# -- NAT rewrites ---------------------------------------------------------------------------------------------------

def nat_l4_offset(frame) -> int:
    """Where the NAT rewrites look for L4 (IPv4 header found as ROUTE does, plus IHL*4), whatever the parser says."""
    l3 = ipv4_offset(frame)
    return l3 + (frame[l3] & 0xF) * 4 if l3 else 0


@st.composite
def nat_ipv4_frames(draw):
    """IPv4 frames the rewrites have work in: mostly TCP and UDP, behind 0-2 tags, with options, fragments."""
    ip = IP(src=draw(ip4s), dst=draw(ip4s), id=draw(st.integers(0, 0xFFFF)),
            options=draw(st.sampled_from([b"", b"", b"\x94\x04\x00\x00", b"\x01" * 8])),
            frag=draw(st.sampled_from([0, 0, 0, 0, 1, 100])), flags=draw(st.sampled_from([0, 0, "MF", "DF"])))
    kind = draw(st.sampled_from(["tcp", "tcp", "udp", "udp", "udp0", "icmp", "raw"]))
    if kind == "tcp":
        l4 = TCP(sport=draw(ports16), dport=draw(ports16), flags=draw(st.integers(0, 0xFFF)))
    elif kind in ("udp", "udp0"):
        l4 = UDP(sport=draw(ports16), dport=draw(ports16), chksum=0 if kind == "udp0" else None)
    elif kind == "icmp":
        l4 = ICMP(type=draw(st.integers(0, 255)))
    else:
        l4 = Raw()
        ip.proto = draw(st.sampled_from([6, 17, 1, 47]))
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        pkt = pkt / Dot1Q(vlan=draw(st.integers(0, 4095)))
    frame = bytes(pkt / ip / l4 / draw(payloads))
    if draw(st.integers(0, 4)) == 0:
        frame = frame[:draw(st.integers(0, len(frame)))]
    return frame


@st.composite
def nat_frames_and_vnets(draw):
    """IPv4 frames (valid and truncated, checksums right and wrong) with vnet headers that often say "partial":
    NEEDS_CSUM with csum_start at the L4 offset, as a guest's offloaded or GSO frame has it, and just off it."""
    # Any frames at all meet the rewrites in test_actions_apply_equal and test_datapath_equal.
    frame = bytearray(draw(nat_ipv4_frames()))
    l4 = nat_l4_offset(frame)
    if l4 and draw(st.booleans()):
        # An arbitrary checksum field: partial frames hold a pseudo-header sum, corrupt ones anything.
        at = l4 + draw(st.sampled_from([6, 16]))
        if at + 2 <= len(frame):
            frame[at:at + 2] = draw(st.sampled_from([b"\x00\x00", b"\xff\xff"])
                                    | st.binary(min_size=2, max_size=2))
    start = draw(st.sampled_from([l4, l4, l4, l4, l4 + 2, max(l4 - 4, 0), 34, 0, None]))
    if start is None:
        start = draw(st.integers(0, 0xFFFF))
    vnet = struct.pack("<BBHHHH", draw(st.sampled_from([1, 1, 1, 3, 0, 2])),
                       draw(st.sampled_from([0, 0, 1, 3, 4, 5, 0x81])), draw(st.sampled_from([0, l4 + 20, 54])),
                       draw(st.sampled_from([0, 1448])), start, draw(st.sampled_from([6, 16, 0, 0xFFFF])))
    return bytes(frame), vnet


nat_action_lists = st.lists(nat_actions | valid_actions | nat_actions, min_size=1, max_size=16)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(nat_frames_and_vnets(), st.integers(0, 63), nat_action_lists)
def test_actions_apply_with_nat_equal(frame_vnet, in_port, actions):
    frame, vnet = frame_vnet
    c = fastpath.actions_apply(frame, vnet, in_port, actions)
    py = refpath.actions_apply(frame, vnet, in_port, actions)
    assert [tuple(o) for o in c] == [tuple(o) for o in py], f"frame={frame.hex()} vnet={vnet.hex()} {actions}"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, N_PORTS - 1), nat_frames_and_vnets()), max_size=20),
       st.lists(st.tuples(flow_masks, priorities, st.lists(
           nat_actions | st.builds(lambda p: Action(consts.ACT_OUTPUT, arg=p), st.integers(0, 5)) | valid_actions,
           max_size=8)), max_size=4),
       st.lists(st.tuples(nat_frames_and_vnets(), nat_action_lists), max_size=3))
def test_datapath_with_nat_equal(frames, flows, executes):
    """Whole datapaths: flows with rewrites between outputs (the copy-before-output logic), and execute()."""
    dps = [fastpath.Datapath(max_flows=8, emc_entries=16, max_upcalls=64),
           refpath.Datapath(max_flows=8, emc_entries=16, max_upcalls=64)]
    try:
        for dp in dps:
            for p in range(N_PORTS):
                dp.add_port(p, "memory")
            for i, (mask, prio, acts) in enumerate(flows):
                port, (frame, _vnet) = frames[i % len(frames)] if frames else (0, (b"", b""))
                key = refpath.parse(frame, port).key if frame else bytes(64)
                dp.flow_put(key, mask, prio, acts, now_ms=0)
            for port, (frame, vnet) in frames:
                dp.inject(port, frame, vnet)
        assert dps[0].run(now_ms=5) == dps[1].run(now_ms=5)
        assert dp_state(dps[0]) == dp_state(dps[1])
        for (frame, vnet), acts in executes:
            if not frame:
                continue
            for dp in dps:
                dp.execute(0, frame, vnet, acts)
            assert dp_state(dps[0]) == dp_state(dps[1])
    finally:
        for dp in dps:
            dp.close()
