"""Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4), built in the control plane.

As in Katran, the data plane only indexes a ring: slot = flow_hash % M, backend = table[slot].  This module
builds the table, and `diff` lists the slots that differ between two tables so that a backend change
rewrites only those slots in the fast path.

Construction (the paper's permutation method): backend i has
    offset_i = h1(key_i) mod M,   skip_i = h2(key_i) mod (M - 1) + 1
and its preference list is offset_i, offset_i + skip_i, offset_i + 2*skip_i, ... (mod M).  Because M is
prime, every skip is coprime with M and the list visits every slot.  Backends take turns; on its turn a
backend claims the next slot in its list that is still empty.

Weights (the "weighted turns" variant, as in Envoy's Maglev): in round t = 1, 2, ... a backend of weight w
takes a turn when t * w reaches its next target, which starts at 0 and grows by the largest weight after
each turn.  A backend of the largest weight thus takes a turn every round, one of half that weight every
other round, and slot counts come out proportional to weight (equal weights: counts differ by at most 1).

Determinism: backends are sorted by key before building, and h1/h2 are BLAKE2b with fixed personalisation
strings (never Python's hash(), which is salted per process), so every instance given the same backends
builds the same table, whatever order its configuration listed them in.

Table entries are indices into `ordered(backends)` (sorted by key, backends that take no new connections
included), or EMPTY.  A backend that does not accept new connections keeps its index and claims no slot, so
marking one down or draining it changes only the slots it held (and a few others).
"""
from __future__ import annotations

import hashlib

from pyswitch.lb.backend import Backend

TABLE_SIZE = 65537          # M: prime, and more than 100 * N for N <= 655, the paper's rule for good balance
EMPTY = -1                  # slot value when no backend accepts new connections
_PERSON_OFFSET = b"psw-maglev-off"  # BLAKE2b personalisation for h1 (<= 16 bytes); two strings make two
_PERSON_SKIP = b"psw-maglev-skip"   # independent hashes from one function
FNV64_OFFSET = 0xCBF29CE484222325   # FNV-1a 64-bit offset basis
FNV64_PRIME = 0x100000001B3         # FNV-1a 64-bit prime
_MASK64 = (1 << 64) - 1


def ordered(backends: list[Backend]) -> list[Backend]:
    """The backends sorted by key: the order that table entries index."""
    return sorted(backends, key=lambda b: b.key)


def _key_bytes(b: Backend) -> bytes:
    # A NUL cannot occur in an address's text, so no two keys encode alike.
    return b.address.encode() + b"\0" + b.port.to_bytes(2, "big")


def _h(data: bytes, person: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=person).digest(), "big")


def permutation_params(b: Backend, size: int = TABLE_SIZE) -> tuple[int, int]:
    """(offset, skip) of backend `b`'s preference list in a table of `size` slots."""
    data = _key_bytes(b)
    return _h(data, _PERSON_OFFSET) % size, _h(data, _PERSON_SKIP) % (size - 1) + 1


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True


def build(backends: list[Backend], size: int = TABLE_SIZE) -> list[int]:
    """Build the lookup table for `backends`: slot -> index into ordered(backends), or EMPTY.

    Only backends whose `accepts_new` is true claim slots.  `size` must be prime: with a composite size a
    skip sharing a factor with it cycles through part of the table only, and once that part is full the
    backend would search forever.
    """
    if not _is_prime(size):
        raise ValueError(f"Maglev table size {size} is not prime")
    order = ordered(backends)
    table = [EMPTY] * size
    live = [i for i, b in enumerate(order) if b.accepts_new]
    if not live:
        return table
    weights = [order[i].weight for i in live]
    max_w = max(weights)
    pos = []
    skips = []
    for i in live:
        offset, skip = permutation_params(order[i], size)
        pos.append(offset)
        skips.append(skip)
    targets = [0] * len(live)
    n = len(live)
    filled = 0
    rnd = 0
    while True:
        rnd += 1
        for j in range(n):
            if rnd * weights[j] < targets[j]:
                continue
            targets[j] += max_w
            # Walk this backend's preference list to its next empty slot.  The position is kept
            # incrementally (c += skip, wrapped) instead of recomputing offset + k*skip mod M.
            c = pos[j]
            s = skips[j]
            while table[c] != EMPTY:
                c += s
                if c >= size:
                    c -= size
            table[c] = live[j]
            c += s
            if c >= size:
                c -= size
            pos[j] = c
            filled += 1
            if filled == size:
                return table


def diff(old_table: list[int], new_table: list[int]) -> list[tuple[int, int]]:
    """The (slot, new value) pairs where `new_table` differs from `old_table`: all the fast path must write."""
    if len(old_table) != len(new_table):
        raise ValueError(f"tables differ in size: {len(old_table)} and {len(new_table)}")
    return [(slot, new) for slot, (old, new) in enumerate(zip(old_table, new_table)) if old != new]


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bits: short enough to write identically in C for the fast path's ring lookup."""
    h = FNV64_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV64_PRIME) & _MASK64
    return h


def flow_hash(src_ip: bytes, dst_ip: bytes, src_port: int, dst_port: int, proto: int) -> int:
    """Hash of a connection's 5-tuple, for the ring lookup (one flow, one backend)."""
    return fnv1a64(src_ip + dst_ip + src_port.to_bytes(2, "big") + dst_port.to_bytes(2, "big")
                   + bytes((proto,)))


def client_hash(client_ip: bytes) -> int:
    """Hash of the client address alone, for source affinity (every flow of one client, one backend)."""
    return fnv1a64(client_ip)


def lookup(table: list[int], h: int) -> int:
    """The table entry for flow hash `h`: an index into ordered(backends), or EMPTY."""
    return table[h % len(table)]
