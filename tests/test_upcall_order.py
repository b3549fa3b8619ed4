"""The slow path's order when it cannot handle every upcall: round robin over the input ports."""
from collections import namedtuple

from pyswitch.switch import interleave_by_port

Up = namedtuple("Up", "in_port seq")


def test_round_robin_over_ports_keeping_each_ports_order():
    flood = [Up(2, i) for i in range(5)]
    others = [Up(0, 0), Up(3, 0), Up(3, 1)]
    order = interleave_by_port(flood[:3] + others[:1] + flood[3:] + others[1:])
    assert [(u.in_port, u.seq) for u in order] == [(2, 0), (0, 0), (3, 0), (2, 1), (3, 1), (2, 2), (2, 3), (2, 4)]


def test_one_port_keeps_its_order():
    ups = [Up(1, i) for i in range(4)]
    assert interleave_by_port(ups) == ups and interleave_by_port([]) == []
