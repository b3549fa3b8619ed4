"""`[switch] workers = 2` between real hosts: two C datapath threads share every port through PACKET_FANOUT, the
tables are shared, and the hosts cannot tell (docs/DATAPATH.md "Workers").  Real namespaces, real ping, TCP,
UDP and HTTP, through a running `pyswitch run`; the per-worker counters of `show stats` show that both workers
carried traffic."""
import os
import signal
import subprocess
import sys
import time

import pytest

from hosts import busy_while_link_down, cpu_seconds, ping, transfer
from test_lb_netns import Lb, TOPOLOGY as LB_TOPOLOGY, counts, switch_config

pytestmark = pytest.mark.netns

DEMO = "netns/demo.toml"
H1, H2, H3 = "198.51.100.11", "198.51.100.12", "198.51.100.13"
ROUTED = "netns/routed.toml"
R1, R2, R3 = "198.51.100.11", "192.0.2.11", "203.0.113.11"

# Counts UDP datagrams per source port until the sender's "end" datagram, then prints "port count" lines.
UDP_SINK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
seen = {}
while True:
    data, (_, port) = s.recvfrom(2048)
    if data == b"end":
        break
    seen[port] = seen.get(port, 0) + 1
for port, n in sorted(seen.items()):
    print(port, n)
"""
# Sends `count` datagrams from each of `flows` sockets (each its own source port), then "end" from a new one.
UDP_SOURCE = """
import socket, sys, time
address, port, flows, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(flows)]
for s in socks:
    s.bind(("", 0))
for i in range(count):
    for s in socks:
        s.sendto(b"x" * 100, (address, port))
    time.sleep(0.005)
time.sleep(0.2)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"end", (address, port))
print(" ".join(str(s.getsockname()[1]) for s in socks))
"""
# Accepts `n` TCP connections at once and prints each one's byte count and SHA-256.
TCP_SINK = """
import hashlib, socket, sys, threading
srv = socket.create_server((sys.argv[1], int(sys.argv[2])), backlog=64)
n = int(sys.argv[3]); results = []
print("ready", flush=True)
def serve(conn):
    h = hashlib.sha256(); size = 0
    while chunk := conn.recv(1 << 16):
        h.update(chunk); size += len(chunk)
    results.append(f"{size} {h.hexdigest()}")
threads = []
for _ in range(n):
    conn, _ = srv.accept()
    t = threading.Thread(target=serve, args=(conn,)); t.start(); threads.append(t)
for t in threads:
    t.join()
print("\\n".join(sorted(results)), flush=True)
"""
# Opens `n` TCP connections at once (n source ports) and sends each `size` random bytes; prints the same lines.
TCP_SOURCE = """
import hashlib, random, socket, sys, threading
address, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
results = []
def send(seed):
    rng = random.Random(seed); data = rng.randbytes(size)
    s = socket.create_connection((address, port), timeout=30); s.sendall(data); s.close()
    results.append(f"{size} {hashlib.sha256(data).hexdigest()}")
threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("\\n".join(sorted(results)), flush=True)
"""


def with_workers(template, tmp_path, workers=2):
    """A copy of the switch config `template` (path, "{id}" kept) with [switch] workers = N."""
    with open(template) as f:
        text = f.read()
    assert "[switch]\n" in text
    path = tmp_path / f"workers-{workers}-{os.path.basename(template)}"
    path.write_text(text.replace("[switch]\n", f"[switch]\nworkers = {workers}\n", 1))
    return str(path)


def worker_rx(switch):
    stats = switch.show("stats")
    assert stats["workers"] == 2, stats
    return stats["worker_rx_packets"]


def both_carried(before, after, share=0.1):
    """Both workers took at least `share` of the frames between two readings of worker_rx_packets."""
    moved = [a - b for a, b in zip(after, before)]
    print(f"frames per worker: {moved}")             # pytest -s shows the split
    return all(m >= share * sum(moved) for m in moved) and sum(moved) > 0, moved


@pytest.fixture
def demo(topology, tmp_path):
    return topology(DEMO, switches=[with_workers("netns/demo-sw.toml", tmp_path)], datapath="c")


def test_hosts_ping_each_other_over_veth_and_tap(demo):
    pairs = [("h1", H2), ("h2", H1), ("h1", H3), ("h3", H1), ("h2", H3), ("h3", H2)]
    failed = [(host, addr) for host, addr in pairs if not ping(demo, host, addr)]
    assert not failed, f"no answer for {failed}\n{demo.switch_log('demo')}"
    assert demo.switch("demo").show("stats")["workers"] == 2


@pytest.mark.parametrize("dst_host, address", [("h2", H2), ("h3", H3)], ids=["veth", "tap"])
def test_tcp_40mb_arrives_intact(demo, dst_host, address):
    (sent_n, sent_digest), received = transfer(demo, "h1", dst_host, address, 40 * 1000 * 1000)
    assert received == [sent_n, sent_digest]


def test_many_udp_and_tcp_flows_all_arrive_and_both_workers_carry_them(demo):
    switch = demo.switch("demo")
    assert ping(demo, "h1", H2) and ping(demo, "h2", H1)
    before = worker_rx(switch)

    sink = demo.popen("h2", [sys.executable, "-c", UDP_SINK, H2, "9999"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout.readline().strip() == "ready"
        sent = demo.exec("h1", [sys.executable, "-c", UDP_SOURCE, H2, "9999", "64", "20"], capture_output=True,
                         text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        out, _ = sink.communicate(timeout=30)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    ports = {int(p) for p in sent.stdout.split()}
    received = {int(port): int(n) for port, n in (line.split() for line in out.splitlines())}
    assert len(ports) == 64
    assert received == dict.fromkeys(ports, 20), "every datagram of every flow arrives"

    tsink = demo.popen("h2", [sys.executable, "-c", TCP_SINK, H2, "5002", "16"], stdout=subprocess.PIPE, text=True)
    try:
        assert tsink.stdout.readline().strip() == "ready"
        tsent = demo.exec("h1", [sys.executable, "-c", TCP_SOURCE, H2, "5002", "16", "1000000"],
                          capture_output=True, text=True, timeout=120)
        assert tsent.returncode == 0, tsent.stderr
        tout, _ = tsink.communicate(timeout=60)
    finally:
        if tsink.poll() is None:
            tsink.kill()
            tsink.wait()
    assert tout.split() == tsent.stdout.split() and len(tout.splitlines()) == 16, "16 connections, all intact"

    ok, moved = both_carried(before, worker_rx(switch))
    assert ok, f"the fanout hash should spread 64 UDP and 16 TCP flows over both workers: {moved}"


def test_show_answers_while_traffic_flows(demo):
    switch = demo.switch("demo")
    assert ping(demo, "h1", H2)
    server = demo.popen("h2", ["iperf3", "-s", "-1", "-B", H2], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        client = demo.popen("h1", ["iperf3", "-c", H2, "-t", "4", "-P", "4"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        waits, rx = [], []
        for what in ["stats", "flows", "ports", "fdb", "upcalls"] * 3:
            start = time.monotonic()
            answer = switch.show(what, timeout=5)
            waits.append(time.monotonic() - start)
            if what == "stats":
                rx.append(answer["rx_packets"])
        out, _ = client.communicate(timeout=30)
        assert client.returncode == 0, out
    finally:
        for proc in (server,):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert max(waits) < 1.0, f"show took {max(waits):.3f} s under load"
    assert rx == sorted(rx) and rx[-1] > rx[0], "traffic flowed while show was answered"


def test_sigterm_stops_cleanly_and_leaves_nothing(demo):
    switch = demo.switch("demo")
    assert ping(demo, "h1", H3)
    pid = switch.pid
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            names.append(f.read().strip())
    assert sorted(n for n in names if n.startswith("psw-worker")) == ["psw-worker-0", "psw-worker-1"]
    tap = demo.tap_device("psw-tap3")
    switch.process.send_signal(signal.SIGTERM)
    assert switch.process.wait(timeout=10) == 0
    assert "stopped" in switch.log()
    exists = subprocess.run(["ip", "netns", "exec", demo.netns("h3"), "ip", "link", "show", tap],
                            capture_output=True)
    assert exists.returncode != 0, "the switch removes the TAP device it made"
    assert not os.path.exists(f"/run/pyswitch/{switch.name}.sock")
    assert not os.path.exists(f"/proc/{pid}"), "no thread outlives the process"


def test_a_port_whose_interface_goes_down_does_not_make_workers_spin(demo):
    """The kernel leaves ENETDOWN on the sockets of an interface that goes down, and poll(2) reports it at once
    until it is read: a sleeping worker must read it, not spin."""
    switch = demo.switch("demo")
    assert ping(demo, "h1", H2)
    end = next(link.peer for link in demo.links if link.host == "h2")
    busy = busy_while_link_down(demo, switch, end)
    assert busy < 0.3, f"the switch used {busy:.0%} of a core while a port was down"
    time.sleep(0.5)
    assert ping(demo, "h1", H2), "traffic goes on once the link is back"


def test_a_routed_flow(topology, tmp_path):
    routed = topology(ROUTED, switches=[with_workers("netns/routed-sw.toml", tmp_path), "netns/routed-sw2.toml"],
                      datapath="c")
    assert ping(routed, "h1", R2), routed.switch_log("rt")
    assert ping(routed, "h1", R3), "through the static route to the subnet behind r1"
    out = routed.exec("h1", ["ping", "-c", "1", "-W", "2", R2], capture_output=True, text=True).stdout
    assert "ttl=63" in out, out
    before = worker_rx(routed.switch("rt"))
    (sent_n, sent_digest), received = transfer(routed, "h1", "h2", R2, 20 * 1000 * 1000)
    assert received == [sent_n, sent_digest]
    assert sum(worker_rx(routed.switch("rt"))) > sum(before)


def test_vip_nat_answers_every_connection_of_200(topology, tmp_path):
    """200 connections from one client: each is scheduled by the slow path on the worker its SYN reached, and its
    replies (backend -> client, a tuple that hashes differently) reach whichever worker the fanout picks; the one
    connection table serves both."""
    net = topology(LB_TOPOLOGY, switches=[with_workers(switch_config(tmp_path, mode="nat"), tmp_path)], datapath="c")
    lb = Lb(net, "nat")
    try:
        for name in ("b1", "b2", "b3"):
            lb.start(name)
        before = worker_rx(lb.switch)
        results, out = lb.curl(200)
        assert len(results) == 200, out[-500:] + lb.switch.log()[-3000:]
        share = counts(results)
        assert len(share) == 3 and max(share.values()) - min(share.values()) <= 1, share
        ok, moved = both_carried(before, worker_rx(lb.switch))
        assert ok, f"both workers carry the VIP's connections: {moved}"
        stats = lb.switch.show("stats")
        assert stats["lb_conn_new"] >= 200 and stats["conn_hits"] > 200 * 5, stats
    finally:
        lb.stop_all()
