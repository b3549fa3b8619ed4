"""The switch's side of the control socket.

The server never blocks the forwarding loop: the listening socket is one of the
datapath's wake fds, and a connection is served in the loop with a short
deadline.  Requests are small JSON objects; answers are {"ok", "result"|"error"}.
"""
from __future__ import annotations

import json
import logging
import os
import socket

from . import MAX_REQUEST, socket_path
from .socket_file import ControlSocketError, bind, is_socket, prepare_directory

log = logging.getLogger("pyswitch.control")
CLIENT_DEADLINE_S = 0.5     # a client that sends nothing for this long is dropped


class ControlServer:
    def __init__(self, name: str, directory: str, handler, group: str | None = None):
        """handler(command: dict) -> result (JSON-able); raises ValueError for a bad command.

        The socket is 0600 (only this user, root, may connect), or 0660 and owned by `group` ([control]
        group); see socket_file.py.  Raises RuntimeError (ControlSocketError) when that cannot be done safely."""
        self.path = socket_path(name, directory)
        self.handler = handler
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
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_DEADLINE_S)
        data = b""
        try:
            while len(data) <= MAX_REQUEST and not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return
        if len(data) > MAX_REQUEST:
            answer = {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"}
        else:
            answer = self._answer(data)
        try:
            conn.settimeout(2.0)
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass

    def _answer(self, data: bytes) -> dict:
        try:
            command = json.loads(data)
            if not isinstance(command, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        try:
            return {"ok": True, "result": self.handler(command)}
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug in a handler must not take the switch down
            log.exception("control command %r failed", command)
            return {"ok": False, "error": f"internal error: {exc}"}

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
