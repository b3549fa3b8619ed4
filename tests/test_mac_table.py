"""The MAC table: learning, moves, aging, and its bound."""
from pyswitch.pipeline.mac_table import MacTable

A, B, C = b"\x02\0\0\0\0\x0a", b"\x02\0\0\0\0\x0b", b"\x02\0\0\0\0\x0c"


def test_learn_lookup_move():
    t = MacTable(max_entries=10, aging_s=300)
    assert t.learn(10, A, 1, now=0) is None
    assert t.lookup(10, A).port_no == 1
    assert t.lookup(20, A) is None, "VLANs have separate tables"
    assert t.learn(10, A, 1, now=1) is None
    assert t.learn(10, A, 2, now=2) == 1, "a move reports the old port"
    assert t.lookup(10, A).port_no == 2
    assert (t.learned, t.moves) == (1, 1)


def test_aging_and_refresh():
    t = MacTable(max_entries=10, aging_s=5)
    t.learn(1, A, 1, now=0)
    t.learn(1, B, 2, now=0)
    t.refresh(1, B, seen=4)
    assert t.age(now=5) == [(1, A)]
    assert t.lookup(1, B) is not None
    assert t.age(now=9) == [(1, B)]
    assert len(t) == 0 and t.aged == 2


def test_bounded_evicts_least_recently_seen():
    t = MacTable(max_entries=2, aging_s=300)
    t.learn(1, A, 1, now=0)
    t.learn(1, B, 1, now=1)
    t.learn(1, A, 1, now=2)          # A is fresher than B now
    t.learn(1, C, 1, now=3)
    assert t.lookup(1, B) is None
    assert t.lookup(1, A) and t.lookup(1, C)
    assert t.evicted == 1 and len(t) == 2


def test_forget_port():
    t = MacTable(max_entries=10, aging_s=300)
    t.learn(1, A, 1, now=0)
    t.learn(1, B, 2, now=0)
    assert t.forget_port(1) == [(1, A)]
    assert len(t) == 1
