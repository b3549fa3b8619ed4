"""A SYN flood at a VIP between real hosts (netns/synflood.toml): f1 sends SYNs from random sources of
198.18.0.0/15 (tests/syn_flooder.py, a raw socket, bounded in count and time) at the VIP while c1 holds an
established connection that carries data and new clients (curl) keep asking. The established connection must
survive untouched, new clients must still be answered, the table must stay within its bounds and the guard's
counters must show what it evicted and refused (docs/RELIABILITY.md "SYN floods and the soak")."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.netns

TOPOLOGY = "netns/synflood.toml"
VIP, OTHER_VIP = "203.0.113.10", "203.0.113.11"
BACKENDS = ("192.0.2.11", "192.0.2.12", "192.0.2.13")
HERE = os.path.dirname(__file__)
SERVER = os.path.join(HERE, "lb_server.py")
FLOODER = os.path.join(HERE, "syn_flooder.py")
MAX_CONNS, MAX_EMBRYONIC, FLOOD_THRESHOLD, UPCALL_RATE = 20000, 2000, 100, 200
FLOOD_SECONDS = 5

# c1's long-lived connection: GET /hold (tests/lb_server.py echoes every line), then a line every 20 ms for the
# given seconds, each answer checked; prints "ready" once held and, at the end, what it exchanged.
HOLDER = """
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=10)
s.sendall(b"GET /hold HTTP/1.0\\r\\n\\r\\n")
f = s.makefile("rb")
while f.readline() not in (b"\\r\\n", b""):
    pass
backend = f.readline().strip().decode()
print("ready", flush=True)
sys.stdin.readline()                        # the flood has started
n, error, deadline = 0, None, time.monotonic() + float(sys.argv[2])
try:
    while time.monotonic() < deadline:
        line = b"line %d %s\\n" % (n, b"x" * (n % 900))
        s.sendall(line)
        if f.readline() != line:
            error = "echo differs at line %d" % n
            break
        n += 1
        time.sleep(0.02)
except OSError as exc:
    error = repr(exc)
print(json.dumps({"backend": backend, "lines": n, "error": error}), flush=True)
"""


def switch_config(tmp_path, scheduler):
    """netns/synflood-sw.toml with small bounds, no health checks and a second VIP (rr) on the same backends."""
    with open("netns/synflood-sw.toml") as f:
        text = f.read()
    text = text.replace('scheduler = "rr"', f'scheduler = "{scheduler}"').replace('type = "http"', 'type = "none"')
    text = text.replace("max_embryonic = 16384", f"max_embryonic = {MAX_EMBRYONIC}")
    text = text.replace("flood_threshold = 1024", f"flood_threshold = {FLOOD_THRESHOLD}")
    text = text.replace("upcall_rate = 1000", f"upcall_rate = {UPCALL_RATE}")
    text = text.replace('datapath = "c"', f'datapath = "c"\nmax_conns = {MAX_CONNS}')
    text += f'\n[[vip]]\nname = "other"\naddress = "{OTHER_VIP}"\nport = 80\nscheduler = "rr"\n'
    text += "".join(f'\n[[vip.backend]]\naddress = "{b}"\nport = 8080\n' for b in BACKENDS)
    path = tmp_path / f"synflood-sw-{scheduler}.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def flood_net(topology, tmp_path):
    """flood_net(scheduler): the topology, its switch and the backends' servers."""
    servers = []

    def make(scheduler):
        net = topology(TOPOLOGY, switches=[switch_config(tmp_path, scheduler)], datapath="c")
        for name, address in zip(("b1", "b2", "b3"), BACKENDS):
            server = net.popen(name, [sys.executable, SERVER, name, address, "8080"], stdout=subprocess.PIPE,
                               text=True)
            servers.append(server)
            assert server.stdout.readline().strip() == "ready"
        return net

    yield make
    for server in servers:
        server.kill()
        server.wait()


def curl(net, vip, count):
    """`count` requests at once (curl --parallel, 2 s each at most: one SYN retransmission): the 200s."""
    urls = [f"http://{vip}/"] * count
    out = net.exec("c1", ["curl", "-s", "--parallel", "--parallel-max", "10", "--max-time", "2",
                          "-w", "%{http_code}\\n", "-o", "/dev/null", *urls], capture_output=True, text=True,
                   timeout=60).stdout
    return len(re.findall(r"^200$", out, re.M))


