"""A load-balanced backend (a "real server"): where it is, its weight and state, and what was measured.

States:
    up      takes new connections (if its weight is above 0)
    drain   keeps its existing connections, takes no new ones (set by an operator)
    down    failed its health checks: takes no new connections
    removed left the config (a reload): like drain, and no longer probed nor shown once its connections end

Weight 0 drains as well: the connections it has continue, no scheduler gives it a new one.
"""
from __future__ import annotations

import ipaddress
import statistics
from collections import deque
from dataclasses import dataclass, field

STATES = ("up", "down", "drain", "removed")
RTT_SOURCES = ("conn", "probe")
RTT_ALPHA = 0.3             # weight of a new RTT sample in the EWMA: recent enough to follow a backend
                            # that slows down, smooth enough that one late SYN/ACK does not flip the choice
RTT_WINDOW = 5              # samples of one source the scheduler's figure is the median of: one or two late
                            # answers (a loaded host, a GC pause) do not move it, three of five do


@dataclass
class Backend:
    address: str                        # IP address as text ("10.0.0.2", "2001:db8::2")
    port: int                           # L4 port the backend listens on
    weight: int = 1                     # relative share of new connections; 0 drains
    state: str = "up"                   # up | down | drain | removed
    active_conns: int = 0               # connections open now, not closing (the caller counts, as IPVS's
                                        # activeconns: a connection that saw a FIN or RST no longer counts)
    total_conns: int = 0                # connections ever given to this backend
    rtt_ewma_ms: float | None = None    # smoothed response time over every sample; None until first measured
    probe_rtt_ms: float | None = None   # median of the last RTT_WINDOW health-check round trips: every
                                        # backend gets these alike
    conn_rtt_ms: float | None = None    # median of the last RTT_WINDOW SYN->SYN/ACKs: only backends that get
                                        # connections get these
    _samples: dict = field(default_factory=lambda: {s: deque(maxlen=RTT_WINDOW) for s in RTT_SOURCES},
                           init=False, repr=False, compare=False)
    packed: bytes = field(init=False, repr=False, compare=False)    # the address in network order, parsed once:
                                                                    # every new connection needs it

    def __post_init__(self):
        self.packed = ipaddress.ip_address(self.address).packed
        if self.state not in STATES:
            raise ValueError(f"backend state {self.state!r} is not one of {STATES}")
        if self.weight < 0:
            raise ValueError(f"backend weight {self.weight} is negative")
        if not 0 < self.port < 65536:
            raise ValueError(f"backend port {self.port} is not 1..65535")

    @property
    def key(self) -> tuple[str, int]:
        """(address, port): the identity that sorting and hashing use, the same on every instance."""
        return (self.address, self.port)

    @property
    def accepts_new(self) -> bool:
        return self.state == "up" and self.weight > 0

    def observe_rtt(self, ms: float, source: str = "conn") -> None:
        """Take one response-time sample: source "conn" (SYN->SYN/ACK) or "probe" (a health check's round trip).

        Each source keeps a figure of its own (the median of its last RTT_WINDOW samples) as well as the combined
        EWMA that `show vips` shows, because the two measure different things (a kernel's SYN/ACK against a
        whole HTTP exchange) and arrive at different rates: comparing one backend's SYN/ACKs with another's
        health checks would favour whichever got the cheaper kind.  A median, because a health check's round
        trip through a loaded switch has spikes that an average would carry for several probes.
        """
        if ms < 0:
            raise ValueError(f"response time {ms} ms is negative")
        if source not in RTT_SOURCES:
            raise ValueError(f"response-time source {source!r} is not one of {RTT_SOURCES}")
        self.rtt_ewma_ms = _ewma(self.rtt_ewma_ms, ms)
        samples = self._samples[source]
        samples.append(float(ms))
        median = statistics.median(samples)
        if source == "probe":
            self.probe_rtt_ms = median
        else:
            self.conn_rtt_ms = median

    def conn_opened(self) -> None:
        self.active_conns += 1
        self.total_conns += 1

    def conn_closed(self) -> None:
        if self.active_conns > 0:
            self.active_conns -= 1

    def conn_reopened(self) -> None:
        """A closing connection's tuple carries a new connection (the client reused its port)."""
        self.active_conns += 1


def _ewma(average: float | None, sample: float) -> float:
    return float(sample) if average is None else RTT_ALPHA * sample + (1.0 - RTT_ALPHA) * average
