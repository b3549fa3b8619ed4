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
from dataclasses import dataclass, field

STATES = ("up", "down", "drain", "removed")
RTT_SOURCES = ("conn", "probe")
RTT_ALPHA = 0.3             # weight of a new RTT sample in the EWMA: recent enough to follow a backend
                            # that slows down, smooth enough that one late SYN/ACK does not flip the choice


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
    probe_rtt_ms: float | None = None   # smoothed health-check round trip: every backend gets these alike
    conn_rtt_ms: float | None = None    # smoothed SYN->SYN/ACK: only backends that get connections get these
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
        """Fold one response-time sample into the EWMAs: source "conn" (SYN->SYN/ACK) or "probe" (a health
        check's round trip).

        Each source keeps an average of its own as well as the combined one, because the two measure different
        things (a kernel's SYN/ACK against a whole HTTP exchange) and arrive at different rates: comparing one
        backend's SYN/ACKs with another's health checks would favour whichever got the cheaper kind.  The
        first sample is taken as is, so a new backend is not compared against a made-up start value.
        """
        if ms < 0:
            raise ValueError(f"response time {ms} ms is negative")
        if source not in RTT_SOURCES:
            raise ValueError(f"response-time source {source!r} is not one of {RTT_SOURCES}")
        self.rtt_ewma_ms = _ewma(self.rtt_ewma_ms, ms)
        if source == "probe":
            self.probe_rtt_ms = _ewma(self.probe_rtt_ms, ms)
        else:
            self.conn_rtt_ms = _ewma(self.conn_rtt_ms, ms)

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
