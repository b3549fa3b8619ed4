"""The C flow table through pyswitch.fastpath.FlowTable (docs/DATAPATH.md "Flow table"), with a fake clock."""
import errno

import pytest

from pyswitch import actions as A, consts
from pyswitch.datapath_types import FlowTableError
from pyswitch.fastpath import FlowTable
from pyswitch.flowkey import FlowKey, apply_mask

MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")


def key(in_port=1, eth_dst=MAC1, tp_dst=80, **kw):
    return FlowKey(in_port=in_port, eth_dst=eth_dst, eth_type=0x0800, nw_proto=6, tp_dst=tp_dst, **kw).pack()


M_PORT = FlowKey.mask_of("in_port")
M_DST = FlowKey.mask_of("eth_dst")
M_PORT_DST = FlowKey.mask_of("in_port", "eth_dst")
M_ALL = b"\xff" * consts.KEY_SIZE
M_NONE = bytes(consts.KEY_SIZE)
IDLE = 10_000               # an idle timeout: only such flows may be evicted


def test_insert_lookup_counters():
    ft = FlowTable(max_flows=16)
    assert ft.put(key(), M_DST, 10, [A.output(2)], cookie=7, now_ms=1000) == 0
    assert len(ft) == 1
    info = ft.lookup(key(in_port=9), 100, now_ms=1005)
    assert info.key == apply_mask(key(), M_DST) and info.mask == M_DST
    assert (info.priority, info.cookie, info.packets, info.bytes, info.used_ms) == (10, 7, 1, 100, 1005)
    assert info.actions == (A.output(2),)
    assert ft.lookup(key(eth_dst=MAC2), 100, now_ms=1006) is None
    s = ft.stats()
    assert (s["flows"], s["inserts"], s["misses"], s["emc_hits"] + s["masked_hits"]) == (1, 1, 1, 1)
    assert ft.dump()[0].used_ms == 1005


def test_used_is_insertion_time_until_first_hit():
    ft = FlowTable()
    ft.put(key(), M_ALL, 1, [], now_ms=42)
    assert ft.dump()[0].used_ms == 42


def test_priority_and_creation_order():
    ft = FlowTable()
    ft.put(key(), M_DST, 5, [A.output(1)], now_ms=0)
    ft.put(key(), M_PORT, 5, [A.output(2)], now_ms=0)       # same priority, created later
    assert ft.lookup(key(), 1, now_ms=1).actions == (A.output(1),)
    ft.put(key(), M_PORT_DST, 6, [A.output(3)], now_ms=2)   # higher priority wins
    assert ft.lookup(key(), 1, now_ms=3).actions == (A.output(3),)
    assert ft.delete(key(), M_PORT_DST, 6)
    ft.delete(key(), M_DST, 5)                              # the older subtable goes away
    ft.put(key(), M_DST, 5, [A.output(4)], now_ms=4)        # ...and comes back younger
    assert ft.lookup(key(), 1, now_ms=5).actions == (A.output(2),)
    assert ft.stats()["subtables"] == 2


def test_emc_does_not_hide_a_new_better_flow():
    ft = FlowTable(emc_entries=64)
    ft.put(key(), M_DST, 1, [A.output(1)], now_ms=0)
    for t in range(3):
        assert ft.lookup(key(), 1, now_ms=t).actions == (A.output(1),)
    assert ft.stats()["emc_hits"] >= 1
    ft.put(key(), M_PORT, 2, [A.output(2)], now_ms=5)
    assert ft.lookup(key(), 1, now_ms=6).actions == (A.output(2),)


def test_modify_keeps_counters():
    ft = FlowTable()
    ft.put(key(), M_DST, 1, [A.output(1)], idle_timeout_ms=100, cookie=1, now_ms=0)
    ft.lookup(key(), 60, now_ms=10)
    assert ft.put(key(in_port=5), M_DST, 1, [A.output(2), A.upcall(9)], idle_timeout_ms=0, cookie=2, now_ms=20) == 1
    (info,) = ft.dump()
    assert (info.packets, info.bytes, info.used_ms, info.cookie, info.idle_timeout_ms) == (1, 60, 10, 2, 0)
    assert info.actions == (A.output(2), A.upcall(9))
    assert ft.stats()["modifies"] == 1 and ft.stats()["inserts"] == 1


def test_delete_exact():
    ft = FlowTable()
    ft.put(key(), M_DST, 1, [], now_ms=0)
    assert not ft.delete(key(), M_DST, 2)
    assert not ft.delete(key(), M_PORT, 1)
    assert ft.delete(key(in_port=99), M_DST, 1)              # the key is masked first
    assert not ft.delete(key(), M_DST, 1)
    assert len(ft) == 0 and ft.stats()["deletes"] == 1 and ft.stats()["subtables"] == 0


