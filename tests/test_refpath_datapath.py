"""The twin's datapath with memory ports (docs/DATAPATH.md "Datapath")."""
import os
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from pyswitch import actions as A, consts
from pyswitch.flowkey import FlowKey
from pyswitch.refpath import Datapath, parse

MAC1 = "02:00:00:00:00:01"
MAC2 = "02:00:00:00:00:02"
FRAME = bytes(Ether(src=MAC1, dst=MAC2) / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1, dport=2))
PORT_MASK = FlowKey.mask_of("in_port")


def vnet(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


@pytest.fixture
def dp():
    d = Datapath(max_upcalls=4)
    for p in range(4):
        d.add_port(p, "memory")
    yield d
    d.close()


def test_miss_upcall_then_fast_path(dp):
    dp.inject(1, FRAME)
    assert dp.run(now_ms=0) == 1
    (up,) = dp.upcalls()
    assert (up.in_port, up.reason, up.userdata, up.data) == (1, consts.UPCALL_MISS, 0, FRAME)
    assert up.key == parse(FRAME, 1).key
    dp.flow_put(up.key, PORT_MASK, 0, [A.output(2)], now_ms=0)
    dp.inject(1, FRAME)
    dp.run(now_ms=1)
    assert dp.upcalls() == []
    assert dp.take(2) == [(FRAME, bytes(10))]
    s = dp.stats()
    assert (s["rx_packets"], s["tx_packets"], s["upcalls"], s["misses"], s["emc_hits"] + s["masked_hits"]) == \
        (2, 1, 1, 1, 1)
    assert dp.port_stats(1)["rx_bytes"] == 2 * len(FRAME)
    assert dp.port_stats(2) == {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 1, "tx_bytes": len(FRAME),
                                "rx_dropped": 0, "rx_errors": 0, "tx_dropped": 0}


def test_flood_skips_input_port_and_bad_port_counts(dp):
    dp.flow_put(parse(FRAME, 0).key, PORT_MASK, 0, [A.flood(range(4)), A.output(9)], now_ms=0)
    dp.inject(0, FRAME)
    dp.run(now_ms=0)
    assert [len(dp.take(p)) for p in range(4)] == [0, 1, 1, 1]
    assert dp.stats()["bad_port"] == 1


def test_hairpin_output_to_input_port(dp):
    dp.flow_put(parse(FRAME, 3).key, PORT_MASK, 0, [A.set_eth_dst(bytes(6)), A.output(3)], now_ms=0)
    dp.inject(3, FRAME)
    dp.run(now_ms=0)
    (out, _), = dp.take(3)
    assert out[:6] == bytes(6) and out[6:] == FRAME[6:]


def test_push_pop_vlan_adjusts_vnet(dp):
    tso = vnet(flags=consts.VNET_F_NEEDS_CSUM, gso_type=1, hdr_len=54, gso_size=1448, csum_start=34, csum_offset=16)
    dp.flow_put(parse(FRAME, 0).key, PORT_MASK, 0, [A.push_vlan(10, pcp=3), A.output(1), A.pop_vlan(), A.pop_vlan(),
                                                    A.output(2)], now_ms=0)
    dp.inject(0, FRAME, tso)
    dp.run(now_ms=0)
    (tagged, tagged_vnet), = dp.take(1)
    assert tagged == FRAME[:12] + b"\x81\x00" + struct.pack("!H", 3 << 13 | 10) + FRAME[12:]
    assert tagged_vnet == vnet(1, 1, 58, 1448, 38, 16)
    (plain, plain_vnet), = dp.take(2)
    assert (plain, plain_vnet) == (FRAME, tso)


def test_vnet_left_alone_without_csum_or_gso(dp):
    raw = vnet(flags=consts.VNET_F_DATA_VALID, gso_type=consts.VNET_GSO_ECN, hdr_len=54, csum_start=34)
    dp.flow_put(parse(FRAME, 0).key, PORT_MASK, 0, [A.push_vlan(10), A.output(1)], now_ms=0)
    dp.inject(0, FRAME, raw)
    dp.run(now_ms=0)
    assert dp.take(1)[0][1] == raw


def test_pop_vlan_never_below_zero(dp):
    tagged = bytes(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=5) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP())
    dp.flow_put(parse(tagged, 0).key, PORT_MASK, 0, [A.pop_vlan(), A.output(1)], now_ms=0)
    dp.inject(0, tagged, vnet(flags=1, gso_type=3, hdr_len=2, csum_start=1))
    dp.run(now_ms=0)
    (frame, v), = dp.take(1)
    assert frame == tagged[:12] + tagged[16:] and v == vnet(1, 3, 0, 0, 0, 0)