def flooded(net, rate, run):
    """Holds a connection at VIP, floods VIP at `rate` SYNs a second for FLOOD_SECONDS and calls run() meanwhile;
    returns (run's result, the holder's report, the flooder's report, the switch's stats before and after).
    The held connection must be in the table, established, in the middle of the flood."""
    switch = net.switch("lb")
    assert curl(net, VIP, 3) == 3, "the VIP answers before the flood"
    holder = net.popen("c1", [sys.executable, "-c", HOLDER, VIP, str(FLOOD_SECONDS)], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, text=True)
    flooder = None
    try:
        assert holder.stdout.readline().strip() == "ready"
        before = switch.show("stats")
        flooder = net.popen("f1", [sys.executable, FLOODER, VIP, "80", "--seconds", str(FLOOD_SECONDS),
                                   "--count", str(int(rate * FLOOD_SECONDS)), "--rate", str(rate)],
                            stdout=subprocess.PIPE, text=True)
        assert flooder.stdout.readline().strip() == "ready"
        holder.stdin.write("go\n")
        holder.stdin.flush()
        time.sleep(1)
        conns = switch.show("conns")        # the holder still holds: its connection, a second into the flood
        result = run()
        sent = json.loads(flooder.stdout.readline())
        held = json.loads(holder.stdout.readline())
        after = switch.show("stats")
    finally:
        for proc in (holder, flooder):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.wait()
    held_conns = [c for c in conns if c["client"].startswith("198.51.100.11:") and c["state"] == "established"
                  and c["packets"] > 20]
    assert held_conns, "the held connection was established in the table during the flood"
    return result, held, sent, before, after


def assert_bounded(switch, stats):
    vip = {v["name"]: v for v in switch.show("vips")}["web"]
    assert stats["conn_conns"] <= MAX_CONNS and stats["conn_max_conns"] == MAX_CONNS
    assert 0 < vip["guard"]["embryonic"] <= MAX_EMBRYONIC, vip["guard"]
    assert stats["conn_by_state"]["syn"] <= 2 * MAX_EMBRYONIC, "each VIP holds at most its own half-open ones"
    return vip["guard"]


def test_maglev_vip_under_a_syn_flood_keeps_its_connection_and_answers(flood_net):
    net = flood_net("maglev")
    switch = net.switch("lb")
    answered, held, sent, before, after = flooded(net, 5000, lambda: curl(net, VIP, 20))
    assert held["error"] is None and held["lines"] >= 50, held
    assert sent["sent"] >= 5000, sent
    guard = assert_bounded(switch, after)
    assert guard["embryonic"] == MAX_EMBRYONIC and guard["embryonic_evicted"] > 0, guard
    # Documented (docs/RELIABILITY.md): at 5000 SYNs a second nearly every new client is answered.
    assert answered >= 10, f"{answered} of 20 new clients answered during the flood"
    assert after["upcalls"] - before["upcalls"] < 200, "the flood's SYNs never came up to the slow path"
    assert after["conn_events_dropped"] == 0


def test_slow_path_vip_under_a_syn_flood_is_rate_limited_and_others_are_served(flood_net):
    net = flood_net("rr")
    switch = net.switch("lb")
    answered, held, sent, before, after = flooded(
        net, 5000, lambda: (curl(net, OTHER_VIP, 20), curl(net, VIP, 20)))
    other, flooded_vip = answered
    assert held["error"] is None and held["lines"] >= 50, held
    guard = assert_bounded(switch, after)
    assert guard["upcalls_limited"] > 0, guard
    # The flooded VIP sends at most upcall_rate new-connection upcalls a second once flooded (plus its bucket and
    # the SYNs before it held flood_threshold half-open ones); the other VIP's clients are served as before.
    upcalls = after["upcalls"] - before["upcalls"]
    assert upcalls <= UPCALL_RATE * (sent["seconds"] + 2) + FLOOD_THRESHOLD + 100, (upcalls, sent)
    assert other >= 16, f"{other} of 20 clients of the other VIP answered during the flood"
    # The flooded VIP's own new clients get about upcall_rate / flood rate of their SYNs through: documented,
    # not asserted beyond the count being sane.
    assert 0 <= flooded_vip <= 20