def test_emc_stale_after_delete():
    ft = FlowTable(emc_entries=16)
    ft.put(key(), M_DST, 1, [A.output(1)], now_ms=0)
    ft.lookup(key(), 1, now_ms=1)
    ft.lookup(key(), 1, now_ms=2)
    assert ft.stats()["emc_hits"] == 1
    ft.delete(key(), M_DST, 1)
    assert ft.lookup(key(), 1, now_ms=3) is None
    # The slot is reused by another flow: the stale EMC entry must not point to it.
    ft.put(key(eth_dst=MAC2), M_DST, 1, [A.output(2)], now_ms=4)
    assert ft.lookup(key(), 1, now_ms=5) is None
    assert ft.stats()["misses"] == 2


def test_delete_loose():
    ft = FlowTable()
    ft.put(key(in_port=1), M_PORT, 1, [], now_ms=0)
    ft.put(key(in_port=1), M_PORT_DST, 1, [], now_ms=0)
    ft.put(key(in_port=2), M_PORT_DST, 1, [], now_ms=0)
    ft.put(key(in_port=1), M_DST, 1, [], now_ms=0)          # mask does not cover in_port
    assert ft.delete_loose(key(in_port=1, eth_dst=MAC2), M_PORT) == 2
    assert len(ft) == 2
    assert ft.delete_loose(key(), M_NONE) == 2
    assert ft.stats()["deletes"] == 4


def test_flush():
    ft = FlowTable()
    for p in range(5):
        ft.put(key(in_port=p), M_PORT, p % 2, [], now_ms=0)
    ft.flush()
    assert len(ft) == 0 and ft.dump() == [] and ft.stats()["deletes"] == 5 and ft.stats()["subtables"] == 0


def test_expiry_least_recent_first_with_fake_clock():
    ft = FlowTable()
    ft.put(key(in_port=1), M_PORT, 1, [], idle_timeout_ms=100, cookie=1, now_ms=0)
    ft.put(key(in_port=2), M_PORT, 1, [], idle_timeout_ms=100, cookie=2, now_ms=0)
    ft.put(key(in_port=3), M_PORT, 1, [], idle_timeout_ms=0, cookie=3, now_ms=0)
    ft.put(key(in_port=4), M_PORT, 1, [], idle_timeout_ms=50, cookie=4, now_ms=0)
    ft.lookup(key(in_port=1), 1, now_ms=150)                 # flow 1 used at 150, now most recent
    assert ft.expire(now_ms=99) == [4]
    assert ft.expire(now_ms=249) == [2]
    assert ft.expire(now_ms=250, max_flows=5) == [1]
    assert ft.expire(now_ms=10 ** 9) == []
    assert len(ft) == 1 and ft.stats()["expired"] == 3


def test_expire_max():
    ft = FlowTable()
    for p in range(10):
        ft.put(key(in_port=p), M_PORT, 1, [], idle_timeout_ms=1, cookie=p, now_ms=p)
    assert ft.expire(now_ms=100, max_flows=3) == [0, 1, 2]
    assert ft.expire(now_ms=100, max_flows=100) == list(range(3, 10))


def test_eviction_lru_with_granule():
    ft = FlowTable(max_flows=3)
    for p in (1, 2, 3):
        ft.put(key(in_port=p), M_PORT, 1, [], idle_timeout_ms=IDLE, cookie=p, now_ms=0)
    # A hit within the same 100 ms granule as the insert does not reorder: flow 1 stays least recent.
    ft.lookup(key(in_port=1), 1, now_ms=50)
    ft.put(key(in_port=4), M_PORT, 1, [], idle_timeout_ms=IDLE, cookie=4, now_ms=60)
    assert sorted(f.cookie for f in ft.dump()) == [2, 3, 4]
    # A hit in a later granule does: flow 2 becomes most recent, 3 is evicted next.
    ft.lookup(key(in_port=2), 1, now_ms=100)
    ft.put(key(in_port=5), M_PORT, 1, [], idle_timeout_ms=IDLE, cookie=5, now_ms=110)
    assert sorted(f.cookie for f in ft.dump()) == [2, 4, 5]
    # A modify makes a flow most recent.
    ft.put(key(in_port=4), M_PORT, 1, [A.output(1)], idle_timeout_ms=IDLE, cookie=4, now_ms=120)
    ft.put(key(in_port=6), M_PORT, 1, [], idle_timeout_ms=IDLE, cookie=6, now_ms=130)
    assert sorted(f.cookie for f in ft.dump()) == [4, 5, 6]
    s = ft.stats()
    assert (s["evictions"], s["flows"], s["max_flows"]) == (3, 3, 3)


