"""The VRRPv3 state machine of RFC 5798 section 6.4, without I/O and without a clock of its own.

Every method takes the current time `now` (float seconds, any monotonic origin) and returns the actions the
caller must carry out, in order: send an advertisement, take over the virtual addresses, or give them up.
The caller also asks `next_deadline()` how long it may sleep, and calls `timers(now)` when it wakes.  A test
can so drive two routers with a fake clock and deliver one's adverts to the other by hand.

Timers (section 6.1, 6.4):

    Skew_Time            = ((256 - Priority) * Master_Adver_Interval) / 256
    Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time

A backup that hears no advertisement for Master_Down_Interval becomes master.  The skew makes the backup of
highest priority time out first, so that it alone takes over.  Master_Adver_Interval is learned from the
master's adverts (section 6.4.2), so a backup follows the master's interval rather than its own.  A master that
resigns sends priority 0: backups then time out after Skew_Time alone, a fraction of one interval.

Election (6.4.2, 6.4.3): a backup accepts an advert, and stays backup, if it does not preempt or the advert's
priority is at least its own; with preemption on, it discards lower-priority adverts, its timer runs out and it
takes over.  A master steps down for a higher priority, or for an equal one from a higher primary address
(compared as unsigned integers: byte strings of one length compare alike).  Two masters (after a partition
heals) thus agree within one advertisement interval: the first advert each hears from the other settles it.
The owner of the addresses (priority 255) always preempts, whatever its Preempt_Mode (section 6.1).

Beyond the RFC, for a load balancer with connection sync:
  * fault: a tracked port is down, so this router cannot serve.  A master resigns (priority 0) and the router
    ignores adverts until the port returns; it then starts over as a backup.
  * release: an operator hands over for maintenance.  The master resigns and stays backup without preempting,
    until it becomes master again through its timer (the peer failed).
  * hold_preempt: the caller keeps a backup from preempting until a time, say until connection state has been
    synced from the master, without delaying a takeover from a master that is gone.
"""
from __future__ import annotations

from dataclasses import dataclass

INIT, BACKUP, MASTER, FAULT = "init", "backup", "master", "fault"
OWNER_PRIORITY = 255        # the router that owns the virtual addresses (RFC 5798 6.1)
RESIGN_PRIORITY = 0         # "I stop being master": backups take over after Skew_Time (RFC 5798 6.4.3)


@dataclass(frozen=True)
class SendAdvert:
    """Send an advertisement now, with this priority (0 to resign, else the router's own)."""

    priority: int


@dataclass(frozen=True)
class BecomeMaster:
    """Take the virtual addresses (answer for them) and send gratuitous ARPs."""


@dataclass(frozen=True)
class BecomeBackup:
    """Stop serving the virtual addresses.  Also what a master turning fault or init gets."""


Action = SendAdvert | BecomeMaster | BecomeBackup


