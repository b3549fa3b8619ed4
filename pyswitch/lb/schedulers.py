"""Schedulers: which backend a new connection goes to.

Each scheduler answers `pick(backends, client_ip)` once per new connection, on the upcall; the connection
then stays on its backend through the installed flow.  None means no backend accepts new connections: one
that is down, draining, or of weight 0 never gets a new connection, while its existing ones continue.

    rr       round robin over the list, as IPVS rr
    wrr      smooth weighted round robin (nginx's algorithm): shares by weight, interleaved, no bursts
    lc       fewest active connections (IPVS lc, see LeastConnections for the overhead used)
    wlc      fewest active connections per unit of weight (IPVS wlc)
    fastest  lowest recent median response time, like compared with like; unmeasured backends first
    sh       source-IP hash over a weighted bucket table (IPVS sh, with fallback)
    maglev   Maglev consistent hashing of the client address (see maglev.py)

Schedulers that keep state derived from the backend list (wrr, sh, maglev) rebuild it in
`on_backends_changed`, and also by themselves when `pick` sees a list whose keys or weights differ from
the last one, so a caller that forgets to tell them is not served from a stale table.

Counting is the caller's: it calls Backend.conn_opened() for the backend picked and conn_closed() when the
connection ends, so lc/wlc/fastest see what is open.
"""
from __future__ import annotations

from pyswitch.lb import maglev
from pyswitch.lb.backend import Backend

SH_TAB_BITS = 8                 # IPVS IP_VS_SH_TAB_BITS: 256 buckets
SH_TAB_SIZE = 1 << SH_TAB_BITS
GOLDEN_RATIO_32 = 0x61C88647    # the kernel's hash_32() multiplier (include/linux/hash.h)
_MASK32 = 0xFFFFFFFF


class Scheduler:
    """The interface every scheduler has."""
    name = ""

    def pick(self, backends: list[Backend], client_ip: bytes) -> Backend | None:
        raise NotImplementedError

    def on_backends_changed(self, backends: list[Backend]) -> None:
        """The backend list, a weight or a state changed.  Stateless schedulers need nothing."""


class RoundRobin(Scheduler):
    """Each backend in list order in turn, skipping those that take no new connections (IPVS rr)."""
    name = "rr"

    def __init__(self):
        self._next = 0          # list index to try first on the next pick

    def pick(self, backends, client_ip):
        n = len(backends)
        for k in range(n):
            i = (self._next + k) % n
            if backends[i].accepts_new:
                self._next = i + 1
                return backends[i]
        return None


class WeightedRoundRobin(Scheduler):
    """Smooth weighted round robin, nginx's algorithm (ngx_http_upstream_get_peer).

    On each pick every candidate's current weight grows by its weight, the largest current weight wins
    (first in list order on a tie), and the winner's current weight drops by the sum of the weights.
    Over sum(weights) picks each backend is chosen `weight` times, and the choices are interleaved:
    3:1:1 gives A B A C A, never A A A B C.  IPVS wrr reaches the same shares with a gcd-stepped
    threshold that sends runs of picks to the heaviest backend, which is why it is not used here.
    """
    name = "wrr"

    def __init__(self):
        self._current: dict[tuple[str, int], int] = {}     # key -> current weight
        self._keys: frozenset | None = None

    def on_backends_changed(self, backends):
        # Start the interleaving afresh, as nginx does when its upstream configuration changes.
        self._current = {}
        self._keys = frozenset((b.key, b.weight) for b in backends)

    def pick(self, backends, client_ip):
        if frozenset((b.key, b.weight) for b in backends) != self._keys:
            self.on_backends_changed(backends)
        best = None
        best_current = 0
        total = 0
        for b in backends:
            if not b.accepts_new:
                continue
            current = self._current.get(b.key, 0) + b.weight
            self._current[b.key] = current
            total += b.weight
            if best is None or current > best_current:
                best, best_current = b, current
        if best is not None:
            self._current[best.key] -= total
        return best


class LeastConnections(Scheduler):
    """The backend with the fewest active connections; the first in list order on a tie (IPVS lc).

    IPVS ranks by overhead = active * 256 + inactive, where inactive counts connections in FIN/TIME_WAIT
    that still hold state.  pyswitch removes a connection's flow when it ends and counts no inactive
    ones, so the overhead here is active_conns alone.
    """
    name = "lc"

    def pick(self, backends, client_ip):
        best = None
        for b in backends:
            if b.accepts_new and (best is None or b.active_conns < best.active_conns):
                best = b
        return best


