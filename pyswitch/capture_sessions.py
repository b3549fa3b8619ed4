"""Live captures on a running switch: `pyswitch capture` asks through the control socket, and the answer's
connection stays open to carry the copies (capture_wire.py).

Each session holds one of the datapath's capture slots (consts.MAX_CAPTURES) and one client socket.  The loop
reads the datapath's copies once per turn (`pump`) and writes them without blocking; a client that reads too
slowly has at most MAX_BUFFERED bytes waiting, and the copies beyond are dropped and counted, never waited for.
A session ends when its client goes away, its count is reached, its port's interface goes away, or the switch
stops; its last record says which, with its counters.
"""
from __future__ import annotations

import logging
import socket

from . import consts
from .capture_wire import end_record, frame_record
from .control.clients import Handover
from .refpath import bpf

log = logging.getLogger("pyswitch")

MAX_BUFFERED = 4 << 20          # bytes waiting for one slow client before its copies are dropped
DIRECTIONS = {"in": consts.TAP_IN, "out": consts.TAP_OUT, "both": consts.TAP_IN | consts.TAP_OUT}
MAX_FILTER_INSNS = 4096         # PS_BPF_MAXINSNS


class Session:
    def __init__(self, slot: int, port_no: int, port_name: str, count: int):
        self.slot = slot
        self.port_no = port_no
        self.port_name = port_name
        self.count = count              # frames to send, 0: until stopped
        self.sock: socket.socket | None = None
        self.out = bytearray()          # records not yet written
        self.sent = 0                   # frames handed to the socket's buffer
        self.dropped_slow = 0           # frames dropped because the client did not keep up

    def counters(self, dp) -> dict:
        captured, dropped = dp.capture_counts(self.slot)
        return {"captured": captured, "dropped_by_switch": dropped, "dropped_slow_reader": self.dropped_slow,
                "sent": self.sent}


