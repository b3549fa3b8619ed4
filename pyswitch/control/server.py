"""The switch's side of the control socket.

The server never blocks the forwarding loop: the listening socket is one of the
datapath's wake fds, and clients are read without waiting for them, each with
a deadline (clients.py).  Requests are small JSON objects; answers are {"ok", "result"|"error"}.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time

from . import socket_path
from .clients import ClientTable
from .socket_file import ControlSocketError, bind, is_socket, prepare_directory

log = logging.getLogger("pyswitch.control")


class ControlServer:
    def __init__(self, name: str, directory: str, handler, group: str | None = None):
        """handler(command: dict) -> result (JSON-able); raises ValueError for a bad command.

        The socket is 0600 (only this user, root, may connect), or 0660 and owned by `group` ([control]
        group); see socket_file.py.  Raises RuntimeError (ControlSocketError) when that cannot be done safely."""
        self.path = socket_path(name, directory)
        self.handler = handler
        self.clients = ClientTable(self._answer)
        prepare_directory(directory)
        self._refuse_if_running()
        self.sock = bind(self.path, group)
        self.sock.listen(16)
        self.sock.setblocking(False)

    def _refuse_if_running(self) -> None:
        if not os.path.lexists(self.path):
            return
        if not is_socket(self.path):
            raise ControlSocketError(f"{self.path} exists and is not a socket; remove it or pick another "
                                     f"control directory")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)  # left behind by a switch that died
            return
        finally:
            probe.close()
        raise RuntimeError(f"a switch is already running with control socket {self.path}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve_pending(self) -> None:
        """Accepts who is waiting and answers every client whose request is complete (control/clients.py:
        nobody is waited for)."""
        now = time.monotonic()
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                break
            except OSError:             # EMFILE and the like: the others are still served
                break
            self.clients.accept(conn, now)
        self.clients.serve(now)

    def stats(self) -> dict:
        return {f"control_{key}": value for key, value in self.clients.counters.items()}

    def _answer(self, data: bytes) -> dict:
        try:
            command = json.loads(data)
            if not isinstance(command, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as exc:       # UnicodeDecodeError is one
            return {"ok": False, "error": f"bad request: {exc}"}
        except RecursionError:          # "[[[[..." nested deeper than the parser goes
            return {"ok": False, "error": "bad request: nested too deeply"}
        try:
            return {"ok": True, "result": self.handler(command)}
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug in a handler must not take the switch down
            log.exception("control command %r failed", command)
            return {"ok": False, "error": f"internal error: {exc}"}

    def close(self) -> None:
        self.clients.close()
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