class WeightedLeastConnections(Scheduler):
    """The backend with the lowest active_conns / weight (IPVS wlc; overhead as in LeastConnections).

    Compared by cross-multiplication, a.active * b.weight < b.active * a.weight, as IPVS does, so no
    division and no rounding.  First in list order on a tie.
    """
    name = "wlc"

    def pick(self, backends, client_ip):
        best = None
        for b in backends:
            if not b.accepts_new:
                continue
            if best is None or b.active_conns * best.weight < best.active_conns * b.weight:
                best = b
        return best


class Fastest(Scheduler):
    """The backend with the lowest recent response time (the seed's "response time"): the median of its last
    five samples of one source (Backend.observe_rtt).

    Samples come from two sources: health checks, which every backend gets alike, and SYN -> SYN/ACK, which
    only the backends that get connections get.  Backends are compared on health checks when all of them
    have one, else on SYN/ACKs when all have one: never one backend's SYN/ACKs against another's health
    checks, or the one that happened to get the cheaper kind of sample would take every connection and, with
    them, keep getting the cheap samples.  Backends not yet measured come first, so each gets a connection
    and with it a first sample.  Backends within NEAR_MS of the lowest, or up to twice it (NEAR_RATIO), count as
    equally fast: a health check's round trip through a loaded switch measures the switch as much as the
    backend (3.7 and 7.3 ms for two identical backends were seen on a loaded 2-core machine), and the
    scheduler is there to steer away from a backend that is clearly slower, not to split that noise.  Among
    equals the fewest active connections win, then they take turns in key order, so the choice does not depend
    on list order.
    """
    name = "fastest"
    NEAR_MS = 2.0
    NEAR_RATIO = 1.0

    def __init__(self):
        self._last_key = None       # the key picked last, for turns among equals

    def pick(self, backends, client_ip):
        candidates = [b for b in backends if b.accepts_new]
        if not candidates:
            return None
        rtt = _comparable_rtt(candidates)
        unmeasured = [b for b in candidates if rtt(b) is None]
        if unmeasured:
            candidates = unmeasured
        else:
            best = min(rtt(b) for b in candidates)
            limit = best + max(self.NEAR_MS, best * self.NEAR_RATIO)
            candidates = [b for b in candidates if rtt(b) <= limit]
        fewest = min(b.active_conns for b in candidates)
        equals = sorted((b for b in candidates if b.active_conns == fewest), key=lambda b: b.key)
        after = [b for b in equals if self._last_key is not None and b.key > self._last_key]
        chosen = (after or equals)[0]
        self._last_key = chosen.key
        return chosen


def _comparable_rtt(backends):
    """The response time to rank these backends by: the one source all of them have, health checks first;
    the combined average when no source is common (a backend not yet probed), None for one never measured."""
    if all(b.probe_rtt_ms is not None for b in backends):
        return lambda b: b.probe_rtt_ms
    if all(b.conn_rtt_ms is not None for b in backends):
        return lambda b: b.conn_rtt_ms
    return lambda b: b.rtt_ewma_ms


def _addr_fold(client_ip: bytes) -> int:
    """The client address as 32 bits: IPv4 as is, IPv6 as the XOR of its four words (as IPVS sh)."""
    if len(client_ip) == 4:
        return int.from_bytes(client_ip, "big")
    fold = 0
    for i in range(0, len(client_ip), 4):
        fold ^= int.from_bytes(client_ip[i:i + 4], "big")
    return fold


def _hash_32(val: int, bits: int) -> int:
    """The kernel's hash_32(): multiply by the golden ratio, keep the top `bits` bits."""
    return ((val * GOLDEN_RATIO_32) & _MASK32) >> (32 - bits)


