"""Port mirrors and live captures: the twin of csrc/tap.c and of the tap hooks in datapath.c.

Taps holds the rules (which ports mirror to which, which captures watch which port), CaptureBuffer the copies a
capture made until the slow path reads them.  The datapath asks `watch_in` / `watch_out` once per frame and
does nothing more when its port is not in them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .. import consts
from ..datapath_args import port_bitmap
from ..datapath_types import CaptureRecord
from . import bpf


@dataclass
class Capture:
    port_no: int
    directions: int
    snaplen: int
    program: tuple          # (code, jt, jf, k) instructions; empty: every frame


class Taps:
    def __init__(self):
        self.watch_in = 0                           # ports whose received frames are wanted (bitmap)
        self.watch_out = 0                          # ports whose sent frames are wanted
        self.mirror_in: dict[int, int] = {}         # source -> bitmap of the targets of what it receives
        self.mirror_out: dict[int, int] = {}        # source -> bitmap of the targets of what it sends
        self.captures: dict[int, Capture] = {}      # slot -> rule

    def mirror_set(self, port_no: int, to_on_in=(), to_on_out=()) -> None:
        to_in, to_out = port_bitmap(to_on_in), port_bitmap(to_on_out)
        targets = to_in | to_out
        bad = not 0 <= port_no < consts.MAX_PORTS or targets >> port_no & 1
        if not bad and targets:
            other_targets = other_sources = 0
            for p in set(self.mirror_in) | set(self.mirror_out):
                if p != port_no and self.mirror_in.get(p, 0) | self.mirror_out.get(p, 0):
                    other_targets |= self.mirror_in.get(p, 0) | self.mirror_out.get(p, 0)
                    other_sources |= 1 << p
            bad = other_targets >> port_no & 1 or targets & other_sources
        if bad:
            raise ValueError(f"mirror of port {port_no} to {sorted(to_on_in)} (in) and {sorted(to_on_out)} (out): "
                             "ports out of range, or a mirror's target that is a source or a source that is a target")
        self.mirror_in[port_no] = to_in
        self.mirror_out[port_no] = to_out
        self._rewatch()

    def capture_add(self, slot: int, port_no: int, directions: int, snaplen: int, program) -> None:
        program = tuple(tuple(i) for i in program)
        ok = (0 <= slot < consts.MAX_CAPTURES and 0 <= port_no < consts.MAX_PORTS and directions
              and not directions & ~(consts.TAP_IN | consts.TAP_OUT) and 0 < snaplen <= consts.CAPTURE_MAX_SNAPLEN)
        if ok and program:
            try:
                bpf.check(program)
            except ValueError:
                ok = False
        if not ok:
            raise ValueError(f"capture {slot} on port {port_no}: slot, port, directions {directions}, snaplen "
                             f"{snaplen} or the filter out of bounds")
        if slot in self.captures:
            raise OSError(16, f"capture slot {slot} is in use")     # EBUSY
        self.captures[slot] = Capture(port_no, directions, snaplen, program)
        self._rewatch()

    def capture_del(self, slot: int) -> bool:
        if self.captures.pop(slot, None) is None:
            return False
        self._rewatch()
        return True

    def port_gone(self, port_no: int) -> None:
        self.mirror_in.pop(port_no, None)
        self.mirror_out.pop(port_no, None)
        keep = ~(1 << port_no)
        for table in (self.mirror_in, self.mirror_out):
            for p in table:
                table[p] &= keep
        for slot in [s for s, c in self.captures.items() if c.port_no == port_no]:
            del self.captures[slot]
        self._rewatch()

    def slots(self, port_no: int, direction: int) -> list[int]:
        """The captures on `port_no` in `direction`, in slot order (the order C copies in)."""
        return [s for s, c in sorted(self.captures.items()) if c.port_no == port_no and c.directions & direction]

    def _rewatch(self) -> None:
        self.watch_in = self.watch_out = 0
        for p in range(consts.MAX_PORTS):
            if self.mirror_in.get(p) or self.slots(p, consts.TAP_IN):
                self.watch_in |= 1 << p
            if self.mirror_out.get(p) or self.slots(p, consts.TAP_OUT):
                self.watch_out |= 1 << p


class CaptureBuffer:
    """One datapath's copies, bounded as C's: PS_CAPTURE_MAX_RECORDS copies and PS_CAPTURE_ARENA bytes."""

    def __init__(self):
        self.records: list[CaptureRecord] = []
        self.used = 0
        self.captured = [0] * consts.MAX_CAPTURES
        self.dropped = [0] * consts.MAX_CAPTURES

    def copy(self, taps: Taps, direction: int, port_no: int, frame: bytes) -> None:
        now_ns = None
        for slot in taps.slots(port_no, direction):
            c = taps.captures[slot]
            length = bpf.run(c.program, frame) if c.program else 0xFFFFFFFF
            if not length:
                continue
            length = min(length, c.snaplen, len(frame))
            if len(self.records) == consts.CAPTURE_MAX_RECORDS or consts.CAPTURE_ARENA - self.used < length:
                self.dropped[slot] += 1
                continue
            if now_ns is None:
                now_ns = time.time_ns()
            self.records.append(CaptureRecord(slot, direction, port_no, len(frame), now_ns, bytes(frame[:length])))
            self.used += length
            self.captured[slot] += 1

    def take(self) -> list[CaptureRecord]:
        records, self.records, self.used = self.records, [], 0
        return records

    def reset_slot(self, slot: int) -> None:
        self.captured[slot] = self.dropped[slot] = 0

    @property
    def pressing(self) -> bool:
        return len(self.records) > consts.CAPTURE_MAX_RECORDS // 2 or self.used > consts.CAPTURE_ARENA // 2
