"""L7 VIPs between real hosts (netns/lb.toml with netns/l7-sw.toml): curl and openssl in the client's namespace,
real HTTP and TLS servers (tests/l7_server.py) in the backends'; the switch takes each connection, reads the
request, picks the pool and splices the two halves.  Servers answer with their own name, so every test knows
which backend a request reached."""
import hashlib
import os
import re
import subprocess
import sys
import time

import pytest

from pyswitch.l7.service import persistence_value
from pyswitch.lb.backend import Backend

pytestmark = pytest.mark.netns

TOPOLOGY = "netns/lb.toml"
SWITCH = "netns/l7-sw.toml"
SITE, TLS, STRICT, STICKY = "203.0.113.20", "203.0.113.21", "203.0.113.23", "203.0.113.24"
SERVER = os.path.join(os.path.dirname(__file__), "l7_server.py")
# (host, address, port, name): every server the switch's pools name, but 192.0.2.13:9999, which never listens
SERVERS = [("b1", "192.0.2.11", 8080, "web1"), ("b1", "192.0.2.11", 8081, "web2"),
           ("b2", "192.0.2.12", 8080, "api1"), ("b2", "192.0.2.12", 8081, "api2"),
           ("b2", "192.0.2.12", 8082, "blue"), ("b3", "192.0.2.13", 8080, "canary"),
           ("b3", "192.0.2.13", 8081, "static")]
TLS_SERVERS = [("b1", "192.0.2.11", 8443, "tls-web"), ("b2", "192.0.2.12", 8443, "tls-api")]


class Site:
    """The topology, the L7 switch and every server; the servers are killed when the test ends."""

    def __init__(self, net, tmp_path, tls=False):
        self.net, self.tmp_path = net, tmp_path
        self.switch = net.switch("l7")
        self.servers = []
        for host, address, port, name in SERVERS:
            self._start(host, [name, address, str(port)])
        if tls:
            cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                            "/CN=example.test", "-keyout", str(key), "-out", str(cert)], check=True,
                           capture_output=True, timeout=60)
            for host, address, port, name in TLS_SERVERS:
                self._start(host, [name, address, str(port), "--tls", str(cert), str(key)])
        self.wait_pools_up()

    def _start(self, host, argv):
        server = self.net.popen(host, [sys.executable, SERVER, *argv], stdout=subprocess.PIPE, text=True)
        self.servers.append(server)
        assert server.stdout.readline().strip() == "ready"

    def wait_pools_up(self, within=10.0):
        """Until the health-checked pools (web, api) have every backend up."""
        deadline = time.monotonic() + within
        while True:
            states = {b["address"] + ":" + str(b["port"]): b["state"] for v in self.switch.show("vips")
                      if v["name"] in ("site/web", "site/api") for b in v["backends"]}
            if states and set(states.values()) == {"up"}:
                return
            assert time.monotonic() < deadline, states
            time.sleep(0.1)

    def curl(self, *args, timeout=60):
        out = self.net.exec("c1", ["curl", "-s", "-S", "--max-time", "30", *args], capture_output=True,
                            timeout=timeout)
        return out

    def get(self, url, *args):
        out = self.curl(*args, url)
        assert out.returncode == 0, out.stderr
        return out.stdout.decode()

    def stats(self):
        return self.switch.show("stats")

    def stop(self):
        for server in self.servers:
            server.kill()
            server.wait()


@pytest.fixture
def site(topology, tmp_path):
    made = []

    def make(datapath="c", tls=False):
        s = Site(topology(TOPOLOGY, switches=[SWITCH], datapath=datapath), tmp_path, tls=tls)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.mark.parametrize("datapath", ["c", "python"])
