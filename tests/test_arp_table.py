"""The ARP table's states and bounds, with a hand-driven clock."""
from pyswitch.pipeline.arp_table import ArpTable

IP1, IP2, IP3 = bytes([192, 0, 2, 11]), bytes([192, 0, 2, 12]), bytes([192, 0, 2, 13])
MAC1, MAC2 = bytes.fromhex("020000000011"), bytes.fromhex("020000000012")


def table(**kw):
    args = {"max_entries": 8, "reachable_s": 60, "retries": 3, "queue_len": 2, "pending_max": 4096}
    args.update(kw)
    return ArpTable(**args)


def test_want_hold_resolve_flushes_the_queue():
    t = table()
    entry = t.want(20, IP1, now=0)
    assert entry.state == "incomplete" and entry.mac is None
    assert t.hold(entry, "p1") and t.hold(entry, "p2")
    assert not t.hold(entry, "p3"), "the queue per neighbor is bounded"
    assert t.counters["arp_queue_dropped"] == 1
    changed, pending = t.resolved(20, IP1, MAC1, 3, now=0.2)
    assert changed and pending == ["p1", "p2"]
    assert (entry.state, entry.mac, entry.port_no) == ("reachable", MAC1, 3)
    assert t.resolved(20, IP1, MAC1, 3, now=0.3) == (False, []), "no change, no rewrite"


def test_unanswered_requests_fail_after_retries():
    t = table(retries=3)
    entry = t.want(20, IP1, now=0)
    t.hold(entry, "p1")
    assert [w for *_, w in t.due(0)] == ["request"]
    assert [w for *_, w in t.due(0.5)] == [], "one request a second"
    assert [w for *_, w in t.due(1.0)] == ["request"]
    assert [w for *_, w in t.due(2.0)] == ["request"]
    failed = list(t.due(3.0))
    assert [w for *_, w in failed] == ["failed"] and list(failed[0][2].pending) == ["p1"]
    assert t.get(20, IP1) is None
    assert t.counters["arp_failed"] == 1 and t.counters["arp_timeout_dropped"] == 1


def test_reachable_entries_are_probed_then_dropped():
    t = table(reachable_s=10, retries=2)
    t.resolved(10, IP1, MAC1, 1, now=0)
    assert list(t.due(5)) == []
    assert [w for *_, w in t.due(10)] == ["request"]
    assert t.get(10, IP1).state == "probe" and t.get(10, IP1).mac == MAC1, "still used while probed"
    t.resolved(10, IP1, MAC1, 1, now=10.5)
    assert t.get(10, IP1).state == "reachable"
    list(t.due(21)), list(t.due(22))
    assert [w for *_, w in t.due(23)] == ["failed"]


def test_refresh_updates_but_never_creates():
    t = table()
    assert t.refresh(10, IP1, MAC1, 1, now=0) is False and t.get(10, IP1) is None
    t.resolved(10, IP1, MAC1, 1, now=0)
    assert t.refresh(10, IP1, MAC2, 2, now=1) is True, "a gratuitous ARP moves the neighbor"
    assert t.get(10, IP1).mac == MAC2


def test_bounded():
    t = table(max_entries=2)
    t.want(10, IP1, now=0)
    t.resolved(10, IP2, MAC1, 1, now=0)
    assert t.want(10, IP3, now=0) is None
    assert t.resolved(10, IP3, MAC1, 1, now=0) == (False, [])
    assert t.counters["arp_table_full"] == 2 and len(t) == 2


def test_pending_packets_are_bounded_in_all():
    t = table(queue_len=4, pending_max=5)
    a, b = t.want(20, IP1, now=0), t.want(20, IP2, now=0)
    assert all(t.hold(a, f"a{i}") for i in range(4))
    assert t.hold(b, "b0") and not t.hold(b, "b1"), "five wait in all, whichever neighbor"
    assert t.counters["arp_queue_dropped"] == 1 and t.stats()["arp_pending"] == 5
    t.resolved(20, IP1, MAC1, 1, now=0.1)
    assert t.n_pending == 1 and t.hold(b, "b1"), "a flushed queue makes room"
    for now in (0, 1, 2, 3):
        list(t.due(now))
    assert t.get(20, IP2) is None and t.n_pending == 0, "a failed neighbor's packets leave the count"


def test_a_reply_resolves_what_was_asked_but_never_creates():
    t = table()
    assert t.answered(10, IP1, MAC1, 1, now=0) == (False, []) and t.get(10, IP1) is None
    entry = t.want(10, IP2, now=0)
    t.hold(entry, "p1")
    assert t.answered(10, IP2, MAC2, 2, now=0.1) == (True, ["p1"])
    assert t.get(10, IP2).state == "reachable"


def test_stats_name_each_bound():
    s = table(max_entries=8, pending_max=100).stats()
    assert (s["arp_entries"], s["arp_max_entries"], s["arp_pending"], s["arp_pending_max"]) == (0, 8, 0, 100)
    assert {"arp_table_full", "arp_queue_dropped", "arp_timeout_dropped"} <= set(s)
