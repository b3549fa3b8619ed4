"""The twin's flow table (docs/DATAPATH.md "Flow table")."""
import errno

import pytest

from pyswitch import actions as A, consts
from pyswitch.datapath_types import FlowTableError
from pyswitch.flowkey import FlowKey
from pyswitch.refpath import FlowTable

MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
DST_MASK = FlowKey.mask_of("eth_dst")
PORT_MASK = FlowKey.mask_of("in_port")
ALL = b"\xff" * 64


def key(**fields):
    return FlowKey(**fields).pack()


def test_put_lookup_modify_counters():
    ft = FlowTable()
    k = key(in_port=1, eth_dst=MAC1, eth_type=0x0800)
    assert ft.put(k, DST_MASK, 10, [A.output(2)], cookie=7, now_ms=1000) == 0
    info = ft.lookup(k, 100, now_ms=1050)
    assert info.key == key(eth_dst=MAC1) and info.mask == DST_MASK
    assert (info.packets, info.bytes, info.used_ms, info.cookie) == (1, 100, 1050, 7)
    assert ft.put(k, DST_MASK, 10, [A.output(3)], cookie=8, now_ms=2000) == 1
    info = ft.lookup(k, 50, now_ms=2001)
    assert (info.packets, info.bytes, info.cookie, info.actions) == (2, 150, 8, (A.output(3),))
    assert ft.lookup(key(eth_dst=MAC2), 1, now_ms=0) is None
    s = ft.stats()
    assert (s["flows"], s["inserts"], s["modifies"], s["misses"], s["emc_hits"] + s["masked_hits"]) == (1, 1, 1, 1, 2)
    assert set(s) == {"flows", "max_flows", "subtables", "inserts", "modifies", "deletes", "expired", "evictions",
                      "refused", "emc_hits", "masked_hits", "misses"}


def test_priority_then_creation_order():
    ft = FlowTable()
    k = key(in_port=1, eth_dst=MAC1)
    ft.put(k, PORT_MASK, 5, [A.output(1)], now_ms=0)
    ft.put(k, DST_MASK, 5, [A.output(2)], now_ms=0)       # same priority, created later: loses
    assert ft.lookup(k, 1, 0).actions == (A.output(1),)
    ft.put(k, ALL, 6, [A.output(3)], now_ms=0)
    assert ft.lookup(k, 1, 0).actions == (A.output(3),)
    assert ft.delete(k, ALL, 6)
    ft.delete(k, PORT_MASK, 5)                             # the port subtable is destroyed...
    ft.put(k, PORT_MASK, 5, [A.output(1)], now_ms=0)       # ...and re-created after the dst one
    assert ft.lookup(k, 1, 0).actions == (A.output(2),)
    assert ft.stats()["subtables"] == 2


def test_refusals():
    ft = FlowTable()
    for bad in ([A.Action(99)], [A.output(64)], [A.output(1)] * 17):
        with pytest.raises(FlowTableError) as e:
            ft.put(key(), ALL, 0, bad, now_ms=0)
        assert e.value.errno == errno.EINVAL
    ft.put(key(), ALL, 0, [A.output(1)] * 16, now_ms=0)
    for prio in range(1, consts.MAX_SUBTABLES):
        ft.put(key(), ALL, prio, [], now_ms=0)
    with pytest.raises(FlowTableError) as e:
        ft.put(key(), ALL, 1000, [], now_ms=0)
    assert e.value.errno == errno.ENOSPC
    s = ft.stats()
    assert (s["refused"], s["subtables"], s["flows"]) == (4, 256, 256)


def test_eviction_is_lru_with_granule():
    ft = FlowTable(max_flows=3)
    keys = [key(in_port=i) for i in range(4)]
    for i in range(3):
        ft.put(keys[i], ALL, 0, [], idle_timeout_ms=10_000, now_ms=0)
    ft.lookup(keys[0], 1, now_ms=50)        # same granule as its insert: no reorder
    ft.put(keys[3], ALL, 0, [], idle_timeout_ms=10_000, now_ms=60)
    assert ft.lookup(keys[0], 1, now_ms=60) is None
    ft.lookup(keys[1], 1, now_ms=100)       # new granule: most recent now
    ft.put(keys[0], ALL, 0, [], idle_timeout_ms=10_000, now_ms=100)
    assert ft.lookup(keys[2], 1, now_ms=100) is None
    assert ft.lookup(keys[1], 1, now_ms=100) is not None
    assert ft.stats()["evictions"] == 2 and len(ft) == 3


def test_eviction_spares_permanent_flows():
    ft = FlowTable(max_flows=2)
    keys = [key(in_port=i) for i in range(5)]
    ft.put(keys[0], ALL, 0, [], now_ms=0)                               # permanent
    for i in range(1, 5):
        ft.put(keys[i], ALL, 0, [], idle_timeout_ms=10_000, now_ms=i)
    assert ft.lookup(keys[0], 1, now_ms=5) is not None and ft.lookup(keys[4], 1, now_ms=5) is not None
    assert ft.stats()["evictions"] == 3
    ft.put(keys[1], ALL, 0, [], now_ms=6)                                # two permanent flows: full
    with pytest.raises(FlowTableError):
        ft.put(keys[2], ALL, 0, [], idle_timeout_ms=10_000, now_ms=7)
    assert ft.stats()["refused"] == 1 and len(ft) == 2


def test_expire_least_recent_first_and_bounded():
    ft = FlowTable()
    for i in range(5):
        ft.put(key(in_port=i), ALL, 0, [], idle_timeout_ms=100 if i else 0, cookie=i, now_ms=i * 10)
    ft.lookup(key(in_port=1), 1, now_ms=200)  # used again, and most recent
    assert ft.expire(now_ms=140, max_flows=2) == [2, 3]
    assert ft.expire(now_ms=140) == [4]
    assert ft.expire(now_ms=299) == []
    assert ft.expire(now_ms=300) == [1]
    assert len(ft) == 1 and ft.stats()["expired"] == 4


def test_delete_loose_and_flush():
    ft = FlowTable()
    ft.put(key(in_port=1, eth_dst=MAC1), FlowKey.mask_of("in_port", "eth_dst"), 0, [], now_ms=0)
    ft.put(key(in_port=1, eth_dst=MAC2), FlowKey.mask_of("in_port", "eth_dst"), 0, [], now_ms=0)
    ft.put(key(in_port=2, eth_dst=MAC1), FlowKey.mask_of("in_port", "eth_dst"), 0, [], now_ms=0)
    ft.put(key(eth_dst=MAC1), DST_MASK, 0, [], now_ms=0)
    assert ft.delete_loose(key(in_port=1), PORT_MASK) == 2          # the dst-only flow does not cover in_port
    assert ft.delete_loose(key(eth_dst=MAC1), DST_MASK) == 2
    assert not ft.delete(key(eth_dst=MAC1), DST_MASK, 0)
    ft.put(key(), ALL, 0, [], now_ms=0)
    ft.flush()
    s = ft.stats()
    assert (s["flows"], s["subtables"], s["deletes"]) == (0, 0, 5)
    assert ft.dump() == []


def test_dump():
    ft = FlowTable()
    ft.put(key(in_port=3), PORT_MASK, 1, [A.flood([1, 2])], idle_timeout_ms=5, cookie=9, now_ms=42)
    (info,) = ft.dump()
    assert info == (key(in_port=3), PORT_MASK, 1, 5, 9, 0, 0, 42, (A.flood([1, 2]),))