def test_bad_frames_counted_while_good_ones_flow(dp):
    dp.flow_put(parse(FRAME, 0).key, PORT_MASK, 0, [A.output(1)], now_ms=0)
    bad_ihl = bytearray(FRAME)
    bad_ihl[14] = 0x44
    for frame in (FRAME, bytes(10), bytes(bad_ihl), FRAME):
        dp.inject(0, frame)
    assert dp.run(now_ms=0) == 4
    assert len(dp.take(1)) == 2
    s = dp.stats()
    assert s["parse_errors"]["runt"] == 1 and s["parse_errors"]["ip_ihl"] == 1
    assert list(s["parse_errors"]) == list(consts.PARSE_ERROR_NAMES[1:])
    assert dp.port_stats(0)["rx_errors"] == 2 and dp.port_stats(0)["rx_packets"] == 4


def test_max_frame_and_gso(dp):
    dp.del_port(0)
    dp.add_port(0, "memory", max_frame=len(FRAME) - 1)
    dp.inject(0, FRAME)
    dp.inject(0, FRAME, vnet(gso_type=1))
    dp.run(now_ms=0)
    assert dp.stats()["parse_errors"]["oversize"] == 1 and len(dp.upcalls()) == 1


def test_upcall_bound_and_action_upcall(dp):
    dp.flow_put(parse(FRAME, 0).key, PORT_MASK, 0, [A.set_eth_src(bytes(6)), A.upcall(77)], now_ms=0)
    for _ in range(6):
        dp.inject(0, FRAME)
    dp.run(now_ms=0)
    ups = dp.upcalls()
    assert len(ups) == 4 and dp.stats()["upcall_dropped"] == 2
    assert (ups[0].reason, ups[0].userdata, ups[0].data[6:12], ups[0].key) == \
        (consts.UPCALL_ACTION, 77, bytes(6), parse(FRAME, 0).key)
    dp.run(now_ms=0)
    assert dp.upcalls() == []


def test_batch_per_port_per_run(dp):
    for _ in range(consts.BATCH + 1):
        dp.inject(2, FRAME)
    assert dp.run(now_ms=0) == consts.BATCH
    assert dp.run(now_ms=0) == 1


def test_execute_transmits_at_once(dp):
    dp.execute(0, FRAME, bytes(10), [A.output(1), A.flood([0, 2]), A.upcall(5)])
    assert dp.take(1) == [(FRAME, bytes(10))] and len(dp.take(2)) == 1 and dp.take(0) == []
    assert dp.stats()["tx_packets"] == 2 and dp.upcalls()[0].userdata == 5


def test_ports_and_poll(dp):
    with pytest.raises(OSError):
        dp.add_port(1, "memory")
    with pytest.raises(OSError):
        dp.add_port(64, "memory")
    with pytest.raises(OSError):
        dp.port_stats(10)
    dp.inject(3, FRAME)
    assert dp.poll(1000, now_ms=0) == 1
    r, w = os.pipe()
    try:
        dp.add_wake_fd(r)
        os.write(w, b"x")
        assert dp.poll(10000, now_ms=0) == 0      # returns at once: the wake fd is readable
        dp.del_wake_fd(r)
    finally:
        os.close(r)
        os.close(w)


def test_memory_queue_bound(dp):
    for _ in range(4096):
        dp.inject(0, FRAME)
    with pytest.raises(OSError):
        dp.inject(0, FRAME)
    assert dp.port_stats(0)["rx_dropped"] == 1
    with pytest.raises(OSError):
        dp.inject(0, bytes(consts.FRAME_MAX + 1))
