"""The C datapath with memory ports (docs/DATAPATH.md "Datapath")."""
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from pyswitch import actions as A, consts
from pyswitch.datapath_types import FlowTableError, Upcall
from pyswitch.fastpath import Datapath, actions_apply, parse
from pyswitch.flowkey import FlowKey

MAC1 = "02:00:00:00:00:01"
MAC2 = "02:00:00:00:00:02"
ZERO_VNET = bytes(10)
M_PORT = FlowKey.mask_of("in_port")


def frame(src=MAC1, dst=MAC2, sport=1000, payload=32):
    return bytes(Ether(src=src, dst=dst) / IP(src="198.51.100.1", dst="198.51.100.2")
                 / UDP(sport=sport, dport=53) / Raw(b"p" * payload))


def vnet(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


@pytest.fixture
def dp():
    d = Datapath(max_flows=1024, emc_entries=256, max_upcalls=8)
    for p in range(4):
        d.add_port(p, "memory")
    yield d
    d.close()


def test_kind_and_ports(dp):
    assert dp.kind == "c"
    with pytest.raises(OSError) as exc:
        dp.add_port(1, "memory")
    assert "port 1" in str(exc.value)
    with pytest.raises(OSError):
        dp.add_port(64, "memory")
    with pytest.raises(OSError):
        dp.add_port(9, "bogus")
    dp.del_port(3)
    with pytest.raises(OSError):
        dp.del_port(3)
    with pytest.raises(OSError):
        dp.port_stats(3)


def test_upcall_on_miss_then_hit_after_flow_put(dp):
    f = frame()
    dp.inject(0, f)
    assert dp.run(now_ms=0) == 1
    (up,) = dp.upcalls()
    assert isinstance(up, Upcall)
    assert (up.in_port, up.reason, up.userdata, up.data, up.vnet) == (0, consts.UPCALL_MISS, 0, f, ZERO_VNET)
    assert up.key == parse(f, in_port=0).key
    assert dp.flow_put(up.key, M_PORT, 1, [A.output(2)], now_ms=0) == 0
    dp.inject(0, f)
    dp.run(now_ms=1)
    assert dp.upcalls() == []                               # the previous run's upcalls are gone
    assert dp.take(2) == [(f, ZERO_VNET)]
    assert dp.take(1) == []
    info = dp.flow_lookup(up.key, 0, now_ms=2)
    assert info.packets == 2 and info.bytes == len(f)       # the run's hit, then this lookup (size 0)


def test_flood(dp):
    dp.flow_put(FlowKey(in_port=1).pack(), M_PORT, 1, [A.flood(range(4))], now_ms=0)
    f = frame()
    dp.inject(1, f, vnet(flags=1, csum_start=34, csum_offset=6))
    dp.run(now_ms=0)
    for p in (0, 2, 3):
        assert dp.take(p) == [(f, vnet(flags=1, csum_start=34, csum_offset=6))]
    assert dp.take(1) == []
    s = dp.stats()
    assert (s["rx_packets"], s["tx_packets"], s["bad_port"]) == (1, 3, 0)
    assert dp.port_stats(1)["rx_packets"] == 1 and dp.port_stats(1)["rx_bytes"] == len(f)
    assert dp.port_stats(3)["tx_packets"] == 1 and dp.port_stats(3)["tx_bytes"] == len(f)


def test_output_to_missing_port_counts_bad_port(dp):
    dp.del_port(3)
    dp.flow_put(FlowKey(in_port=0).pack(), M_PORT, 1, [A.output(3), A.flood([1, 3])], now_ms=0)
    dp.inject(0, frame())
    dp.run(now_ms=0)
    assert dp.stats()["bad_port"] == 2
    assert len(dp.take(1)) == 1


def test_vlan_push_pop_and_copy_before_rewrite(dp):
    f = frame()
    gso = vnet(flags=1, gso_type=1, hdr_len=42, gso_size=1448, csum_start=34, csum_offset=16)
    dp.flow_put(FlowKey(in_port=0).pack(), M_PORT, 1,
                [A.output(1), A.push_vlan(100, pcp=3), A.output(2), A.set_eth_dst(bytes.fromhex("020000000009")),
                 A.pop_vlan(), A.output(3)], now_ms=0)
    dp.inject(0, f, gso)
    dp.run(now_ms=0)
    assert dp.take(1) == [(f, gso)]
    ((tagged, tagged_vnet),) = dp.take(2)
    pkt = Ether(tagged)
    assert pkt[Dot1Q].vlan == 100 and pkt[Dot1Q].prio == 3 and bytes(pkt[IP]) == bytes(Ether(f)[IP])
    assert tagged_vnet == vnet(flags=1, gso_type=1, hdr_len=46, gso_size=1448, csum_start=38, csum_offset=16)
    ((last, last_vnet),) = dp.take(3)
    assert last == bytes.fromhex("020000000009") + f[6:] and last_vnet == gso


def test_pop_on_tagged_input(dp):
    tagged = bytes(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=5) / IP(src="198.51.100.1", dst="198.51.100.2") / TCP())
    dp.flow_put(FlowKey(in_port=0).pack(), M_PORT, 1, [A.pop_vlan(), A.output(1)], now_ms=0)
    dp.inject(0, tagged, vnet(flags=1, csum_start=38, csum_offset=16))
    dp.run(now_ms=0)
    ((out, out_vnet),) = dp.take(1)
    assert out == tagged[:12] + tagged[16:] and out_vnet == vnet(flags=1, csum_start=34, csum_offset=16)


