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


def mac(i: int) -> bytes:
    return b"\x06" + i.to_bytes(5, "big")        # apart from A, B and C


def test_port_limit_evicts_the_ports_own_oldest():
    t = MacTable(max_entries=100, aging_s=300, port_limits={1: 3})
    t.learn(1, A, 2, now=0)                         # another port's host
    for i in range(10):                             # a flood on port 1, beyond its limit
        t.learn(1, mac(i), 1, now=1 + i)
    assert t.port_count(1) == 3
    assert [t.lookup(1, mac(i)) is not None for i in range(10)] == [False] * 7 + [True] * 3
    assert t.lookup(1, A).port_no == 2, "port 2's host is untouched"
    assert t.port_evicted == {1: 7} and t.evicted == 7
    assert t.port_stats(1) == {"macs": 3, "max_macs": 3, "mac_evicted": 7}
    assert t.port_stats(2) == {"macs": 1, "max_macs": 100, "mac_evicted": 0}


def test_full_table_evicts_from_the_port_holding_the_most():
    t = MacTable(max_entries=8, aging_s=300)
    t.learn(1, A, 2, now=0)                         # the oldest entry of all, on a quiet port
    t.learn(1, B, 3, now=0)
    for i in range(1000):                           # no per-port limit: only fairness protects A and B
        t.learn(1, mac(i), 1, now=1 + i)
    assert len(t) == 8 and t.port_count(1) == 6
    assert t.lookup(1, A) and t.lookup(1, B), "a flood on port 1 evicted another port's MAC"
    assert t.port_evicted == {1: 994}


def test_move_into_a_port_at_its_limit_evicts_there_only():
    t = MacTable(max_entries=3, aging_s=300, port_limits={2: 1})
    t.learn(1, A, 1, now=0)
    t.learn(1, B, 1, now=1)
    t.learn(1, C, 2, now=2)                         # the table is full now
    assert t.learn(1, A, 2, now=3) == 1             # A moves to port 2, which holds one at most
    assert t.lookup(1, C) is None and t.lookup(1, B).port_no == 1, "a move does not grow the table"
    assert (t.port_count(1), t.port_count(2), t.evicted) == (1, 1, 1)


def test_refresh_protects_an_entry_from_its_ports_eviction():
    t = MacTable(max_entries=100, aging_s=300, port_limits={1: 2})
    t.learn(1, A, 1, now=0)
    t.learn(1, B, 1, now=1)
    t.refresh(1, A, seen=2)                         # A's flows are in use: B is the older now
    t.learn(1, C, 1, now=3)
    assert t.lookup(1, A) and t.lookup(1, B) is None


def test_age_and_forget_keep_the_port_counts():
    t = MacTable(max_entries=100, aging_s=5, port_limits={1: 2})
    t.learn(1, A, 1, now=0)
    t.learn(1, B, 1, now=4)
    assert t.age(now=5) == [(1, A)] and t.port_count(1) == 1
    t.learn(1, C, 1, now=6)
    assert t.evicted == 0, "an aged entry made room"
    assert sorted(t.forget_port(1)) == [(1, B), (1, C)] and t.port_count(1) == 0 and len(t) == 0
