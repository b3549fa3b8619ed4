"""Flow table lookups (ps_ft_lookup) in a table of 1000 flows: an EMC hit, a masked-subtable hit and a miss.

The 1000 flows are 250 in each of four subtables, with the masks of the pipeline's commonest flows and decreasing
priorities. The key looked up for a hit matches a flow of the last subtable a lookup tries, so a masked hit probes
all four subtables, as a miss does; an EMC hit finds it in the exact-match cache in front of them.
"""
from pyswitch import actions as A
from pyswitch.flowkey import FlowKey

MASKS = [   # highest priority first
    FlowKey.mask_of("in_port", "vlan_tci", "eth_src", "eth_dst", vlan_vid_only=True),    # L2 stage, host pair
    FlowKey.mask_of("in_port", "vlan_tci", "eth_dst", "eth_type", "nw_proto", "nw_dst", "tp_dst",
                    vlan_vid_only=True),                                                   # VIP stage
    FlowKey.mask_of("eth_src"),                                                            # L2 stage, source
    FlowKey.mask_of("eth_dst"),                                                            # L2 stage, destination
]
FLOWS_PER_SUBTABLE = 250
HIT_HOST = len(MASKS) * FLOWS_PER_SUBTABLE - 1          # its flow is the last subtable's
MISS_HOST = 5000                                        # no flow for it anywhere
NOW_MS = 1000                                           # a fixed clock, as the datapath reads once per batch


def host_key(n: int) -> bytes:
    """A TCP/IPv4 packet's key whose every masked field is unique to host `n`."""
    mac = bytes([2, 0, 0, 0, n >> 8 & 0xFF, n & 0xFF])
    return FlowKey(in_port=1 + n % 8, vlan_tci=0x1000 | 10, eth_dst=mac, eth_src=b"\x06" + mac[1:],
                   eth_type=0x0800, nw_proto=6, nw_dst=bytes([10, 0, n >> 8 & 0xFF, n & 0xFF]) + bytes(12),
                   tp_dst=80).pack()


def thousand_flows(impl, emc_entries: int):
    ft = impl.FlowTable(emc_entries=emc_entries)
    for s, mask in enumerate(MASKS):
        for n in range(s * FLOWS_PER_SUBTABLE, (s + 1) * FLOWS_PER_SUBTABLE):
            ft.put(host_key(n), mask, 10 * (len(MASKS) - s), [A.output(2)], cookie=n, now_ms=0)
    assert ft.stats()["flows"] == len(MASKS) * FLOWS_PER_SUBTABLE
    return ft


def test_lookup_emc_hit(impl, timed):
    ft = thousand_flows(impl, emc_entries=8192)
    info = timed("flow lookup, EMC hit", ft.lookup, host_key(HIT_HOST), 64, NOW_MS)
    assert info.cookie == HIT_HOST
    assert ft.stats()["masked_hits"] == 1          # only the first lookup went past the cache


def test_lookup_masked_hit(impl, timed):
    ft = thousand_flows(impl, emc_entries=0)        # no cache: every hit searches the subtables
    info = timed("flow lookup, masked hit (4th of 4 subtables)", ft.lookup, host_key(HIT_HOST), 64, NOW_MS)
    assert info.cookie == HIT_HOST and ft.stats()["emc_hits"] == 0


def test_lookup_miss(impl, timed):
    ft = thousand_flows(impl, emc_entries=8192)
    assert timed("flow lookup, miss", ft.lookup, host_key(MISS_HOST), 64, NOW_MS) is None
