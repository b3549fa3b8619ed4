"""LPM cases both implementations must pass (docs/DATAPATH.md "Routing"): test_fastpath_lpm.py and
test_refpath_lpm.py import them and provide the `Lpm` fixture, the class under test."""
import errno
import ipaddress

import pytest


def a(text):
    return ipaddress.IPv4Address(text).packed


def test_empty_table_has_no_route(Lpm):
    lpm = Lpm()
    assert len(lpm) == 0
    assert lpm.lookup(a("192.0.2.1")) == 0
    assert lpm.delete(a("192.0.2.0"), 24) is False


def test_default_route_covers_everything(Lpm):
    lpm = Lpm()
    lpm.add(a("0.0.0.0"), 0, 1)
    for addr in ("0.0.0.0", "192.0.2.1", "255.255.255.255", "127.0.0.1"):
        assert lpm.lookup(a(addr)) == 1
    assert lpm.delete(a("0.0.0.0"), 0) is True
    assert lpm.lookup(a("192.0.2.1")) == 0


def test_host_route_covers_one_address(Lpm):
    lpm = Lpm()
    lpm.add(a("198.51.100.7"), 32, 9)
    assert lpm.lookup(a("198.51.100.7")) == 9
    assert lpm.lookup(a("198.51.100.6")) == 0
    assert lpm.lookup(a("198.51.100.8")) == 0


def test_prefix_is_masked(Lpm):
    lpm = Lpm()
    lpm.add(a("192.0.2.77"), 24, 3)
    assert lpm.lookup(a("192.0.2.0")) == 3 and lpm.lookup(a("192.0.2.255")) == 3
    assert lpm.delete(a("192.0.2.200"), 24) is True      # same rule, other host bits
    assert len(lpm) == 0


def test_longest_prefix_wins_in_any_insertion_order(Lpm):
    rules = [("0.0.0.0", 0, 1), ("198.0.0.0", 8, 2), ("198.51.0.0", 16, 3), ("198.51.100.0", 24, 4),
             ("198.51.100.128", 25, 5), ("198.51.100.192", 26, 6), ("198.51.100.200", 32, 7)]
    expect = {"10.0.0.1": 1, "198.1.1.1": 2, "198.51.1.1": 3, "198.51.100.1": 4, "198.51.100.129": 5,
              "198.51.100.193": 6, "198.51.100.200": 7, "198.51.100.201": 6}
    for order in (rules, rules[::-1], rules[3:] + rules[:3]):
        lpm = Lpm()
        for prefix, plen, nh in order:
            lpm.add(a(prefix), plen, nh)
        assert len(lpm) == len(rules)
        assert {addr: lpm.lookup(a(addr)) for addr in expect} == expect


def test_replace_keeps_one_rule(Lpm):
    lpm = Lpm()
    lpm.add(a("203.0.113.0"), 24, 1)
    lpm.add(a("203.0.113.64"), 26, 2)
    lpm.add(a("203.0.113.0"), 24, 3)
    lpm.add(a("203.0.113.64"), 26, 4)
    assert len(lpm) == 2
    assert lpm.lookup(a("203.0.113.1")) == 3 and lpm.lookup(a("203.0.113.65")) == 4


def test_delete_falls_back_to_the_next_shorter_rule(Lpm):
    lpm = Lpm()
    lpm.add(a("0.0.0.0"), 0, 1)
    lpm.add(a("203.0.0.0"), 8, 2)
    lpm.add(a("203.0.113.0"), 24, 3)
    lpm.add(a("203.0.113.0"), 28, 4)
    lpm.add(a("203.0.113.5"), 32, 5)
    steps = [(("203.0.113.0", 28), {"203.0.113.5": 5, "203.0.113.6": 3, "203.0.113.20": 3}),
             (("203.0.113.0", 24), {"203.0.113.5": 5, "203.0.113.6": 2, "203.0.113.20": 2}),
             (("203.0.113.5", 32), {"203.0.113.5": 2, "203.0.113.6": 2}),
             (("203.0.0.0", 8), {"203.0.113.5": 1, "203.1.1.1": 1}),
             (("0.0.0.0", 0), {"203.0.113.5": 0, "1.2.3.4": 0})]
    for (prefix, plen), expect in steps:
        assert lpm.delete(a(prefix), plen) is True
        assert lpm.delete(a(prefix), plen) is False
        assert {addr: lpm.lookup(a(addr)) for addr in expect} == expect
    assert len(lpm) == 0


