"""Datapath workers (csrc/workers.c, docs/DATAPATH.md "Workers") with memory ports: N C threads share each port, the
tables are shared, the slow path sees one datapath.

A memory port has one queue per worker; inject() puts a frame on the side its symmetric flow hash picks (as the
kernel's PACKET_FANOUT_HASH does for an AF_PACKET port) or on a worker named by the test.  run() steps every worker
once in the caller's thread; serve() lets the threads forward.
"""
import functools
import os
import socket
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from pyswitch import actions as A, consts, fastpath
from pyswitch.flowkey import FlowKey
from test_conntrack import (BACKEND, BACKEND_PORT, BACKEND_SIDE, CLIENT, CLIENT_PORT, VIP, make_dp, nat_conn,
                            reply_tcp, tcp, udp)
from test_ring import ring_of_one

PORT_MASK = FlowKey.mask_of("in_port")


class TwoWorkers:
    """What test_conntrack.make_dp() needs of an implementation: a C datapath with two workers."""
    Datapath = functools.partial(fastpath.Datapath, workers=2)


@functools.cache
def _udp_template(src, dst):
    # UDP checksum 0 ("none"), so that a frame stays valid when its source port is patched.
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst)
                 / UDP(sport=0, dport=9, chksum=0) / b"x")


def udp_frame(sport, src="192.0.2.1", dst="192.0.2.2"):
    """A UDP frame from `sport`; built from a template (scapy takes a millisecond per frame)."""
    frame = bytearray(_udp_template(src, dst))
    frame[34:36] = sport.to_bytes(2, "big")
    return bytes(frame)


