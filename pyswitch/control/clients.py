"""The control socket's clients while their requests arrive: read without ever blocking the forwarding loop.

A request is one JSON object that ends with a newline or with the client's end of the stream.  A client that
has not finished its request stays here, non-blocking, and is read again on the loop's next turn, so a client
that connects and sends nothing, or sends a byte at a time, costs the switch nothing but a slot: after
CLIENT_DEADLINE_S it gets an error and is closed.  At most MAX_CLIENTS wait at once; the next one is told the
switch is busy and closed (and counted).  A request longer than MAX_REQUEST is refused as soon as it is, without
reading the rest.

The loop does not sleep on a waiting client's socket unless it is given `watch` (the datapath's add and del
wake fd): then the first MAX_WATCHED waiting clients wake it as soon as their request arrives, and the others are
read on the loop's next turn, which comes soon while any client waits (switch.py CONTROL_POLL_MS).

Answers are written by the caller once a request is complete, with ANSWER_BUDGET_S to get all of it out: a
client that asked but does not read its answer is dropped then, instead of holding the loop.
"""
from __future__ import annotations

import json
import select
import socket
import time

from . import MAX_REQUEST

CLIENT_DEADLINE_S = 0.5     # a client that has not sent a whole request by then is dropped
MAX_CLIENTS = 64            # clients waiting with an unfinished request at once
ANSWER_BUDGET_S = 1.0       # the longest one answer may take to leave (a client that does not read)
MAX_WATCHED = 4             # waiting clients whose sockets wake the loop (the datapath has 8 wake fds in all)
READ_SIZE = 65536


class Handover:
    """A command's result that keeps the connection: the answer line is sent as usual, then `take(sock)` gets
    the socket instead of it being closed (`pyswitch capture` streams its copies over it)."""
    __slots__ = ("result", "take")

    def __init__(self, result, take):
        self.result = result
        self.take = take


class PendingClient:
    __slots__ = ("sock", "data", "deadline", "watched")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.watched = False        # its socket is one of the loop's wake fds
        self.data = b""             # what the client sent so far
        self.deadline = deadline    # monotonic time by which the request must be complete

    def read(self) -> bool:
        """Takes what the client sent since; True once the request is complete (or too long, or the client
        closed its side)."""
        while True:
            try:
                chunk = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not chunk:
                return True
            self.data += chunk
            if self.data.endswith(b"\n") or len(self.data) > MAX_REQUEST:
                return True


class ClientTable:
    def __init__(self, answer):
        """answer(request bytes) -> dict: the JSON object to send back."""
        self.answer = answer
        self.pending: list[PendingClient] = []
        self.watch = None           # (add_fd, del_fd): make a waiting client's socket wake the loop
        self.counters = {"clients": 0, "refused_busy": 0, "timed_out": 0, "too_large": 0, "answer_dropped": 0}

    def accept(self, sock: socket.socket, now: float) -> None:
        self.counters["clients"] += 1
        if len(self.pending) >= MAX_CLIENTS:
            self.counters["refused_busy"] += 1
            self._reply(sock, {"ok": False, "error": f"busy: {MAX_CLIENTS} clients are waiting; try again"})
            return
        sock.setblocking(False)
        client = PendingClient(sock, now + CLIENT_DEADLINE_S)
        if self.watch is not None and sum(c.watched for c in self.pending) < MAX_WATCHED:
            try:
                self.watch[0](sock.fileno())
                client.watched = True
            except OSError:         # no wake fd left: read on the next turn instead
                pass
        self.pending.append(client)

    def serve(self, now: float) -> None:
        """Answers every client whose request is complete and drops those past their deadline."""
        waiting = []
        for client in self.pending:
            complete = client.read()
            if not complete and now < client.deadline:
                waiting.append(client)
                continue
            self._unwatch(client)
            if not complete:
                self.counters["timed_out"] += 1
                self._reply(client.sock, {"ok": False, "error": f"no complete request within {CLIENT_DEADLINE_S} s "
                                                                "(one JSON object, then a newline or end of stream)"})
            elif len(client.data) > MAX_REQUEST:
                self.counters["too_large"] += 1
                self._reply(client.sock, {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"})
            else:
                answer = self.answer(client.data)
                handover = answer.get("result")
                if isinstance(handover, Handover):
                    if self._reply(client.sock, {"ok": True, "result": handover.result}, close=False):
                        handover.take(client.sock)
                    else:
                        handover.take(None)
                else:
                    self._reply(client.sock, answer)
        self.pending = waiting

    def _unwatch(self, client: PendingClient) -> None:
        """Before the socket closes: a closed fd's number is soon another file's."""
        if client.watched:
            client.watched = False
            self.watch[1](client.sock.fileno())

    def _reply(self, sock: socket.socket, answer: dict, close: bool = True) -> bool:
        """Sends the answer within ANSWER_BUDGET_S and closes the connection (unless not `close` and the answer
        got out); returns whether it got out."""
        data = memoryview(json.dumps(answer).encode() + b"\n")
        deadline = time.monotonic() + ANSWER_BUDGET_S
        try:
            sock.setblocking(False)
            while data:
                try:
                    data = data[sock.send(data):]
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0 or not _writable(sock, left):
                        self.counters["answer_dropped"] += 1
                        break
        except OSError:
            pass                    # the client went away: nothing to tell it
        sent = not data
        if close or not sent:
            sock.close()
        return sent

    def close(self) -> None:
        for client in self.pending:
            self._unwatch(client)
            client.sock.close()
        self.pending = []


def _writable(sock: socket.socket, seconds: float) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(seconds * 1000))