def test_parse_errors_counted_and_good_traffic_still_forwarded(dp):
    dp.flow_put(bytes(64), FlowKey.mask_of(), 0, [A.output(1)], now_ms=0)
    good = frame()
    bad_ip_len = bytearray(good)
    struct.pack_into("!H", bad_ip_len, 16, 9999)
    for f in (b"\x00" * 10, good, bytes(bad_ip_len), good):
        dp.inject(0, f)
    assert dp.run(now_ms=0) == 4
    assert dp.take(1) == [(good, ZERO_VNET), (good, ZERO_VNET)]
    s = dp.stats()
    assert s["parse_errors"]["runt"] == 1 and s["parse_errors"]["ip_len"] == 1
    assert sum(s["parse_errors"].values()) == 2
    assert list(s["parse_errors"]) == list(consts.PARSE_ERROR_NAMES[1:])
    assert dp.port_stats(0)["rx_errors"] == 2 and dp.port_stats(0)["rx_packets"] == 4


def test_max_frame_and_gso(dp):
    dp.del_port(0)
    dp.add_port(0, "memory", max_frame=100)
    dp.flow_put(bytes(64), FlowKey.mask_of(), 0, [A.output(1)], now_ms=0)
    big = frame(payload=200)
    dp.inject(0, big)
    dp.inject(0, big, vnet(gso_type=3))
    dp.run(now_ms=0)
    assert dp.stats()["parse_errors"]["oversize"] == 1
    assert len(dp.take(1)) == 1


def test_upcall_action_and_queue_limit(dp):
    f = frame()
    dp.flow_put(FlowKey(in_port=0).pack(), M_PORT, 1, [A.push_vlan(7), A.upcall(1234), A.output(1)], now_ms=0)
    for _ in range(10):
        dp.inject(0, f)
    dp.run(now_ms=0)
    ups = dp.upcalls()
    assert len(ups) == 8                                    # max_upcalls
    assert all(u.reason == consts.UPCALL_ACTION and u.userdata == 1234 and u.in_port == 0 for u in ups)
    assert ups[0].data == f[:12] + b"\x81\x00\x00\x07" + f[12:]
    assert ups[0].key == parse(f, in_port=0).key
    s = dp.stats()
    assert (s["upcalls"], s["upcall_dropped"]) == (8, 2)
    assert len(dp.take(1)) == 10


def test_batch_limit_per_run(dp):
    dp.flow_put(bytes(64), FlowKey.mask_of(), 0, [A.output(1)], now_ms=0)
    for i in range(consts.BATCH + 5):
        dp.inject(0, frame(sport=i))
    assert dp.run(now_ms=0) == consts.BATCH
    assert dp.run(now_ms=0) == 5
    outs = dp.take(1)
    assert [UDP in Ether(o) and Ether(o)[UDP].sport for o, _ in outs] == list(range(consts.BATCH + 5))


def test_ports_in_number_order(dp):
    dp.flow_put(bytes(64), FlowKey.mask_of(), 0, [A.output(3)], now_ms=0)
    dp.inject(2, frame(sport=2))
    dp.inject(0, frame(sport=0))
    dp.inject(1, frame(sport=1))
    dp.run(now_ms=0)
    assert [Ether(o)[UDP].sport for o, _ in dp.take(3)] == [0, 1, 2]