def test_eviction_of_last_flow_in_own_subtable():
    ft = FlowTable(max_flows=1)
    ft.put(key(in_port=1), M_PORT, 1, [], idle_timeout_ms=IDLE, now_ms=0)
    ft.put(key(in_port=2), M_PORT, 1, [], idle_timeout_ms=IDLE, now_ms=1)
    assert [FlowKey.unpack(f.key).in_port for f in ft.dump()] == [2]
    assert ft.stats()["subtables"] == 1


def test_eviction_spares_permanent_flows():
    """A flood of new flows must not evict the slow path's permanent ones (routing, ARP, VIPs)."""
    ft = FlowTable(max_flows=3)
    ft.put(key(in_port=1), M_PORT, 1, [], cookie=1, now_ms=0)                  # permanent, least recent
    ft.put(key(in_port=2), M_PORT, 1, [], idle_timeout_ms=IDLE, cookie=2, now_ms=100)
    ft.put(key(in_port=3), M_PORT, 1, [], cookie=3, now_ms=200)                # permanent
    for p in range(4, 20):
        ft.put(key(in_port=p), M_PORT, 1, [], idle_timeout_ms=IDLE, cookie=p, now_ms=300 + p)
    assert sorted(f.cookie for f in ft.dump()) == [1, 3, 19]
    assert ft.stats()["evictions"] == 16


def test_a_table_of_permanent_flows_refuses():
    ft = FlowTable(max_flows=2)
    ft.put(key(in_port=1), M_PORT, 1, [], cookie=1, now_ms=0)
    ft.put(key(in_port=2), M_PORT, 1, [], cookie=2, now_ms=0)
    with pytest.raises(FlowTableError) as exc:
        ft.put(key(in_port=3), M_PORT, 1, [], idle_timeout_ms=IDLE, cookie=3, now_ms=1)
    assert exc.value.errno == errno.ENOSPC
    s = ft.stats()
    assert (s["refused"], s["evictions"], s["flows"]) == (1, 0, 2)
    assert ft.put(key(in_port=2), M_PORT, 1, [A.output(1)], cookie=2, now_ms=2) == 1, "a modify needs no room"


@pytest.mark.parametrize("actions", [
    [A.output(64)],
    [A.Action(99)],
    [A.Action(0)],
    [A.output(1)] * 17,
])
def test_refused_actions(actions):
    ft = FlowTable()
    with pytest.raises(FlowTableError) as exc:
        ft.put(key(), M_PORT, 1, actions, now_ms=0)
    assert exc.value.errno == errno.EINVAL
    assert ft.stats()["refused"] == 1 and len(ft) == 0


def test_sixteen_actions_accepted():
    ft = FlowTable()
    acts = [A.output(p) for p in range(16)]
    ft.put(key(), M_PORT, 1, acts, now_ms=0)
    assert ft.dump()[0].actions == tuple(acts)


def test_too_many_subtables():
    ft = FlowTable()
    for prio in range(consts.MAX_SUBTABLES):
        ft.put(key(), M_PORT, prio, [], now_ms=0)
    ft.put(key(in_port=2), M_PORT, 0, [], now_ms=0)         # an existing subtable is fine
    with pytest.raises(FlowTableError) as exc:
        ft.put(key(), M_PORT, consts.MAX_SUBTABLES, [], now_ms=0)
    assert exc.value.errno == errno.ENOSPC
    assert ft.stats()["refused"] == 1 and ft.stats()["subtables"] == consts.MAX_SUBTABLES


def test_dump_in_installation_order_across_chunks():
    ft = FlowTable()
    for p in range(600):
        ft.put(key(in_port=p), M_PORT if p % 2 else M_PORT_DST, p % 3, [A.output(p % 64)], cookie=p, now_ms=0)
    ft.delete(key(in_port=5), M_PORT, 2)
    cookies = [f.cookie for f in ft.dump()]
    assert cookies == [p for p in range(600) if p != 5]


def test_many_flows_one_subtable_grow():
    ft = FlowTable(max_flows=5000, emc_entries=0)
    for p in range(4000):
        ft.put(key(in_port=p % 60000, tp_dst=p), FlowKey.mask_of("tp_dst"), 1, [A.output(p % 64)], now_ms=0)
    for p in range(0, 4000, 37):
        assert ft.lookup(key(tp_dst=p), 1, now_ms=1).actions == (A.output(p % 64),)
    assert ft.stats()["emc_hits"] == 0


def test_real_clock_default():
    ft = FlowTable()
    ft.put(key(), M_PORT, 1, [], idle_timeout_ms=10 ** 9)
    assert ft.lookup(key(), 1).used_ms > 0
    assert ft.expire() == []


def test_bad_key_length():
    with pytest.raises(ValueError):
        FlowTable().put(b"short", M_PORT, 1, [])