class CaptureSessions:
    def __init__(self, dp, port_numbers: dict[str, int], port_attached, events=None):
        """port_numbers: config name -> port number; port_attached(port_no): whether it is attached now; events:
        the switch's EventLog (capture_start, capture_end), or None."""
        self.dp = dp
        self.events = events
        self.port_numbers = port_numbers
        self.port_attached = port_attached
        self.sessions: dict[int, Session] = {}      # slot -> session
        self.counters = {"captures": 0, "refused": 0}

    @property
    def active(self) -> bool:
        return bool(self.sessions)

    def start(self, command: dict) -> Handover:
        """The control socket's "capture" command: checks it, takes a slot, starts the datapath's capture, and
        answers with a Handover so that the client's connection stays open for the copies."""
        try:
            session, directions, snaplen, program = self._parse(command)
            self.dp.capture_add(session.slot, session.port_no, directions, snaplen, program)
        except ValueError:
            self.counters["refused"] += 1
            raise
        self.sessions[session.slot] = session
        self.counters["captures"] += 1
        self._event("capture_start", port=session.port_name, slot=session.slot,
                    direction=command.get("direction", "both"), filter=len(program))
        answer = {"port": session.port_name, "slot": session.slot, "snaplen": snaplen,
                  "direction": command.get("direction", "both")}
        return Handover(answer, lambda sock: self._attach(session, sock))

    def _parse(self, command: dict):
        port = command.get("port")
        if port not in self.port_numbers:
            raise ValueError(f"capture: no port {port!r} (ports: {', '.join(self.port_numbers)})")
        port_no = self.port_numbers[port]
        if not self.port_attached(port_no):
            raise ValueError(f"capture: port {port}'s interface is gone; capture once it is back")
        direction = command.get("direction", "both")
        if direction not in DIRECTIONS:
            raise ValueError(f"capture: direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        snaplen = command.get("snaplen", consts.CAPTURE_MAX_SNAPLEN)
        if isinstance(snaplen, bool) or not isinstance(snaplen, int) or not 0 < snaplen <= consts.CAPTURE_MAX_SNAPLEN:
            raise ValueError(f"capture: snaplen must be 1..{consts.CAPTURE_MAX_SNAPLEN}, got {snaplen!r}")
        count = command.get("count", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"capture: count must be a whole number >= 0, got {count!r}")
        program = command.get("filter") or []
        if not isinstance(program, list) or len(program) > MAX_FILTER_INSNS or not all(
                isinstance(i, list) and len(i) == 4 and all(isinstance(v, int) and not isinstance(v, bool)
                                                            for v in i) for i in program):
            raise ValueError("capture: filter must be a list of at most 4096 [code, jt, jf, k] instructions "
                             "(pyswitch capture compiles the expression)")
        free = [s for s in range(consts.MAX_CAPTURES) if s not in self.sessions]
        if not free:
            raise ValueError(f"capture: {consts.MAX_CAPTURES} captures are running; stop one first")
        try:
            program = [tuple(i) for i in program]
            if program:
                bpf.check(program)              # the twin's words say which instruction is wrong
        except ValueError as exc:
            raise ValueError(f"capture: the filter is refused: {exc}") from None
        return Session(free[0], port_no, port, count), DIRECTIONS[direction], snaplen, program

    def _attach(self, session: Session, sock: socket.socket | None) -> None:
        if sock is None:                # the answer did not get out: the client is gone already
            self.dp.capture_del(session.slot)
            del self.sessions[session.slot]
            return
        sock.setblocking(False)
        session.sock = sock

    def pump(self) -> None:
        """Hands this turn's copies to their sessions and writes what each client can take."""
        if not self.sessions:
            return
        for record in self.dp.capture_take():
            session = self.sessions.get(record.capture)
            if session is None or session.sock is None:
                continue                # a capture stopped since the copy was made
            if session.count and session.sent >= session.count:
                continue
            if len(session.out) > MAX_BUFFERED:
                session.dropped_slow += 1
                continue
            session.out += frame_record(record.direction, record.wire_len, record.ts_ns, record.data)
            session.sent += 1
        for session in list(self.sessions.values()):
            if session.sock is None:
                continue
            if not self.port_attached(session.port_no):
                self._end(session, f"port {session.port_name}'s interface went away")
            elif session.count and session.sent >= session.count:
                self._end(session, f"{session.count} frames captured")
            elif not self._write(session) or _closed(session.sock):
                self._end(session, "the client went away", tell=False)

    def _write(self, session: Session) -> bool:
        """Writes what the socket takes now; False if the client is gone."""
        try:
            while session.out:
                sent = session.sock.send(session.out)
                del session.out[:sent]
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def _end(self, session: Session, reason: str, tell: bool = True) -> None:
        self.dp.capture_del(session.slot)
        counters = session.counters(self.dp)
        self._event("capture_end", port=session.port_name, slot=session.slot, reason=reason, **counters)
        if tell:
            session.out += end_record(reason, counters)
            session.sock.settimeout(1.0)        # the last records get a second to leave, then it is closed
            try:
                session.sock.sendall(session.out)
            except OSError:
                pass
        session.sock.close()
        del self.sessions[session.slot]

    def _event(self, kind: str, **fields) -> None:
        if self.events is not None:
            self.events.emit(kind, **fields)
        else:
            log.info("%s %s", kind, " ".join(f"{k}={v}" for k, v in fields.items()))

    def close(self, reason: str = "the switch stops") -> None:
        for session in list(self.sessions.values()):
            if session.sock is None:
                self.dp.capture_del(session.slot)
                del self.sessions[session.slot]
            else:
                self._end(session, reason)

    def stats(self) -> dict:
        """For `show stats` (and the metrics: captures is a gauge, the others counters)."""
        return {"captures": len(self.sessions), "captures_started": self.counters["captures"],
                "captures_refused": self.counters["refused"]}

    def show(self) -> list[dict]:
        return [{"slot": s.slot, "port": s.port_name, "count": s.count, **s.counters(self.dp)}
                for s in self.sessions.values()]


def _closed(sock: socket.socket) -> bool:
    """The client never sends after its request: a readable socket means it closed (or sent junk: the same)."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