class Vrrp:
    """One router of one virtual router group (one VRID).  The caller checks VRIDs and packets."""

    def __init__(self, priority: int, advert_interval_s: float, preempt: bool, primary_address: bytes):
        if not 1 <= priority <= OWNER_PRIORITY:
            raise ValueError(f"priority {priority} is not in 1..{OWNER_PRIORITY}")
        if not advert_interval_s > 0:
            raise ValueError(f"advertisement interval {advert_interval_s} s is not positive")
        self.priority = priority
        self.advert_interval_s = advert_interval_s
        self.preempt = preempt
        self.primary_address = bytes(primary_address)
        self.state = INIT
        self.master: bytes | None = None
        self.last_transition: float | None = None
        self.transitions = 0
        self.master_adver_interval_s = advert_interval_s
        self.released = False
        self.preempt_hold_until = float("-inf")
        self._master_down_at: float | None = None      # Master_Down_Timer, armed in backup only
        self._adver_at: float | None = None            # Adver_Timer, armed in master only

    # --- derived timers (RFC 5798 6.1) ---

    @property
    def skew_time_s(self) -> float:
        return ((256 - self.priority) * self.master_adver_interval_s) / 256

    @property
    def master_down_interval_s(self) -> float:
        return 3 * self.master_adver_interval_s + self.skew_time_s

    def next_deadline(self) -> float | None:
        """When `timers` has something to do next, or None if no timer runs (init, fault)."""
        if self.state == BACKUP:
            return self._master_down_at
        if self.state == MASTER:
            return self._adver_at
        return None

    # --- events ---

    def start(self, now: float) -> list[Action]:
        """Leave init (6.4.1): the owner becomes master at once, any other router backup.  No-op otherwise."""
        if self.state != INIT:
            return []
        self.released = False
        if self.priority == OWNER_PRIORITY:
            return self._become_master(now)
        self._become_backup(now)
        return []

    def receive(self, advert_priority: int, advert_interval_s: float, src: bytes, now: float) -> list[Action]:
        """An advertisement from another router of this group, sent from primary address `src`."""
        if not 0 <= advert_priority <= 255:
            raise ValueError(f"advert priority {advert_priority} is not in 0..255")
        if not advert_interval_s > 0:
            raise ValueError(f"advert interval {advert_interval_s} s is not positive")
        src = bytes(src)
        if self.state == BACKUP:
            return self._receive_as_backup(advert_priority, advert_interval_s, src, now)
        if self.state == MASTER:
            return self._receive_as_master(advert_priority, advert_interval_s, src, now)
        return []       # init and fault take no part in the election

    def timers(self, now: float) -> list[Action]:
        """Run the timers that expired by `now`."""
        if self.state == BACKUP and self._master_down_at is not None and now >= self._master_down_at:
            return self._become_master(now)
        if self.state == MASTER and self._adver_at is not None and now >= self._adver_at:
            # Re-armed from now, not from the deadline (6.4.3 "reset the Adver_Timer"): a caller that woke late
            # must not send a burst to catch up.
            self._adver_at = now + self.advert_interval_s
            return [SendAdvert(self.priority)]
        return []

    def set_fault(self, fault: bool, now: float) -> list[Action]:
        """A tracked port went down (True) or came back (False).  No-op if already in that condition.

        A router still in init goes to fault too, so that a port down before start() is not forgotten: such a
        router starts (as backup) when the port comes back.
        """
        if fault == (self.state == FAULT):
            return []
        if not fault:
            self._become_backup(now)
            return []
        actions = self._resign() if self.state == MASTER else []
        self._enter(FAULT, now)
        self.master = None
        return actions

    def release(self, now: float) -> list[Action]:
        """Graceful handover: a master resigns and does not preempt again until its timer makes it master."""
        if self.state != MASTER:
            return []
        actions = self._resign()
        self._become_backup(now)
        self.released = True
        return actions

    def shutdown(self, now: float) -> list[Action]:
        """Back to init; a master first resigns (6.4.3), so that backups take over after Skew_Time."""
        if self.state == INIT:
            return []
        actions = self._resign() if self.state == MASTER else []
        self._enter(INIT, now)
        self.master = None
        return actions

    def hold_preempt(self, until: float) -> None:
        """Do not preempt a lower-priority master before `until` (a takeover from a silent master still runs)."""
        self.preempt_hold_until = until

    # --- the rules ---

    def _preempting(self, now: float) -> bool:
        return (self.preempt or self.priority == OWNER_PRIORITY) and not self.released \
            and now >= self.preempt_hold_until

    def _receive_as_backup(self, advert_priority: int, advert_interval_s: float, src: bytes,
                           now: float) -> list[Action]:
        if advert_priority == RESIGN_PRIORITY:
            # The master resigns: take over after Skew_Time, so the highest-priority backup wins the race.
            self._master_down_at = now + self.skew_time_s
            self.master = None
            return []
        if not self._preempting(now) or advert_priority >= self.priority:
            self.master_adver_interval_s = advert_interval_s
            self._master_down_at = now + self.master_down_interval_s
            self.master = src
        # Else discard: the timer runs out and this router preempts the lower-priority master.
        return []

    def _receive_as_master(self, advert_priority: int, advert_interval_s: float, src: bytes,
                           now: float) -> list[Action]:
        if advert_priority == RESIGN_PRIORITY:
            # Another master resigns (so there were two): advertise at once, before the backups time out.
            self._adver_at = now + self.advert_interval_s
            return [SendAdvert(self.priority)]
        if advert_priority > self.priority or (advert_priority == self.priority and src > self.primary_address):
            self.master_adver_interval_s = advert_interval_s
            self._become_backup(now, learned=True)
            self.master = src
            return [BecomeBackup()]
        return []

    # --- transitions ---

    def _enter(self, state: str, now: float) -> None:
        if state != self.state:
            self.state = state
            self.transitions += 1
            self.last_transition = now
        self._master_down_at = self._adver_at = None

    def _become_master(self, now: float) -> list[Action]:
        self._enter(MASTER, now)
        self._adver_at = now + self.advert_interval_s
        self.master = self.primary_address
        self.released = False
        return [SendAdvert(self.priority), BecomeMaster()]

    def _become_backup(self, now: float, learned: bool = False) -> None:
        # Master_Adver_Interval starts from our own interval (6.4.1) unless it was just learned from an advert.
        if not learned:
            self.master_adver_interval_s = self.advert_interval_s
        self._enter(BACKUP, now)
        self._master_down_at = now + self.master_down_interval_s
        self.master = None

    def _resign(self) -> list[Action]:
        return [SendAdvert(RESIGN_PRIORITY), BecomeBackup()]
