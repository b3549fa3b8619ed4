"""A token bucket: how the slow path keeps one port's storm of a kind of packet (ARP) from taking all of
its time.

`rate` tokens a second accrue up to `burst`; each packet takes one or is refused.  The clock is the
caller's (the switch's monotonic `now`), so tests drive it by hand.
"""
from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float = 0.0):
        self.rate = rate
        self.burst = burst
        self.tokens = burst                 # a port starts with a full bucket
        self.last = now

    def allow(self, now: float) -> bool:
        """Takes a token if there is one at `now`; returns whether it did."""
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