class SourceHash(Scheduler):
    """Source-IP hashing (IPVS sh): one client address, one backend, while that backend is up.

    The table is IPVS's: SH_TAB_SIZE buckets filled by walking the backends (sorted by key, so every
    instance fills alike), each taking `weight` consecutive buckets (at least one) before the next, round
    and round.  A client's bucket is hash_32(address) of its 32-bit folded address.  Backends that are
    down or draining stay in the table; a client whose bucket holds one falls back (IPVS's sh-fallback),
    so only that backend's clients move and the others keep theirs.  The fallback probes with a second,
    per-client step rather than IPVS's linear walk, which spreads a failed backend's clients over the
    others instead of sending all of them to its neighbour in the table.
    """
    name = "sh"

    def __init__(self):
        self._table: list[Backend] = []
        self._signature: tuple | None = None

    def on_backends_changed(self, backends):
        self._signature = tuple((b.key, b.weight) for b in backends)
        order = maglev.ordered(backends)
        self._table = []
        if not order:
            return
        i = 0
        taken = 0
        for _ in range(SH_TAB_SIZE):
            self._table.append(order[i])
            taken += 1
            if taken >= order[i].weight:
                i = (i + 1) % len(order)
                taken = 0

    def pick(self, backends, client_ip):
        if tuple((b.key, b.weight) for b in backends) != self._signature:
            self.on_backends_changed(backends)
        if not self._table:
            return None
        fold = _addr_fold(client_ip)
        bucket = _hash_32(fold, SH_TAB_BITS)
        dest = self._table[bucket]
        if dest.accepts_new:
            return dest
        # An odd step is coprime with the power-of-two table size, so the probes visit every bucket.
        step = _hash_32(fold ^ _MASK32, SH_TAB_BITS) | 1
        for _ in range(SH_TAB_SIZE - 1):
            bucket = (bucket + step) & (SH_TAB_SIZE - 1)
            dest = self._table[bucket]
            if dest.accepts_new:
                return dest
        return None


class Maglev(Scheduler):
    """Maglev consistent hashing of the client address, with the ring the fast path indexes.

    `ring` maps each slot to a stable backend id (allocated on first sight, the smallest free one; freed
    when the backend leaves the list), not to a list position, so adding or removing one backend does not
    renumber the rest.  `on_backends_changed` rebuilds the table and returns, and keeps in `changes`, the
    (slot, id) pairs that differ from the previous ring: all the fast path has to write.  A reused id may
    name a new backend, so the fast path updates its id -> backend array before writing the slots.
    """
    name = "maglev"

    def __init__(self, table_size: int = maglev.TABLE_SIZE):
        self.table_size = table_size
        self.ring: list[int] = [maglev.EMPTY] * table_size     # slot -> backend id, or EMPTY
        self.changes: list[tuple[int, int]] = []               # slots written by the last rebuild
        self.ids: dict[tuple[str, int], int] = {}              # backend key -> stable id
        self._by_id: dict[int, Backend] = {}
        self._signature: tuple | None = None

    @staticmethod
    def _signature_of(backends):
        return tuple((b.key, b.weight, b.accepts_new) for b in backends)

    def on_backends_changed(self, backends):
        self._signature = self._signature_of(backends)
        keys = {b.key for b in backends}
        for key in [k for k in self.ids if k not in keys]:
            del self.ids[key]
        used = set(self.ids.values())
        next_id = 0
        order = maglev.ordered(backends)
        for b in order:
            if b.key not in self.ids:
                while next_id in used:
                    next_id += 1
                self.ids[b.key] = next_id
                used.add(next_id)
        self._by_id = {self.ids[b.key]: b for b in order}
        slot_ids = [self.ids[b.key] for b in order]
        table = maglev.build(backends, self.table_size)
        new_ring = [maglev.EMPTY if i == maglev.EMPTY else slot_ids[i] for i in table]
        self.changes = maglev.diff(self.ring, new_ring)
        self.ring = new_ring
        return self.changes

    def pick(self, backends, client_ip):
        if self._signature_of(backends) != self._signature:
            self.on_backends_changed(backends)
        backend_id = maglev.lookup(self.ring, maglev.client_hash(client_ip))
        if backend_id == maglev.EMPTY:
            return None
        return self._by_id[backend_id]


SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (RoundRobin, WeightedRoundRobin, LeastConnections,
                              WeightedLeastConnections, Fastest, SourceHash, Maglev)
}


def make_scheduler(name: str, **options) -> Scheduler:
    """A new scheduler by its configuration name, e.g. make_scheduler("maglev", table_size=65537)."""
    try:
        cls = SCHEDULERS[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}") from None
    return cls(**options)
