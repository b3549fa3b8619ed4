"""One client connection the L7 engine holds, from its handshake until the splice or the switch's own answer
(pyswitch/l7/engine.py walks it through its states), and what `show conns` keeps of a spliced one."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from .. import consts
from ..datapath_types import ConnTuple

if TYPE_CHECKING:
    from .service import L7Service

VIP_WSCALE = 7                  # the window scale offered to clients until the VIP's backends have shown theirs
MASK32 = 0xFFFFFFFF

READING, CONNECTING, SENDING, INSERTING, CLOSING = "reading", "connecting", "sending", "inserting", "closing"
CLOSING_STATES = (consts.CS_FIN_WAIT, consts.CS_CLOSE)     # no longer counted as the backend's (IPVS)


@dataclass(eq=False)
class Session:
    """One client connection the switch holds, from its handshake until the splice (or the switch's answer)."""
    service: L7Service
    client: ConnTuple               # client -> VIP
    client_isn: int                 # the client's initial sequence number
    switch_isn: int                 # the cookie: the switch's initial sequence number toward the client
    mss: int                        # the client's MSS (from the cookie)
    wscale: Optional[int]           # the client's window scale, None without scaling
    sack: bool
    timestamps: bool                # the client sends timestamps (and so do we)
    wscale_told: int = VIP_WSCALE   # the window scale the switch offered the client: the backend's must be it
    client_tsval: int = 0           # the client's latest TSval
    switch_ts: int = 0              # the highest TSval the switch has sent the client
    client_window: int = 0          # the client's latest window field (its own scale)
    data: bytearray = field(default_factory=bytearray)
    state: str = READING
    deadline: float = 0.0           # READING: request_timeout_s from the first ACK; later: the next retry
    tries: int = 0
    pool: object = None             # VirtualService of the chosen pool
    backend: object = None
    rule: Optional[str] = None
    reply: Optional[ConnTuple] = None   # backend -> client, as the backend's segments arrive
    backend_isn: int = 0
    backend_tsval: Optional[int] = None
    backend_mss: int = 536
    answer: bytes = b""             # CLOSING: the 400/503 sent
    cookie_line: bytes = b""        # a Set-Cookie field for the first response (persistence insert), or nothing
    shift: Optional[tuple[int, int]] = None     # (backend ISN - switch ISN, timestamp shift): fixed at the splice
    inserted_end: Optional[int] = None          # INSERTING: the client's sequence number past the grown segment

    @property
    def next_seq(self) -> int:
        """The next sequence number expected from the client."""
        return (self.client_isn + 1 + len(self.data)) & MASK32


@dataclass(frozen=True)
class Bound:
    """What `show conns` tells of a spliced connection."""
    vip: str
    pool: str
    rule: Optional[str]
