"""Active/passive pairs between real hosts (netns/ha.toml): two pyswitch processes on the same two LANs, a
client and three HTTP servers behind a VIP; mastership moves when the master dies, loses a tracked link or is
released, and VRRP adverts on the wire are what tshark calls valid VRRPv3."""
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.netns

TOPOLOGY = "netns/ha.toml"
SWITCHES = ["netns/ha-sw1.toml", "netns/ha-sw2.toml"]
VIP = "203.0.113.10"
SERVER = os.path.join(os.path.dirname(__file__), "lb_server.py")
BACKENDS = {"b1": "192.0.2.11", "b2": "192.0.2.12", "b3": "192.0.2.13"}
ADVERT_S = 0.1
TAKEOVER_S = 3 * ADVERT_S + (256 - 100) / 256 * ADVERT_S     # the standby's Master_Down_Interval

# A client that asks the VIP every 20 ms, each request on a new connection, and prints when each one ended.
PROBE = ("import socket, sys, time\n"
         "end = time.time() + float(sys.argv[1])\n"
         "while time.time() < end:\n"
         "    try:\n"
         f"        s = socket.create_connection(('{VIP}', 80), timeout=0.25)\n"
         "        s.settimeout(0.25)\n"
         "        s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
         "        ok = b' 200 ' in s.recv(100)\n"
         "        s.close()\n"
         "    except OSError:\n"
         "        ok = False\n"
         "    print('ok' if ok else 'fail', time.time(), flush=True)\n"
         "    time.sleep(0.02)\n")


# 50 connections held open (GET /hold: the server echoes every line), then 1000 requests over them, one line
# each, round robin; prints each answer's time, and "reset" or "timeout" for a connection that broke.
STREAM = ("import socket, sys, time\n"
          "conns = []\n"
          "for _ in range(50):\n"
          f"    s = socket.create_connection(('{VIP}', 80), timeout=5)\n"
          "    s.sendall(b'GET /hold HTTP/1.0\\r\\n\\r\\n')\n"
          "    data = b''\n"
          "    while not data.partition(b'\\r\\n\\r\\n')[2].endswith(b'\\n'):\n"
          "        data += s.recv(100)\n"
          "    conns.append(s)\n"
          "print('open', flush=True)\n"
          "sys.stdin.readline()\n"
          "for i in range(1000):\n"
          "    s = conns[i % 50]\n"
          "    try:\n"
          "        s.sendall(b'ping %d\\n' % i)\n"
          "        answer = s.recv(100)\n"
          "        print('ok' if answer.startswith(b'ping') else 'reset', time.time(), flush=True)\n"
          "    except socket.timeout:\n"
          "        print('timeout', time.time(), flush=True)\n"
          "    except OSError:\n"
          "        print('reset', time.time(), flush=True)\n"
          "    time.sleep(0.003)\n")


class Stream:
    """STREAM in c1: its 50 connections are open once the block starts; go() starts the 1000 requests, lines()
    waits for their answers; the client is killed when the block ends, also after a failure."""

    def __init__(self, net):
        self.net = net
        self.process = net.popen("c1", [sys.executable, "-c", STREAM], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)

    def __enter__(self):
        if self.process.stdout.readline().strip() != "open":
            self.__exit__()
            logs = "\n".join(f"--- {name}:\n{self.net.switch_log(name)}" for name in ("ha1", "ha2"))
            raise AssertionError(f"the client could not open its 50 connections; the switches' logs:\n{logs}")
        return self

    def go(self):
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def lines(self):
        return self.process.communicate(timeout=60)[0].splitlines()

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


