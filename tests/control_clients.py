"""Hostile control-socket clients, shared by the unit and the integration tests: each sends one kind of bad
request to a UNIX socket and returns what came back (the parsed answer, or None if the switch closed)."""
import json
import os
import socket
import time

from pyswitch.control import MAX_REQUEST


def exchange(path, payload, timeout=5.0, shut=True):
    """Sends `payload` as one request and returns the parsed answer (None if the connection closed silently)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(payload)
            if shut:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass                # a too-large request may be refused before it is all sent
        return _answer(sock)


def _answer(sock):
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return json.loads(b"".join(chunks)) if chunks else None


BAD_REQUESTS = {
    # name: (payload, what the error must say)
    "random_bytes": (os.urandom(512) + b"\n", "bad request"),
    "invalid_json": (b'{"cmd": "show", "what": \n', "bad request"),
    "not_an_object": (b'["show", "stats"]\n', "a request is a JSON object"),
    "a_number": (b"42\n", "a request is a JSON object"),
    "unknown_command": (b'{"cmd": "explode"}\n', "unknown command"),
    "no_command": (b'{}\n', "unknown command"),
    "nested_deep": (b"[" * 60000 + b"\n", "bad request"),
    "too_large": (b'{"cmd": "show", "pad": "' + b"x" * (4 * MAX_REQUEST) + b'"}\n', "larger than"),
    "empty": (b"", "bad request"),
}


def idle_clients(path, count):
    """`count` connected clients that send nothing (the caller closes them)."""
    clients = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)              # blocking: waits for room in the listen backlog
        sock.settimeout(5.0)
        clients.append(sock)
    return clients


def slow_client(path, seconds=1.5):
    """Sends a valid request one byte every 0.1 s: it must be cut off at the deadline, not served for ever."""
    request = json.dumps({"cmd": "show", "what": "stats"}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)              # blocking: waits for room in the listen backlog
        sock.settimeout(5.0)
        end = time.monotonic() + seconds
        for byte in request:
            if time.monotonic() > end:
                break
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        return _answer(sock)
