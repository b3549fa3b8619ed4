"""The event log: the switch's state changes, kept in a bounded ring and written to the log.

A counter says how much traffic passed; an event says what changed and when: a port's link went down, a MAC
moved, a backend failed its health check, the HA pair changed hands, a table filled up, the config was
reloaded.  Each event is the time (ISO-8601, UTC), a kind from KINDS and a few fields, all JSON values.

    events.emit("backend_down", vip="web", backend="192.0.2.11:8080", reason="timeout")

emit() does two things:

    ring   the latest `size` events, for `pyswitch show events`; the oldest leave when it is full, counted in
           `dropped`, so a flapping link costs a bounded amount of memory however long it flaps
    log    one line through the logger "pyswitch.events": readable text by default, or a JSON object per line
           with `pyswitch run --log-json` (pyswitch/log_json.py reads the event from the record)

Events come from where the change is made, and each hook runs once per state change.  Where a change can
repeat at packet rate (a MAC flapping between two ports in a loop), the hook goes through a Throttle: a token
bucket per hook, the events it holds back counted and reported in the next one (`suppressed`).  Tables
filling up are edge-triggered instead (pyswitch/table_watch.py).
"""
from __future__ import annotations

import datetime
import logging
from collections import deque

from .pipeline.rate_limit import TokenBucket

log = logging.getLogger("pyswitch.events")

RING_SIZE = 1024            # `show events` keeps this many of the latest

# Every kind an event may have, and what it means: emit() refuses any other, so a typo in a hook fails in the
# tests instead of writing events nobody filters for.
KINDS = {
    "port_down": "a port's interface went down or disappeared",
    "port_up": "a port's interface came up again, or came back and was reattached",
    "mac_move": "a MAC address was seen on another port than the one it was learned on",
    "backend_up": "a backend takes new connections again (health check or operator)",
    "backend_down": "a backend failed its health check, or the operator took it down",
    "backend_drain": "the operator drains a backend: no new connections, open ones continue",
    "backend_removed": "a reload removed a backend: drained, no longer probed",
    "ha_transition": "this instance's VRRP state changed (init, backup, master, fault)",
    "table_full": "a table reached its bound, or refused or evicted entries to make room",
    "table_free": "a full table has room again (below 90% and nothing refused for a tick)",
    "config_reload": "a reload applied the config file",
    "config_reload_refused": "a reload was refused; the running config stays",
    "capture_start": "`pyswitch capture` started copying a port's frames",
    "capture_end": "a capture ended: its count reached, its client gone, its port gone, or the switch stopping",
}

_JSON_SCALARS = (str, int, float, bool, type(None))


def utc_now() -> str:
    """The wall clock as ISO-8601 UTC with milliseconds: '2026-12-01T14:30:00.123Z'."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_value(value):
    """Fields are for JSON: scalars stay, lists and tuples become lists, anything else (an address, a path)
    its text."""
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return str(value)


def describe(event: dict) -> str:
    """The readable form of an event's fields: 'vip=web backend=192.0.2.11:8080 reason=timeout'; a list's items
    joined by '; ' (a reload's changes)."""
    return " ".join(f"{key}={_text(value)}" for key, value in event["fields"].items())


def _text(value) -> str:
    if isinstance(value, list):
        return "; ".join(map(str, value)) if value else "[]"
    return str(value)


class EventLog:
    def __init__(self, size: int = RING_SIZE):
        if size < 1:
            raise ValueError(f"EventLog size: must be at least 1, got {size}")
        self.ring: deque[dict] = deque(maxlen=size)
        self.seq = 0                # events emitted, ever: the last one's number
        self.dropped = 0            # events the ring let go to make room
        self.by_kind: dict[str, int] = {}

    def emit(self, kind: str, **fields) -> dict:
        """Records one state change and logs it; returns the event (seq, time, kind, fields)."""
        if kind not in KINDS:
            raise ValueError(f"event kind {kind!r} is unknown (known: {', '.join(KINDS)})")
        self.seq += 1
        event = {"seq": self.seq, "time": utc_now(), "kind": kind,
                 "fields": {key: _json_value(value) for key, value in fields.items()}}
        if len(self.ring) == self.ring.maxlen:
            self.dropped += 1
        self.ring.append(event)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        # The record carries the event itself: the JSON formatter writes it whole, the text one the message.
        log.info("event %s %s", kind, describe(event), extra={"event": event})
        return event

    def recent(self) -> list[dict]:
        """The ring, oldest first (copies: a caller may change them)."""
        return [{**event, "fields": dict(event["fields"])} for event in self.ring]

    def stats(self) -> dict:
        return {"events_total": self.seq, "events_dropped": self.dropped, "events_kept": len(self.ring),
                "events_max": self.ring.maxlen}


class Throttle:
    """At most `rate` events a second from one hook (a burst of `burst`); the ones held back are counted, in
    total (`suppressed_total`) and in the next event emitted (its field `suppressed`)."""

    def __init__(self, rate: float, burst: float):
        self.bucket = TokenBucket(rate, burst)
        self.suppressed = 0             # held back since the last event emitted
        self.suppressed_total = 0

    def emit(self, events: EventLog, now: float, kind: str, **fields) -> dict | None:
        if not self.bucket.allow(now):
            self.suppressed += 1
            self.suppressed_total += 1
            return None
        if self.suppressed:
            fields["suppressed"] = self.suppressed
            self.suppressed = 0
        return events.emit(kind, **fields)
