"""IPv4 longest-prefix match (ps_lpm_lookup, DIR-24-8) in a table of 4250 prefixes: a /24 hit and a /28 hit.

3000 /24s, and 250 more /24s each holding four /28s, over 300 next hops. In C a /24 hit is one read of the
2^24-entry table and a /28 hit a second read, in the /24's group of 256; the twin tries prefix lengths from /32
down, so its /28 hit comes sooner than its /24 hit.
"""
import ipaddress

import pytest

N_SLASH24 = 3000
N_SPLIT_SLASH24 = 250                                   # /24s that hold /28s
SLASH28_PER_SLASH24 = 4


def slash24_nexthop(i: int) -> int:
    return 1 + i % 100


def split_nexthop(block: int) -> int:
    return 101 + block % 100


def slash28_nexthop(block: int, j: int) -> int:
    return 201 + (block * SLASH28_PER_SLASH24 + j) % 100


LOOKUPS = {   # operation -> (address, next-hop id it must find)
    "LPM lookup, /24 hit": ("10.7.123.45", slash24_nexthop(7 << 8 | 123)),
    "LPM lookup, /28 hit": ("172.16.99.37", slash28_nexthop(99, 37 // 16)),
}


def routing_table(impl):
    lpm = impl.Lpm()
    for i in range(N_SLASH24):
        lpm.add(bytes([10, i >> 8, i & 0xFF, 0]), 24, slash24_nexthop(i))
    for block in range(N_SPLIT_SLASH24):
        lpm.add(bytes([172, 16, block, 0]), 24, split_nexthop(block))
        for j in range(SLASH28_PER_SLASH24):
            lpm.add(bytes([172, 16, block, 16 * j]), 28, slash28_nexthop(block, j))
    assert len(lpm) == N_SLASH24 + N_SPLIT_SLASH24 * (1 + SLASH28_PER_SLASH24)
    return lpm


@pytest.mark.parametrize("operation", list(LOOKUPS))
def test_lookup(impl, timed, operation):
    address, nh_id = LOOKUPS[operation]
    assert timed(operation, routing_table(impl).lookup, ipaddress.IPv4Address(address).packed) == nh_id