class Pair:
    def __init__(self, net):
        self.net = net
        self.sw1, self.sw2 = net.switch("ha1"), net.switch("ha2")
        self.servers = [net.popen("srv", [sys.executable, SERVER, name, address, "8080"], stdout=subprocess.PIPE,
                                  text=True) for name, address in BACKENDS.items()]
        for server in self.servers:
            assert server.stdout.readline().strip() == "ready"

    def states(self):
        return tuple(sw.show("ha")["state"] if sw.process.poll() is None else "dead" for sw in (self.sw1, self.sw2))

    def wait_states(self, want, within):
        deadline = time.monotonic() + within
        while (got := self.states()) != want:
            assert time.monotonic() < deadline, f"HA states {got}, expected {want}"
            time.sleep(0.02)

    def wait_serving(self, within):
        """Until the VIP answers a ping through the master: a pair that has just elected its master is only then
        ready for a test.  A ping, not a request: the tests count the connections the pair holds."""
        deadline = time.monotonic() + within
        while self.net.exec("c1", ["ping", "-c", "1", "-W", "0.5", VIP], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "the VIP does not answer after the election"

    def curl(self, count=5):
        out = self.net.exec("c1", ["curl", "-s", "--max-time", "3", "-w", " %{http_code}\\n",
                                   *[f"http://{VIP}/"] * count], capture_output=True, text=True, timeout=60)
        return out.stdout.count(" 200")

    def probe(self, seconds):
        return self.net.popen("c1", [sys.executable, "-c", PROBE, str(seconds)], stdout=subprocess.PIPE, text=True)

    def stop(self):
        for server in self.servers:
            server.kill()
            server.wait()


@pytest.fixture
def pair(topology, tmp_path):
    made = []

    def make(datapath="c", persistence_s=0, mode="nat", peer=True, scheduler="rr"):
        switches = SWITCHES
        if persistence_s or mode != "nat" or not peer or scheduler != "rr":
            switches = []
            for path in SWITCHES:
                with open(path) as f:
                    text = f.read().replace('scheduler = "rr"',
                                            f'scheduler = "{scheduler}"\npersistence_s = {persistence_s}')
                text = text.replace('mode = "nat"', f'mode = "{mode}"')
                if not peer:
                    text = "\n".join(line for line in text.splitlines() if not line.startswith("peer ="))
                switches.append(tmp_path / os.path.basename(path))
                switches[-1].write_text(text)
        p = Pair(topology(TOPOLOGY, switches=switches, datapath=datapath))
        made.append(p)
        p.wait_states(("master", "backup"), within=5)
        p.wait_serving(within=5)
        return p

    yield make
    for p in made:
        p.stop()


def longest_gap(lines, start, end):
    """The longest time between two successful requests, from lines "ok|fail TIME", within [start, end]."""
    oks = [float(t) for word, t in (line.split() for line in lines) if word == "ok" and start <= float(t) <= end]
    return max((b - a for a, b in zip(oks, oks[1:])), default=float("inf"))


@pytest.mark.parametrize("datapath", ["c", "python"])
def test_the_standby_takes_over_when_the_master_dies(pair, datapath):
    p = pair(datapath)
    assert p.curl() == 5
    ha1, ha2 = p.sw1.show("ha"), p.sw2.show("ha")
    assert (ha1["master"], ha2["master"]) == ("198.18.0.1", "198.18.0.1")
    assert ha2["counters"]["adverts_received"] > 0 and ha1["counters"]["adverts_sent"] > 0
    assert p.sw2.show("stats")["rx_packets"] > 0
    probe = p.probe(3.0)
    time.sleep(1.0)
    killed = time.time()
    p.sw1.kill()
    p.wait_states(("dead", "master"), within=TAKEOVER_S + 1)
    lines = probe.communicate(timeout=10)[0].splitlines()
    gap = longest_gap(lines, killed - 0.5, killed + 1.5)
    assert gap < 1.0, f"service paused {gap:.2f} s after the master died"
    assert p.curl() == 5
    ha2 = p.sw2.show("ha")
    assert ha2["master"] == "198.18.0.2" and ha2["last_transition"] is not None
    assert p.sw2.show("stats")["gratuitous_arp_sent"] >= 2, "the new master announces 198.51.100.1 and 192.0.2.1"


def test_a_tracked_link_moves_mastership_and_preempt_brings_it_back(pair, netns_id):
    """Unplug a tracked port of the master and plug it back while 50 connections carry requests: mastership
    goes to the peer and comes back (preempt, once the returning master has the peer's dump), and no request
    is lost either time."""
    p = pair()
    device = f"psw-{netns_id}h1-c"          # ha1's link to the client's LAN
    with Stream(p.net) as stream:
        stream.go()
        time.sleep(0.3)
        subprocess.run(["ip", "link", "set", device, "down"], check=True)
        p.wait_states(("fault", "master"), within=1.0)
        assert p.sw1.show("ha")["tracked_ports"] == {"front": False, "back": True}
        time.sleep(0.5)
        subprocess.run(["ip", "link", "set", device, "up"], check=True)
        p.wait_states(("master", "backup"), within=3.0)
        back = time.time()
        lines = stream.lines()
    words = [line.split()[0] for line in lines]
    assert words == ["ok"] * 1000, f"{words.count('reset')} reset, {words.count('timeout')} timed out"
    assert float(lines[-1].split()[1]) > back, "requests were still flowing when mastership came back"
    assert p.curl() == 5


def test_release_hands_mastership_over_and_stays_standby(pair):
    p = pair()
    result = subprocess.run([sys.executable, "-m", "pyswitch", "ha", "release", "--name", p.sw1.name],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    p.wait_states(("backup", "master"), within=1.0)
    time.sleep(1.0)
    assert p.states() == ("backup", "master"), "a released master does not preempt"
    assert p.sw1.show("ha")["released"] is True
    assert p.curl() == 5
    again = subprocess.run([sys.executable, "-m", "pyswitch", "ha", "release", "--name", p.sw1.name],
                           capture_output=True, text=True, timeout=10)
    assert again.returncode != 0 and "not master" in again.stderr


def test_adverts_are_valid_vrrpv3_on_the_wire(pair, tmp_path):
    p = pair()
    capture = tmp_path / "vrrp.pcap"
    dump = p.net.popen("srv", ["tcpdump", "-i", "br0", "-w", str(capture), "-c", "5", "ip proto 112"],
                       stderr=subprocess.DEVNULL)
    dump.wait(timeout=10)
    out = subprocess.run(["tshark", "-r", str(capture), "-V", "-o", "vrrp.v3_checksum_as_in_v2:FALSE"],
                         capture_output=True, text=True, timeout=30).stdout
    assert out.count("Virtual Router Redundancy Protocol") == 5, out[:3000]
    assert "VRRP protocol version: 3" in out and "Virtual Rtr ID: 51" in out and "Priority: 150" in out, out[:3000]
    assert "Adver Int: 10" in out and "IP Address: 192.0.2.1" in out, out[:3000]
    assert "[Checksum Status: Good]" in out, out[:3000]
    assert "00:00:5e:00:01:33" in out and "Time to Live: 255" in out, out[:3000]


@pytest.mark.parametrize("datapath, mode, peer", [("c", "nat", True), ("python", "nat", True),
                                                  ("c", "fullnat", True), ("c", "nat", False)],
                         ids=["c-nat", "python-nat", "c-fullnat", "c-nat-multicast-sync"])
def test_open_connections_survive_a_kill_of_the_master(pair, datapath, mode, peer):
    """The issue's test: kill -9 the master while 50 long-lived connections carry 1000 requests; all of them
    are answered, and the longest pause the client sees is under a second.  In fullnat the connections'
    source ports were allocated by the dead master: the survivor knows and keeps them.  Without [ha] peer the
    sync goes to a multicast group on the sync VLAN."""
    p = pair(datapath, mode=mode, peer=peer)
    with Stream(p.net) as stream:
        deadline = time.monotonic() + 5
        while p.sw2.show("ha")["synced_conns"] < 50:
            assert time.monotonic() < deadline, p.sw2.show("ha")
            time.sleep(0.05)
        stream.go()
        time.sleep(1.0)
        killed = time.time()
        p.sw1.kill()
        lines = stream.lines()
    words = [line.split()[0] for line in lines]
    assert len(words) == 1000 and set(words) == {"ok"}, f"{words.count('reset')} reset, {words.count('timeout')} " \
                                                            f"timed out of {len(words)}"
    times = [float(line.split()[1]) for line in lines]
    assert times[0] < killed < times[-1], "the master died while the requests were flowing"
    gap = max(b - a for a, b in zip(times, times[1:]))
    print(f"longest pause the client saw: {gap:.3f} s")     # shown with pytest -s
    assert gap < 1.0, f"the client waited {gap:.2f} s for an answer"
    assert p.states() == ("dead", "master")
    if mode == "fullnat":
        assert p.sw2.show("stats")["lb_snat_ports_in_use"] == 50, "the synced connections' ports are taken"


def test_a_returning_master_learns_the_connections_then_takes_over(pair):
    """Failback: the standby served alone for a while; the first instance comes back, gets a full dump of
    the connections opened meanwhile, then preempts, and those connections go on through it."""
    p = pair()
    p.sw1.kill()
    p.wait_states(("dead", "master"), within=TAKEOVER_S + 1)
    with Stream(p.net) as stream:
        p.sw1.restart()
        p.wait_states(("master", "backup"), within=6)
        assert p.sw1.show("ha")["synced_conns"] >= 50
        stream.go()
        lines = stream.lines()
    assert [line.split()[0] for line in lines] == ["ok"] * 1000


def test_a_partitioned_sync_link_is_resynced(pair, netns_id):
    """Cut the sync wire while connections open and close, heal it: the standby sees the sequence gap, asks
    for a full dump and ends with exactly the master's connections."""
    p = pair()
    wire = f"psw-{netns_id}h1-y"
    subprocess.run(["ip", "link", "set", wire, "down"], check=True)
    with Stream(p.net):
        assert p.sw2.show("ha")["synced_conns"] == 0
        subprocess.run(["ip", "link", "set", wire, "up"], check=True)
        deadline = time.monotonic() + 5
        while len(p.sw2.show("conns")) < 50:
            assert time.monotonic() < deadline, p.sw2.show("stats")
            time.sleep(0.05)
    stats = p.sw2.show("stats")
    assert stats["ha_resync_requests_sent"] >= 1 and stats["ha_sync_gaps"] >= 1, stats
    master = {c["client"] for c in p.sw1.show("conns")}
    assert {c["client"] for c in p.sw2.show("conns")} == master


def test_client_affinity_survives_a_takeover(pair):
    """persistence_s: the master's client -> backend affinities are synced, so after a takeover the client
    keeps its backend although the new master's round robin would have moved it."""
    p = pair(persistence_s=60)

    def backends(count):
        out = p.net.exec("c1", ["curl", "-s", "--max-time", "3", *[f"http://{VIP}:80/"] * count],
                         capture_output=True, text=True, timeout=60).stdout
        return out.split()

    def backend_command(change):
        result = subprocess.run([sys.executable, "-m", "pyswitch", "backend", "web", "192.0.2.11:8080", change,
                                 "--name", p.sw1.name], capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, result.stderr

    # b1 drained on the master alone while the client comes: its affinity goes to b2, where the standby's own
    # round robin (b1 first) would not send it.
    backend_command("drain")
    before = backends(6)
    backend_command("up")
    assert before == ["b2"] * 6, before
    time.sleep(0.3)                     # the affinity travels with the next flush
    p.sw1.kill()
    p.wait_states(("dead", "master"), within=TAKEOVER_S + 1)
    after = backends(6)
    assert after == before, (before, after)


def test_a_split_brain_resolves_within_an_advert_interval(pair, netns_id):
    """Cut ha2 off from both LANs and the sync wire without touching a tracked link: it hears no adverts and
    becomes master too.  Heal: the two hear each other, and the lower one steps down at the first advert."""
    p = pair()
    for host in ("c1", "srv"):
        p.net.exec(host, ["ip", "link", "set", "eth1", "nomaster"], check=True)
    wire = f"psw-{netns_id}h2-y"
    subprocess.run(["ip", "link", "set", wire, "down"], check=True)
    p.wait_states(("master", "master"), within=TAKEOVER_S + 1)
    for host in ("c1", "srv"):
        p.net.exec(host, ["ip", "link", "set", "eth1", "master", "br0"], check=True)
    subprocess.run(["ip", "link", "set", wire, "up"], check=True)
    healed = time.monotonic()
    p.wait_states(("master", "backup"), within=1.0)
    assert time.monotonic() - healed < ADVERT_S + 0.3, "one master within an advert interval (plus polling)"
    assert p.curl() == 5


def test_maglev_takes_over_connections_that_were_never_synced(pair, netns_id):
    """Both instances build the same Maglev table, so a connection the standby never heard of (the sync wire
    was down all along) still lands on its backend after a takeover, and goes on."""
    p = pair(scheduler="maglev")
    subprocess.run(["ip", "link", "set", f"psw-{netns_id}h1-y", "down"], check=True)
    with Stream(p.net) as stream:
        assert p.sw2.show("ha")["synced_conns"] == 0
        # Let the last acknowledgements reach the master: a backend's retransmission arriving at the survivor
        # first would find no connection (see docs/HA.md, "Not done yet").
        time.sleep(0.5)
        p.sw1.kill()
        p.wait_states(("dead", "master"), within=TAKEOVER_S + 1)
        stream.go()
        lines = stream.lines()
    assert [line.split()[0] for line in lines] == ["ok"] * 1000
    assert p.sw2.show("stats")["ring_scheduled"] >= 50, "the survivor's ring placed the connections it never knew"


def test_unicast_adverts_to_the_peer_keep_the_standby_down(pair, netns_id):
    """With [ha] peer the sync VLAN carries the adverts unicast (TTL 255, straight to the peer's MAC): cut off
    from both LANs, the standby still hears the master there and stays standby."""
    p = pair()
    wire = f"psw-{netns_id}h2-y"
    dump = subprocess.run(["timeout", "5", "tcpdump", "-n", "-i", wire, "-c", "3", "-v",
                           "ip proto 112 and dst host 198.18.0.2"], capture_output=True, text=True)
    assert dump.stdout.count("198.18.0.1 > 198.18.0.2: VRRPv3, Advertisement, vrid 51") == 3, dump.stdout
    assert "ttl 255" in dump.stdout
    for host in ("c1", "srv"):
        p.net.exec(host, ["ip", "link", "set", "eth1", "nomaster"], check=True)
    time.sleep(3 * TAKEOVER_S)
    assert p.states() == ("master", "backup")
