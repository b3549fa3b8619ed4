"""Internet checksums: the twin of csrc/csum.c (RFC 1071, RFC 1624 equation 3).

Values are host-order integers of big-endian 16-bit fields, so `csum(...).to_bytes(2, "big")` is what goes into a
header.
"""
from __future__ import annotations

_ONES = 0xFFFF              # one's complement arithmetic is arithmetic modulo 2**16 - 1


def csum(data, initial: int = 0) -> int:
    """The complemented one's complement sum of `data` as big-endian 16-bit words, plus `initial`.

    An odd last byte is padded with a zero byte. Since 2**16 is 1 modulo 0xffff, the whole buffer read as one
    big-endian integer has the same residue as the sum of its words; that keeps this linear-time and fast.
    Folding a non-zero sum never gives 0 (it gives 0xffff), which the residue alone cannot tell, hence the test.
    """
    data = bytes(data)
    if len(data) & 1:
        data += b"\x00"
    total = int.from_bytes(data, "big") + initial
    folded = total % _ONES
    if folded == 0 and total != 0:
        folded = _ONES
    return ~folded & 0xFFFF


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def csum_update16(check: int, old: int, new: int) -> int:
    """RFC 1624 equation 3: HC' = ~(~HC + ~m + m'), for a 16-bit field changed from `old` to `new`."""
    return ~_fold((~check & 0xFFFF) + (~old & 0xFFFF) + (new & 0xFFFF)) & 0xFFFF


def csum_update32(check: int, old: int, new: int) -> int:
    """csum_update16 over the two halves of a 32-bit field, high half first."""
    check = csum_update16(check, old >> 16 & 0xFFFF, new >> 16 & 0xFFFF)
    return csum_update16(check, old & 0xFFFF, new & 0xFFFF)
