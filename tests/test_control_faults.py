"""The control server against hostile clients, without a switch: garbage, huge requests, clients that send
nothing or dribble, many at once.  Each gets a clear error or is dropped, and a good client is answered
meanwhile.  A thread drives the server as the switch's loop does."""
import threading
import time

import pytest

from control_clients import BAD_REQUESTS, exchange, idle_clients, slow_client
from pyswitch.control.clients import CLIENT_DEADLINE_S, MAX_CLIENTS
from pyswitch.control.server import ControlServer


@pytest.fixture
def server(tmp_path):
    def handler(command):
        if command.get("cmd") == "show":
            return {"answered": True}
        raise ValueError(f"unknown command {command.get('cmd')!r}")

    srv = ControlServer("t", str(tmp_path), handler)
    stop = threading.Event()
    steps = []

    def loop():
        while not stop.is_set():
            started = time.monotonic()
            srv.serve_pending()
            steps.append(time.monotonic() - started)
            time.sleep(0.002)

    thread = threading.Thread(target=loop)
    thread.start()
    srv.steps = steps
    yield srv
    stop.set()
    thread.join()
    srv.close()


GOOD = b'{"cmd": "show", "what": "stats"}\n'


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_a_bad_request_gets_a_clear_error(server, name):
    payload, says = BAD_REQUESTS[name]
    answer = exchange(server.path, payload)
    assert answer is not None and answer["ok"] is False, answer
    assert says in answer["error"], answer
    assert exchange(server.path, GOOD) == {"ok": True, "result": {"answered": True}}


def test_idle_clients_do_not_block_the_others(server):
    idle = idle_clients(server.path, 20)
    try:
        started = time.monotonic()
        assert exchange(server.path, GOOD)["ok"]
        assert time.monotonic() - started < CLIENT_DEADLINE_S, "a good client waited behind idle ones"
        time.sleep(CLIENT_DEADLINE_S + 0.3)
        for sock in idle:               # each idle one is told why, then closed
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            assert b"no complete request" in answer
    finally:
        for sock in idle:
            sock.close()
    assert max(server.steps) < 0.1, f"one loop turn took {max(server.steps):.3f} s"
    assert server.clients.counters["timed_out"] == 20


def test_a_client_that_dribbles_is_cut_off_at_the_deadline(server):
    started = time.monotonic()
    answer = slow_client(server.path)
    assert answer is not None and "no complete request" in answer["error"]
    assert time.monotonic() - started < 1.5
    assert max(server.steps) < 0.1


def test_beyond_max_clients_a_client_is_told_the_switch_is_busy(server):
    idle = idle_clients(server.path, MAX_CLIENTS)
    try:
        time.sleep(0.05)                # the loop has taken them all
        answer = exchange(server.path, GOOD)
        assert answer["ok"] is False and "busy" in answer["error"]
    finally:
        for sock in idle:
            sock.close()
    time.sleep(CLIENT_DEADLINE_S + 0.1)
    assert exchange(server.path, GOOD)["ok"], "served again once the waiting clients are gone"
    assert server.clients.counters["refused_busy"] >= 1


def test_a_client_that_never_reads_its_answer_is_dropped(tmp_path):
    srv = ControlServer("big", str(tmp_path), lambda command: "x" * (8 << 20))
    try:
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(srv.path)
            sock.sendall(GOOD)
            started = time.monotonic()
            srv.serve_pending()                 # answers: 8 MiB to a client that reads nothing
            took = time.monotonic() - started
        assert took < 3.0
        assert srv.clients.counters["answer_dropped"] == 1
    finally:
        srv.close()
