"""Asking a running switch: `request("sw1", {"cmd": "show", "what": "fdb"})`."""
from __future__ import annotations

import glob
import json
import os
import socket
import time

from . import DEFAULT_DIR, socket_path


class ControlError(RuntimeError):
    """The switch answered, but with an error."""


def request(name: str, command: dict, timeout: float = 5.0, directory: str = DEFAULT_DIR) -> dict | list:
    """Send one command to switch `name` and return its result.

    Raises OSError if no switch of that name answers, ControlError if it refuses the command.
    """
    path = socket_path(name, directory)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        _connect(sock, path, timeout)
        sock.sendall(json.dumps(command).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    if not chunks:
        raise ConnectionError(f"switch {name!r} closed the connection without answering")
    answer = json.loads(b"".join(chunks))
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "unknown error"))
    return answer["result"]


def stream(name: str, command: dict, timeout: float = 5.0, directory: str = DEFAULT_DIR):
    """Send a command whose answer keeps the connection open (`capture`): returns (result, socket, the bytes that
    came after the answer line).  The socket is blocking, without a timeout; the caller closes it.

    Raises as request() does."""
    path = socket_path(name, directory)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        _connect(sock, path, timeout)
        sock.sendall(json.dumps(command).encode() + b"\n")    # no shutdown: a closed side means "stop"
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        line, _, rest = data.partition(b"\n")
        if not line:
            raise ConnectionError(f"switch {name!r} closed the connection without answering")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ControlError(answer.get("error", "unknown error"))
        sock.settimeout(None)
        return answer["result"], sock, rest
    except BaseException:
        sock.close()
        raise


def _connect(sock: socket.socket, path: str, timeout: float) -> None:
    """A UNIX socket's connect fails at once with EAGAIN while the server's listen backlog is full (many
    clients at once): try again until `timeout`, as a blocking connect would wait."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{path}: the switch accepts no connection (too many clients waiting)") from None
            time.sleep(0.01)


def running_switches(directory: str = DEFAULT_DIR) -> list[str]:
    return sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(directory, "*.sock")))