def test_execute(dp):
    f = frame()
    dp.execute(0, f, ZERO_VNET, [A.output(1), A.set_eth_src(bytes.fromhex("0200000000ff")), A.output(2),
                                 A.upcall(5)])
    assert dp.take(1) == [(f, ZERO_VNET)]
    assert dp.take(2) == [(f[:6] + bytes.fromhex("0200000000ff") + f[12:], ZERO_VNET)]
    (up,) = dp.upcalls()
    assert up.reason == consts.UPCALL_ACTION and up.userdata == 5 and up.key == parse(f, in_port=0).key
    dp.execute(0, f, ZERO_VNET, [A.output(64), A.Action(42), A.output(1)])   # like the twin: no refusal
    assert dp.stats()["bad_port"] == 1 and len(dp.take(1)) == 1
    with pytest.raises(OSError):
        dp.execute(0, f, ZERO_VNET, [A.output(1)] * 17)


def test_poll_with_wake_fd(dp):
    import os
    r, w = os.pipe()
    try:
        dp.add_wake_fd(r)
        with pytest.raises(OSError):
            dp.add_wake_fd(r)
        assert dp.poll(0) == 0
        os.write(w, b"x")
        assert dp.poll(1000) == 0                           # woken, nothing to do
        dp.inject(0, frame())
        assert dp.poll(-1) == 1                             # frames waiting: no sleep
        dp.del_wake_fd(r)
        with pytest.raises(OSError):
            dp.del_wake_fd(r)
    finally:
        os.close(r)
        os.close(w)


def test_flow_methods_on_datapath_table(dp):
    k = FlowKey(in_port=1).pack()
    assert dp.flow_put(k, M_PORT, 1, [A.output(2)], idle_timeout_ms=10, cookie=77, now_ms=0) == 0
    assert dp.flow_put(k, M_PORT, 1, [A.output(3)], idle_timeout_ms=10, cookie=77, now_ms=0) == 1
    assert [f.cookie for f in dp.flows()] == [77]
    assert dp.expire(now_ms=10) == [77]
    dp.flow_put(k, M_PORT, 1, [], now_ms=0)
    assert dp.flow_del(k, M_PORT, 1) is True
    dp.flow_put(k, M_PORT, 1, [], now_ms=0)
    assert dp.flow_del_loose(k, M_PORT) == 1
    dp.flow_put(k, M_PORT, 1, [], now_ms=0)
    dp.flow_flush()
    s = dp.stats()
    assert s["flows"] == 0 and s["deletes"] == 3 and s["expired"] == 1


def test_memory_queue_bound(dp):
    f = frame()
    for _ in range(4096):
        dp.inject(0, f)
    with pytest.raises(OSError):
        dp.inject(0, f)
    assert dp.port_stats(0)["rx_dropped"] == 1


def test_actions_apply():
    f = frame()
    outs = actions_apply(f, ZERO_VNET, 1, [A.flood([0, 1, 2]), A.push_vlan(9), A.upcall(3), A.pop_vlan(),
                                          A.pop_vlan(), A.output(1)])
    assert [(o.port, o.userdata) for o in outs] == [(0, 0), (2, 0), (consts.UPCALL_PORT, 3), (1, 0)]
    assert outs[0].frame == f and outs[2].frame == f[:12] + b"\x81\x00\x00\x09" + f[12:] and outs[3].frame == f
    assert actions_apply(f, ZERO_VNET, 0, []) == []
    with pytest.raises(FlowTableError):
        actions_apply(f, ZERO_VNET, 0, [A.Action(42)])
    # Frames without a whole Ethernet header are not rewritten.
    assert actions_apply(b"abc", ZERO_VNET, 0, [A.push_vlan(1), A.set_eth_dst(b"\x01" * 6), A.output(1)])[0].frame == b"abc"


def test_first_upcall_of_an_empty_frame():
    """An empty frame may be a datapath's first upcall: the upcall arena must exist for it (under UBSan, arena
    arithmetic on NULL halted: tests/fuzz/crashes/fuzz_datapath/empty-first-upcall-null-arena.bin)."""
    d = Datapath(max_flows=16, emc_entries=16, max_upcalls=4)
    try:
        d.add_port(0, "memory")
        d.execute(0, b"", ZERO_VNET, [A.upcall(5), A.upcall(6)])
        ups = d.upcalls()
        assert [(u.reason, u.userdata, u.data) for u in ups] == [(consts.UPCALL_ACTION, 5, b""),
                                                               (consts.UPCALL_ACTION, 6, b"")]
    finally:
        d.close()