def test_deleting_a_shorter_rule_keeps_longer_ones(Lpm):
    lpm = Lpm()
    lpm.add(a("192.0.2.0"), 24, 1)
    lpm.add(a("192.0.2.128"), 25, 2)
    lpm.add(a("192.0.0.0"), 16, 3)
    assert lpm.delete(a("192.0.2.0"), 24)
    assert lpm.lookup(a("192.0.2.200")) == 2
    assert lpm.lookup(a("192.0.2.1")) == 3
    lpm.add(a("192.0.2.0"), 24, 4)                # a shorter rule added after a longer one does not shadow it
    assert lpm.lookup(a("192.0.2.200")) == 2 and lpm.lookup(a("192.0.2.1")) == 4


def test_long_prefixes_in_many_slash_24s(Lpm):
    lpm = Lpm()
    for i in range(40):
        lpm.add(bytes([198, 51, i, 0]), 30, i + 1)
    for i in range(40):
        assert lpm.lookup(bytes([198, 51, i, 3])) == i + 1
        assert lpm.lookup(bytes([198, 51, i, 4])) == 0


def test_plen_over_32_is_refused(Lpm):
    lpm = Lpm()
    with pytest.raises(ValueError):
        lpm.add(a("192.0.2.0"), 33, 1)
    with pytest.raises(ValueError):
        lpm.delete(a("192.0.2.0"), 33)
    for nh in (0, 4096):
        with pytest.raises(ValueError):
            lpm.add(a("192.0.2.0"), 24, nh)
    assert len(lpm) == 0


def test_max_routes_bound(Lpm):
    lpm = Lpm(max_routes=3)
    for i in range(3):
        lpm.add(bytes([192, 0, i, 0]), 24, 1)
    with pytest.raises(OSError) as exc:
        lpm.add(a("192.0.9.0"), 24, 1)
    assert exc.value.errno == errno.ENOSPC
    lpm.add(a("192.0.1.0"), 24, 2)                 # a replace needs no room
    assert lpm.lookup(a("192.0.1.1")) == 2 and len(lpm) == 3
    assert lpm.delete(a("192.0.0.0"), 24)
    lpm.add(a("192.0.9.0"), 24, 3)
    assert lpm.lookup(a("192.0.9.9")) == 3


def test_tbl8_bound_and_groups_are_freed(Lpm):
    lpm = Lpm(max_tbl8=2)
    lpm.add(a("192.0.2.0"), 25, 1)
    lpm.add(a("192.0.2.128"), 26, 2)               # same /24: same group
    lpm.add(a("198.51.100.0"), 32, 3)
    with pytest.raises(OSError) as exc:
        lpm.add(a("203.0.113.0"), 28, 4)
    assert exc.value.errno == errno.ENOSPC
    lpm.add(a("203.0.113.0"), 24, 4)               # up to /24 needs no group
    assert lpm.delete(a("192.0.2.0"), 25)
    with pytest.raises(OSError):                   # the group still holds the /26
        lpm.add(a("203.0.113.0"), 28, 5)
    assert lpm.delete(a("192.0.2.128"), 26)
    lpm.add(a("203.0.113.0"), 28, 5)               # now it was freed
    assert lpm.lookup(a("203.0.113.1")) == 5 and lpm.lookup(a("203.0.113.17")) == 4
    assert lpm.lookup(a("192.0.2.1")) == 0 and lpm.lookup(a("198.51.100.0")) == 3


def test_freed_group_is_clean_when_reused(Lpm):
    lpm = Lpm(max_tbl8=1)
    lpm.add(a("192.0.2.0"), 24, 1)
    lpm.add(a("192.0.2.0"), 30, 2)
    assert lpm.delete(a("192.0.2.0"), 30)
    assert lpm.lookup(a("192.0.2.1")) == 1
    lpm.add(a("198.51.100.8"), 29, 3)
    assert lpm.lookup(a("198.51.100.1")) == 0 and lpm.lookup(a("198.51.100.9")) == 3
    assert lpm.lookup(a("192.0.2.1")) == 1


def test_addresses_must_be_four_bytes(Lpm):
    lpm = Lpm()
    with pytest.raises(ValueError):
        lpm.add(bytes(16), 24, 1)
    with pytest.raises(ValueError):
        lpm.lookup(b"\x01\x02")