def test_each_kind_of_rule_routes_to_its_pool(site, datapath):
    s = site(datapath)
    assert s.get(f"http://{SITE}/v1/users", "-H", "Host: api.example.test").split()[0] in ("api1", "api2")
    assert s.get(f"http://{SITE}/v2/users", "-H", "Host: api.example.test").split()[0] in ("web1", "web2"), \
        "host matches but the path prefix does not: the default pool"
    assert s.get(f"http://{SITE}/", "-b", "theme=dark; canary=1").split()[0] == "canary"
    assert s.get(f"http://{SITE}/", "-b", "canary=0").split()[0] in ("web1", "web2")
    assert s.get(f"http://{SITE}/x", "-H", "X-Tenant: blue").split()[0] == "blue"
    assert s.get(f"http://{SITE}/static/app.js").split()[0] == "static"
    assert s.get(f"http://{SITE}/a/static/app.js").split()[0] in ("web1", "web2"), "the regex is anchored"
    answer = s.get(f"http://{SITE}/v1/x?q=1", "-H", "Host: api.example.test")
    assert answer.split()[1:3] == ["GET", "/v1/x?q=1"], "the request reaches the backend unchanged"
    vips = {v["name"]: v for v in s.switch.show("vips")}
    hits = {r["name"]: r["hits"] for r in vips["site"]["l7"]["rules"]}
    assert hits == {"rule 1": 2, "rule 2": 1, "rule 3": 1, "rule 4": 1}, hits
    assert s.stats()["l7_spliced"] >= 8


