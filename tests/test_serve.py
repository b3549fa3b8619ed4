"""The datapath's serve loop (ps_dp_serve and its twin), C and Python alike: it forwards on its own while frames keep
coming, and hands control back to the slow path exactly when there is something for it: upcalls, connection events,
a readable wake fd, or the end of the timeout.
"""
import socket
import time

import pytest

from pyswitch import actions as A, consts, fastpath, refpath
from pyswitch.flowkey import FlowKey
from test_conntrack import BACKEND_SIDE, CLIENT_PORT, make_dp, tcp, udp
from test_refpath_datapath import FRAME
from test_ring import ring_of_one

PORT_MASK = FlowKey.mask_of("in_port")


@pytest.fixture(params=["c", "python"])
def impl(request):
    return fastpath if request.param == "c" else refpath


@pytest.fixture
def dp(impl):
    d = impl.Datapath(max_upcalls=16)
    for p in range(2):
        d.add_port(p, "memory")
    d.flow_put(FlowKey(in_port=0).pack(), PORT_MASK, 0, [A.output(1)], now_ms=0)
    yield d
    d.close()


def timed(call):
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def test_forwards_many_batches_in_one_call_until_the_timeout(dp):
    frames = 3 * consts.BATCH + 5
    for _ in range(frames):
        dp.inject(0, FRAME)
    taken, elapsed = timed(lambda: dp.serve(60))
    assert taken == frames
    assert len(dp.take(1)) == frames
    assert elapsed >= 0.055                 # nothing for the slow path: it stayed until the timeout


def test_returns_after_the_first_run_with_upcalls(dp):
    for _ in range(2 * consts.BATCH):
        dp.inject(0, FRAME)
    dp.inject(1, FRAME)                     # no flow on port 1: a miss
    taken, elapsed = timed(lambda: dp.serve(5000))
    assert elapsed < 1
    # One run: a batch from port 0, then the miss from port 1; the rest of port 0 waits for the next call.
    assert taken == consts.BATCH + 1
    (up,) = dp.upcalls()
    assert (up.in_port, up.reason, up.data) == (1, consts.UPCALL_MISS, FRAME)
    assert dp.serve(0) == consts.BATCH
    assert dp.upcalls() == []


def test_returns_when_a_wake_fd_is_readable(dp):
    r, w = socket.socketpair()
    try:
        dp.add_wake_fd(r.fileno())
        w.send(b"x")
        taken, elapsed = timed(lambda: dp.serve(5000))
        assert (taken, elapsed < 1) == (0, True)
    finally:
        dp.del_wake_fd(r.fileno())
        r.close()
        w.close()


def test_a_wake_fd_ends_a_loaded_serve_too(dp):
    """Under load the wake fds are looked at every millisecond, so `pyswitch show` is answered."""
    r, w = socket.socketpair()
    try:
        dp.add_wake_fd(r.fileno())
        for _ in range(4 * consts.BATCH):
            dp.inject(0, FRAME)
        w.send(b"x")
        _taken, elapsed = timed(lambda: dp.serve(5000))
        assert elapsed < 1
    finally:
        dp.del_wake_fd(r.fileno())
        r.close()
        w.close()


def test_idle_ports_sleep_until_the_timeout(dp):
    (taken, elapsed) = timed(lambda: dp.serve(40, spin_us=5000))
    assert taken == 0
    assert 0.035 <= elapsed < 1


def test_returns_after_a_run_that_queued_connection_events(impl):
    d = make_dp(impl)
    try:
        ring_of_one(d)
        d.inject(CLIENT_PORT, bytes(udp()))  # a first packet the ring schedules: no upcall, a CE_NEW event
        taken, elapsed = timed(lambda: d.serve(5000))
        assert (taken, elapsed < 1) == (1, True)
        assert d.upcalls() == []
        assert [e.kind for e in d.conn_events()] == [consts.CE_NEW]
        assert len(d.take(BACKEND_SIDE)) == 1
    finally:
        d.close()