def threads():
    """Names of this process's threads."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/comm") as f:
            names.append(f.read().strip())
    return names


@pytest.fixture
def dp():
    d = fastpath.Datapath(max_upcalls=16, workers=2)
    for p in range(2):
        d.add_port(p, "memory")
    d.flow_put(FlowKey(in_port=0).pack(), PORT_MASK, 0, [A.output(1)], now_ms=0)
    yield d
    d.close()


def test_workers_are_threads_that_close_joins():
    d = fastpath.Datapath(workers=3)
    assert d.workers == 3
    assert sorted(n for n in threads() if n.startswith("psw-worker")) == ["psw-worker-0", "psw-worker-1",
                                                                          "psw-worker-2"]
    d.close()
    assert not any(n.startswith("psw-worker") for n in threads())


def test_one_worker_is_no_thread():
    d = fastpath.Datapath(workers=1)
    try:
        assert d.workers == 1
        assert not any(n.startswith("psw-worker") for n in threads())
        assert len(d.worker_stats()) == 1
    finally:
        d.close()


@pytest.mark.parametrize("workers", [0, 9, -1])
def test_workers_out_of_range_are_refused(workers):
    with pytest.raises(ValueError):
        fastpath.Datapath(workers=workers)


def test_flows_spread_over_both_workers_and_counters_add_up(dp):
    frames = [udp_frame(10000 + i) for i in range(400)]
    for frame in frames:
        dp.inject(0, frame)
    assert dp.serve(100) == len(frames)
    assert len(dp.take(1)) == len(frames)
    per_worker = dp.worker_stats()
    rx = [w["rx_packets"] for w in per_worker]
    assert all(n > 50 for n in rx), f"the flow hash left a worker idle: {rx}"
    stats = dp.stats()
    assert stats["rx_packets"] == stats["tx_packets"] == sum(rx) == len(frames)
    assert stats["masked_hits"] + stats["emc_hits"] == len(frames)
    assert dp.port_stats(0)["rx_packets"] == len(frames) and dp.port_stats(1)["tx_packets"] == len(frames)
    (flow,) = dp.flows()
    assert flow.packets == len(frames), "a flow's packets are the sum over the workers' lanes"


def test_a_flow_stays_on_its_worker():
    """Both directions of a 5-tuple hash alike (the hash is symmetric), on any port."""
    d = fastpath.Datapath(workers=2)
    try:
        for p in range(2):
            d.add_port(p, "memory")
        d.flow_put(FlowKey(in_port=0).pack(), PORT_MASK, 0, [A.output(1)], now_ms=0)
        d.flow_put(FlowKey(in_port=1).pack(), PORT_MASK, 0, [A.output(0)], now_ms=0)
        for sport in range(20000, 20032):
            there = udp_frame(sport)
            back = bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="192.0.2.2", dst="192.0.2.1")
                         / UDP(sport=9, dport=sport) / b"x")
            before = [w["rx_packets"] for w in d.worker_stats()]
            d.inject(0, there)
            d.inject(1, back)
            d.run()
            moved = [w["rx_packets"] - b for w, b in zip(d.worker_stats(), before)]
            assert sorted(moved) == [0, 2], f"source port {sport}: {moved}"
    finally:
        d.close()


def test_upcalls_of_both_workers_come_up_in_one_list(dp):
    # No flow on port 1: every frame there misses, on whichever worker it lands.
    for worker in (0, 1):
        dp.inject(1, udp_frame(30000 + worker), worker=worker)
    start = time.monotonic()
    dp.serve(5000)
    deadline = start + 2
    ups = dp.upcalls()
    while len(ups) < 2 and time.monotonic() < deadline:    # the second worker may come up one serve later
        dp.serve(100)
        ups += dp.upcalls()
    assert time.monotonic() - start < 1, "serve returns as soon as a worker has upcalls"
    assert sorted(u.data for u in ups) == sorted(udp_frame(30000 + w) for w in (0, 1))
    assert all(u.in_port == 1 and u.reason == consts.UPCALL_MISS for u in ups)
    assert [w["upcalls"] for w in dp.worker_stats()] == [1, 1]
    assert dp.stats()["upcalls"] == 2


def test_run_steps_every_worker_and_gathers_their_upcalls(dp):
    dp.inject(1, udp_frame(1), worker=0)
    dp.inject(1, udp_frame(2), worker=1)
    dp.inject(0, udp_frame(3), worker=1)
    assert dp.run() == 3
    assert [u.data for u in dp.upcalls()] == [udp_frame(1), udp_frame(2)]   # worker 0's first
    assert dp.take(1) == [(udp_frame(3), bytes(consts.VNET_HDR_SIZE))]
    dp.execute(0, udp_frame(4), None, [A.upcall(5)])
    assert [u.userdata for u in dp.upcalls(2)] == [5], "execute()'s upcalls join the gathered list"
    assert dp.run() == 0 and dp.upcalls() == []


def test_a_nat_reply_on_the_other_worker_meets_its_connection():
    """A connection's two directions hash differently once NAT rewrites one (client -> VIP, backend -> client):
    the kernel may hand them to different workers, and the one connection table serves both."""
    d = make_dp(TwoWorkers)
    try:
        d.conn_add(nat_conn(), now_ms=1000)
        d.inject(CLIENT_PORT, bytes(tcp(flags="S")), worker=0)
        d.inject(BACKEND_SIDE, bytes(reply_tcp(flags="SA")), worker=1)
        d.inject(CLIENT_PORT, bytes(tcp(flags="A")), worker=0)
        assert d.run(now_ms=1010) == 3
        assert d.upcalls() == []
        (to_backend_syn, to_backend_ack), (to_client,) = (
            [Ether(f) for f, _ in d.take(BACKEND_SIDE)], [Ether(f) for f, _ in d.take(CLIENT_PORT)])
        assert (to_backend_syn[IP].dst, to_backend_syn[TCP].dport) == (BACKEND, BACKEND_PORT)
        assert (to_client[IP].src, to_client[TCP].sport) == (VIP, 80)
        conn = d.conn_get(nat_conn().client)
        assert (conn.packets, conn.state) == (3, consts.CS_ESTABLISHED)
        assert [w["rx_packets"] for w in d.worker_stats()] == [2, 1]
        assert d.conn_stats()["hits"] == 3
    finally:
        d.close()


def test_a_ring_scheduled_connection_wakes_the_slow_path_with_its_event():
    d = make_dp(TwoWorkers)
    try:
        ring_of_one(d)
        d.inject(CLIENT_PORT, bytes(udp()), worker=1)     # UDP: reported at once (TCP once past SYN)
        start = time.monotonic()
        taken = d.serve(5000)
        assert (taken, time.monotonic() - start < 1) == (1, True)
        assert [e.kind for e in d.conn_events()] == [consts.CE_NEW]
        assert len(d.take(BACKEND_SIDE)) == 1
    finally:
        d.close()


def test_a_wake_fd_ends_serve_while_workers_forward(dp):
    r, w = socket.socketpair()
    try:
        dp.add_wake_fd(r.fileno())
        for i in range(4 * consts.BATCH):
            dp.inject(0, udp_frame(i))
        w.send(b"x")
        start = time.monotonic()
        dp.serve(5000)
        assert time.monotonic() - start < 1
    finally:
        dp.del_wake_fd(r.fileno())
        r.close()
        w.close()


def test_idle_workers_sleep_until_the_timeout(dp):
    start = time.monotonic()
    assert dp.serve(40, spin_us=2000) == 0
    assert 0.035 <= time.monotonic() - start < 1


def test_the_slow_path_changes_tables_between_serves_while_workers_forward():
    """Flows and connections added, removed and read between serve() calls, hundreds of times, while both workers
    carry frames: every frame goes where the table said when it was forwarded, and nothing is lost."""
    d = make_dp(TwoWorkers)
    try:
        sent = 0
        for round_ in range(300):
            sport = 41000 + round_
            conn = nat_conn(sport=sport)
            d.conn_add(conn, now_ms=None)
            frame = bytes(tcp(sport=sport, flags="A"))
            for _ in range(4):
                d.inject(CLIENT_PORT, frame)
                sent += 1
            d.serve(1)
            if round_ % 3 == 0:
                assert d.conn_del(conn.client)
            d.flow_put(FlowKey(in_port=2).pack(), PORT_MASK, 5, [A.output(0)], now_ms=-1)
            d.flow_del(FlowKey(in_port=2).pack(), PORT_MASK, 5)
            d.stats(), d.flows(), d.conn_stats(), d.worker_stats()
        while d.serve(20):
            pass
        out = d.take(BACKEND_SIDE)
        # A frame still queued when its connection was deleted misses (CONN_MISS); every other one went out.
        assert d.stats()["rx_packets"] == sent
        assert len(out) + d.conn_stats()["misses"] == sent
        assert all(Ether(f)[IP].dst == BACKEND for f, _ in out)
        assert all(w["rx_packets"] > 0 for w in d.worker_stats())
    finally:
        d.close()


def test_the_world_is_taken_while_workers_are_busy(dp):
    """serve(1) takes the world back after a millisecond, mid-stream: workers stop between batches, the slow path
    edits the table, they go on; every frame comes out once."""
    sent = 0
    for worker in (0, 1):
        for i in range(3000):
            dp.inject(0, udp_frame(i), worker=worker)
            sent += 1
    for _ in range(10000):
        if sum(w["rx_packets"] for w in dp.worker_stats()) == sent:
            break
        dp.serve(1)
        dp.flow_put(FlowKey(in_port=1).pack(), PORT_MASK, 0, [A.output(0)], now_ms=-1)
        dp.flow_del(FlowKey(in_port=1).pack(), PORT_MASK, 0)
    # How many serves it takes depends on how the two cores are shared; what matters is that each frame comes out
    # exactly once, whenever the world was taken.
    assert len(dp.take(1)) == sent
    assert dp.upcalls() == []


def test_out_of_range_numbers_are_refused(dp):
    with pytest.raises(OSError):
        dp.inject(0, udp_frame(1), worker=2)
    with pytest.raises(OSError):
        dp.inject(0, udp_frame(1), worker=0xFFFFFFFF)
    with pytest.raises(OSError):
        dp.del_port(64)
    with pytest.raises(OSError):
        dp.del_port(65535)
    assert dp.run() == 0


def test_workers_need_no_port_before_they_are_set():
    d = fastpath.Datapath()
    try:
        d.add_port(0, "memory")
        r = fastpath.lib.ps_dp_set_workers(d._dp, 2)
        assert r == -16, "EBUSY: workers are set before ports are added"
    finally:
        d.close()
