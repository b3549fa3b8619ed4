"""IPv4 longest-prefix match: the twin of csrc/lpm.c (docs/DATAPATH.md "Routing").

C keeps a DIR-24-8 table; the twin keeps only the rules, a dict from (masked prefix, length) to next-hop id, and a
lookup tries the 33 lengths from /32 down. The one thing of C's layout the twin must still model is its bound: a
/24 holding a rule longer than /24 uses one of `max_tbl8` groups until its last such rule goes, so the twin counts
long rules per /24 to refuse (ENOSPC) exactly when C does.
"""
from __future__ import annotations

import errno

from .. import consts

_MASKS = tuple(((1 << 32) - 1) ^ ((1 << (32 - n)) - 1) for n in range(33))    # /0 .. /32 netmasks


def _ip4(value, what: str) -> int:
    if len(value) != 4:
        raise ValueError(f"an IPv4 {what} is 4 bytes, not {len(value)}")
    return int.from_bytes(value, "big")


def _plen(plen) -> int:
    if isinstance(plen, bool) or not isinstance(plen, int) or not 0 <= plen <= 32:
        raise ValueError(f"prefix length {plen!r} is not 0..32")
    return plen


class Lpm:
    def __init__(self, max_routes: int = 65536, max_tbl8: int = 4096):
        self.max_routes = max_routes
        self.max_tbl8 = max_tbl8
        self._rules: dict[tuple[int, int], int] = {}      # (masked prefix, plen) -> next-hop id
        self._long_rules: dict[int, int] = {}             # /24 (address >> 8) -> rules longer than /24 in it

    def add(self, prefix, plen, nh_id) -> None:
        """Add or replace a rule; the prefix is masked to `plen` bits."""
        plen = _plen(plen)
        if isinstance(nh_id, bool) or not isinstance(nh_id, int) or not 0 < nh_id < consts.MAX_NEXTHOPS:
            raise ValueError(f"next-hop id {nh_id!r} is not 1..{consts.MAX_NEXTHOPS - 1}")
        rule = (_ip4(prefix, "prefix") & _MASKS[plen], plen)
        if rule not in self._rules:
            if len(self._rules) >= self.max_routes:
                raise OSError(errno.ENOSPC, f"more than {self.max_routes} routes")
            if plen > 24:
                block = rule[0] >> 8
                if block not in self._long_rules and len(self._long_rules) >= self.max_tbl8:
                    raise OSError(errno.ENOSPC, f"more than {self.max_tbl8} /24s with routes longer than /24")
                self._long_rules[block] = self._long_rules.get(block, 0) + 1
        self._rules[rule] = nh_id

    def delete(self, prefix, plen) -> bool:
        plen = _plen(plen)
        rule = (_ip4(prefix, "prefix") & _MASKS[plen], plen)
        if self._rules.pop(rule, None) is None:
            return False
        if plen > 24:
            block = rule[0] >> 8
            self._long_rules[block] -= 1
            if not self._long_rules[block]:
                del self._long_rules[block]
        return True

    def lookup(self, addr) -> int:
        """The next-hop id of the longest rule covering `addr`, 0 if none."""
        a = _ip4(addr, "address")
        rules = self._rules
        for plen in range(32, -1, -1):
            nh_id = rules.get((a & _MASKS[plen], plen))
            if nh_id is not None:
                return nh_id
        return 0

    def __len__(self) -> int:
        return len(self._rules)