@pytest.mark.parametrize("datapath", ["c", "python"])
def test_keep_alive_requests_stay_on_their_backend_and_show_conns_names_rule_and_pool(site, datapath):
    s = site(datapath)
    # One connection, six requests: every one answered by the backend the first was routed to, even the ones
    # another rule would have sent elsewhere (the switch reads only the first request).
    urls = [f"http://{SITE}/static/{i}" for i in range(3)] + [f"http://{SITE}/other/{i}" for i in range(3)]
    out = s.curl("-H", "Connection: keep-alive", *urls)
    names = [line.split()[0] for line in out.stdout.decode().splitlines()]
    assert names == ["static"] * 6, out
    hold = s.net.popen("c1", [sys.executable, "-c", (
        "import socket, sys\n"
        f"c = socket.create_connection(('{SITE}', 80), timeout=10)\n"
        "c.sendall(b'GET /v1/a HTTP/1.1\\r\\nHost: api.example.test\\r\\n\\r\\n')\n"
        "print(c.recv(4096).split(b'\\r\\n')[0].decode(), flush=True)\n"
        "sys.stdin.readline()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().startswith("HTTP/1.1 200")
        rows = [r for r in s.switch.show("conns") if r["vip"] == "site" and r.get("pool") == "api"]
        assert len(rows) == 1 and rows[0]["rule"] == "rule 1" and rows[0]["state"] == "established", rows
        assert rows[0]["backend"] in ("192.0.2.12:8080", "192.0.2.12:8081")
    finally:
        hold.kill()
        hold.wait()


@pytest.mark.parametrize("datapath", ["c", "python"])
def test_the_switch_answers_400_and_503_itself(site, datapath):
    s = site(datapath)
    bad = s.net.exec("c1", [sys.executable, "-c", (
        "import socket\n"
        f"c = socket.create_connection(('{SITE}', 80), timeout=5)\n"
        "c.sendall(b'GET / HTTP/1.1\\r\\nHost: a\\nX: b\\r\\n\\r\\n')\n"     # a bare LF: refused
        "data = b''\n"
        "try:\n"
        "    while chunk := c.recv(4096):\n"
        "        data += chunk\n"
        "except ConnectionResetError:\n"
        "    pass\n"
        "print(data.split(b'\\r\\n')[0].decode())\n")], capture_output=True, text=True, timeout=30)
    assert bad.stdout.strip() == "HTTP/1.1 400 Bad Request", bad
    no_rule = s.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{STRICT}/")
    assert no_rule.stdout == b"503", no_rule
    no_backend = s.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{STRICT}/", "-H", "Host: only.example.test")
    assert no_backend.stdout == b"503", no_backend
    stats = s.stats()
    assert stats["l7_http_400"] == 1 and stats["l7_bad_request_line_ending"] == 1
    assert stats["l7_http_503"] == 2 and stats["l7_backend_refused"] == 1, stats
    vips = {v["name"]: v for v in s.switch.show("vips")}
    assert vips["strict"]["l7"]["no_pool"] == 1
    assert s.get(f"http://{SITE}/").split()[0] in ("web1", "web2"), "the switch serves on"


def test_a_persistence_cookie_keeps_the_client_on_its_backend(site):
    s = site()
    plain = {s.get(f"http://{SITE}/").split()[0] for _ in range(4)}
    assert plain == {"web1", "web2"}, "without the cookie the pool's round robin alternates"
    value = persistence_value(Backend("192.0.2.11", 8081)).decode()
    held = {s.get(f"http://{SITE}/", "-b", f"PSWID={value}").split()[0] for _ in range(6)}
    assert held == {"web2"}
    vips = {v["name"]: v for v in s.switch.show("vips")}
    assert vips["site"]["l7"]["persistence_hits"] == 6
    assert s.get(f"http://{SITE}/", "-b", "PSWID=unknown").split()[0] in ("web1", "web2")


@pytest.mark.parametrize("datapath", ["c", "python"])
def test_the_switch_inserts_the_persistence_cookie_into_the_first_response(site, tmp_path, datapath):
    """insert = true: the first response carries Set-Cookie PSWID=<its backend>, the body arrives intact after the
    grown segment (the splice's deltas carry the growth), and a client that sends the cookie back stays."""
    s = site(datapath)
    jar = tmp_path / "jar.txt"
    size = 200000
    out = s.curl("-D", "-", "-c", str(jar), f"http://{STICKY}/bytes/{size}")
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    server = re.search(rb"X-Server: (\S+)", head).group(1).decode()
    address = {"web1": ("192.0.2.11", 8080), "web2": ("192.0.2.11", 8081)}[server]
    value = persistence_value(Backend(*address))
    assert b"Set-Cookie: PSWID=" + value + b"; Path=/" in head, head
    pattern = bytes(range(256)) * 256
    assert body == (pattern * 4)[:size]
    again = {s.get(f"http://{STICKY}/", "-b", str(jar)).split()[0] for _ in range(4)}
    assert again == {server}
    plain = s.curl("-D", "-", "-o", "/dev/null", f"http://{STICKY}/", "-b", f"PSWID={value.decode()}")
    assert b"Set-Cookie" not in plain.stdout, "a client that has the cookie is not given it again"
    assert s.stats()["l7_cookies_inserted"] == 1


def test_a_backend_still_holding_the_ports_in_time_wait_is_cleared_at_once(site):
    """The client first talks to web1 directly from port 41000 (web1 closes first and keeps TIME_WAIT), then to
    the VIP from the same port, the cookie sending it to web1: the switch's SYN in the client's name meets the old
    connection.  Whether web1 takes the SYN or answers with the old connection's ACK, the request is served
    without waiting for a SYN retry; the ACK is answered with a reset, as the client's own stack would."""
    s = site()
    # Read to the end: web1 closes first, so the TIME_WAIT is web1's and the client's port is free again at once.
    direct = s.net.exec("c1", [sys.executable, "-c", (
        "import socket\n"
        "c = socket.socket()\n"
        "c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "c.bind(('198.51.100.11', 41000))\n"
        "c.connect(('192.0.2.11', 8080))\n"
        "c.sendall(b'GET / HTTP/1.1\\r\\nHost: web1\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "data = b''\n"
        "while chunk := c.recv(4096):\n"
        "    data += chunk\n"
        "c.close()\n"
        "print(data.partition(b'\\r\\n\\r\\n')[2].split()[0].decode())\n")], capture_output=True, text=True,
        timeout=30)
    assert direct.stdout.strip() == "web1", direct
    value = persistence_value(Backend("192.0.2.11", 8080)).decode()
    assert s.get(f"http://{SITE}/", "--local-port", "41000", "-b", f"PSWID={value}").split()[0] == "web1"
    stats = s.stats()
    print("time-wait resets:", stats["l7_backend_time_wait"])     # shown with pytest -s
    assert stats["l7_syn_retries"] == 0 and stats["l7_http_503"] == 0, stats


def test_sni_routes_tls_without_touching_it(site):
    s = site(tls=True)

    def hello(name):
        args = ["openssl", "s_client", "-connect", f"{TLS}:443", "-quiet", "-verify_quiet"]
        out = s.net.exec("c1", args + (["-servername", name] if name else ["-noservername"]),
                         input=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", capture_output=True,
                         timeout=30)
        return out.stdout.decode(errors="replace")

    assert "X-Server: tls-api" in hello("api.example.test")
    assert "X-Server: tls-web" in hello("www.example.test")
    assert "X-Server: tls-web" in hello(None), "no SNI: the default pool"
    curl = s.get("https://api.example.test/", "-k", "--resolve", f"api.example.test:443:{TLS}")
    assert curl.split()[0] == "tls-api"


def test_fifty_megabytes_each_way_arrive_intact_with_consistent_sequence_numbers(site, tmp_path):
    s = site()
    size = 50 * 1024 * 1024
    pattern = bytes(range(256)) * 256
    expected = hashlib.sha256((pattern * (size // len(pattern) + 1))[:size]).hexdigest()
    client_pcap, backend_pcap = tmp_path / "client.pcap", tmp_path / "backend.pcap"
    # 64 MiB of capture buffer each: a capture that drops packets under load proves nothing (checked below).
    dumps = [s.net.popen(host, ["tcpdump", "-i", "eth0", "-s", "96", "-B", "65536", "-w", str(path), "-U",
                                "tcp port 80 or tcp port 8081 or tcp port 8080"], stderr=subprocess.PIPE)
             for host, path in (("c1", client_pcap), ("b3", backend_pcap))]
    try:
        for d in dumps:
            assert b"listening" in d.stderr.readline()
        down = s.curl("-o", "-", f"http://{SITE}/static/bytes/{size}", timeout=120)
        assert down.returncode == 0, down.stderr
        assert hashlib.sha256(down.stdout).hexdigest() == expected
        upload = tmp_path / "upload.bin"
        upload.write_bytes((pattern * (size // len(pattern) + 1))[:size])
        up = s.curl("--data-binary", f"@{upload}", "-H", "Expect:", f"http://{SITE}/static/up", timeout=120)
        assert up.returncode == 0, up.stderr
        assert up.stdout.decode().split() == ["static", expected, str(size)]
    finally:
        time.sleep(1.0)
        for d in dumps:
            d.terminate()
            d.wait()
    for d in dumps:
        summary = d.stderr.read().decode()
        assert "\n0 packets dropped by kernel" in summary, summary
    sides = [_tcp_summary(path) for path in (client_pcap, backend_pcap)]
    print("client side, backend side:", sides)         # shown with pytest -s
    for side in sides:
        assert side["retransmissions"] < side["segments"] / 100, sides
    # Relative sequence numbers count bytes from each side's own ISN: the same on both sides of the splice.
    assert sides[0]["last_seq"] == sides[1]["last_seq"], sides
    # The window scale the backend announced is the one the switch offers clients from then on (the splice does
    # not rescale windows): the upload, the second connection, had no mismatch.
    shifts = subprocess.run(["tshark", "-r", str(backend_pcap), "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 1",
                             "-T", "fields", "-e", "tcp.options.wscale.shift"], capture_output=True, text=True,
                            timeout=60).stdout.split()
    assert len(set(shifts)) == 1, shifts
    vips = {v["name"]: v for v in s.switch.show("vips")}
    assert vips["site"]["l7"]["window_scale"] == int(shifts[0])
    assert s.stats()["l7_wscale_mismatch"] <= 1


def _tcp_summary(pcap):
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport",
                          "-e", "tcp.seq", "-e", "tcp.len", "-e", "tcp.analysis.retransmission"],
                         capture_output=True, text=True, timeout=300).stdout
    segments = retransmissions = 0
    last = {}
    for line in out.splitlines():
        stream, sport, seq, length, retransmitted = (line.split("\t") + [""] * 5)[:5]
        segments += 1
        retransmissions += bool(retransmitted)
        if seq and length:
            key = (stream, "client" if int(sport) > 32768 else "server")
            last[key] = max(last.get(key, 0), int(seq) + int(length))
    return {"segments": segments, "retransmissions": retransmissions, "last_seq": sorted(last.values())}


def test_two_hundred_keep_alive_clients(site):
    s = site()
    out = s.net.exec("c1", [sys.executable, "-c", (
        "import http.client, threading\n"
        "results = []\n"
        "def client(i):\n"
        f"    c = http.client.HTTPConnection('{SITE}', 80, timeout=30)\n"
        "    servers = set()\n"
        "    for j in range(5):\n"
        "        c.request('GET', f'/c{i}/r{j}')\n"
        "        r = c.getresponse()\n"
        "        body = r.read().decode()\n"
        "        assert r.status == 200 and body.split()[2] == f'/c{i}/r{j}', body\n"
        "        servers.add(r.getheader('X-Server'))\n"
        "    results.append(len(servers))\n"
        "threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]\n"
        "for t in threads: t.start()\n"
        "for t in threads: t.join()\n"
        "print(len(results), set(results))\n")], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "200 {1}", out
    assert s.stats()["l7_spliced"] >= 200


def test_slow_loris_clients_are_cut_off_while_others_are_served(site):
    s = site()
    slow = s.net.popen("c1", [sys.executable, "-c", (
        "import socket, threading, time\n"
        "outcomes = []\n"                  # printed once all are in: threads printing at once interleave
        "def slow(i):\n"
        f"    c = socket.create_connection(('{SITE}', 80), timeout=10)\n"
        "    try:\n"
        "        for b in b'GET / HTTP/1.1\\r\\nHost: slow.example.test\\r\\nX-Padding: ' + b'x' * 100:\n"
        "            c.send(bytes([b]))\n"
        "            time.sleep(1.0)\n"
        "        outcomes.append('served')\n"
        "    except OSError as exc:\n"
        "        outcomes.append('cut ' + type(exc).__name__)\n"
        "threads = [threading.Thread(target=slow, args=(i,)) for i in range(5)]\n"
        "for t in threads: t.start()\n"
        "for t in threads: t.join()\n"
        "print('\\n'.join(outcomes), flush=True)\n")], stdout=subprocess.PIPE, text=True)
    try:
        served = 0
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            served += s.get(f"http://{SITE}/").split()[0] in ("web1", "web2")
        lines = slow.communicate(timeout=30)[0].splitlines()
    finally:
        slow.kill()
        slow.wait()
    assert served >= 5
    assert lines and all(line.startswith("cut") for line in lines) and len(lines) == 5, lines
    assert s.stats()["l7_request_timeout"] == 5


def test_a_syn_flood_costs_the_switch_no_memory(site):
    """SYN cookies: a thousand SYNs that never complete leave no session and no connection behind."""
    s = site()
    before = s.stats()
    flood = s.net.exec("c1", [sys.executable, "-c", (
        "import logging; logging.getLogger('scapy').setLevel(logging.ERROR)\n"
        "from scapy.all import IP, TCP, send\n"
        f"send([IP(dst='{SITE}')/TCP(sport=20000 + i, dport=80, flags='S', seq=i) for i in range(1000)],"
        " verbose=False)\n")], capture_output=True, text=True, timeout=120)
    assert flood.returncode == 0, flood.stderr
    time.sleep(0.5)
    after = s.stats()
    assert after["l7_syn_cookies_sent"] - before["l7_syn_cookies_sent"] >= 900
    assert after["l7_sessions"] == 0 and after["conn_conns"] == before["conn_conns"]
    assert s.get(f"http://{SITE}/").split()[0] in ("web1", "web2")
