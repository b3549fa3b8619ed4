"""The Internet checksum: a full RFC 1071 sum (ps_csum) and RFC 1624 incremental updates (ps_csum_update16/32)."""
import pytest

PAYLOAD = bytes(range(256)) * 6
BUFFERS = {   # operation -> data summed: a minimum-size frame's worth and a full MTU's
    "csum, 64 bytes": PAYLOAD[:64],
    "csum, 1500 bytes": PAYLOAD[:1500],
}
CHECK = 0xB1E6                                          # any checksum: the update costs the same for all
OLD16, NEW16 = 0x4006, 0x3F06                           # TTL and protocol, as ROUTE's TTL 64 -> 63 changes them
OLD32, NEW32 = 0xC6336401, 0xCB00710A                   # a NAT's address rewrite: 198.51.100.1 -> 203.0.113.10


@pytest.mark.parametrize("operation", list(BUFFERS))
def test_csum(impl, timed, operation):
    assert 0 <= timed(operation, impl.csum, BUFFERS[operation]) <= 0xFFFF


def test_csum_update16(impl, timed):
    assert 0 <= timed("csum_update16", impl.csum_update16, CHECK, OLD16, NEW16) <= 0xFFFF


def test_csum_update32(impl, timed):
    assert 0 <= timed("csum_update32", impl.csum_update32, CHECK, OLD32, NEW32) <= 0xFFFF
