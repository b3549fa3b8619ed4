"""Small programs and helpers the integration tests run in hosts (namespaces) with the test's own interpreter."""
import json
import os
import subprocess
import sys
import time

# A TCP sink and source run inside the hosts with the test's own interpreter.
SINK = """
import hashlib, socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.create_server((sys.argv[1], int(sys.argv[2])), family=family)
print("ready", flush=True)
conn, _ = srv.accept()
h = hashlib.sha256(); n = 0
while chunk := conn.recv(1 << 20):
    h.update(chunk); n += len(chunk)
print(n, h.hexdigest(), flush=True)
"""
SOURCE = """
import hashlib, random, socket, sys
rng = random.Random(7); total = int(sys.argv[3]); h = hashlib.sha256()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
sent = 0
while sent < total:
    chunk = rng.randbytes(min(1 << 20, total - sent)); s.sendall(chunk); h.update(chunk); sent += len(chunk)
s.close()
print(sent, h.hexdigest(), flush=True)
"""
CONNECT = """
import socket, sys
for port in sys.argv[2:]:
    s = socket.socket(); s.settimeout(5)
    try:
        s.connect((sys.argv[1], int(port)))
    except ConnectionRefusedError:
        pass                      # a RST came back: the SYN crossed the switch
    s.close()
"""
SEND_RAW = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for frame in sys.argv[2:]:
    s.send(bytes.fromhex(frame))
"""



def ping(topo, host, address, count=2):
    result = topo.exec(host, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", address],
                       capture_output=True, text=True)
    return result.returncode == 0


def mac_of(topo, host, ifname):
    out = topo.exec(host, ["ip", "-j", "link", "show", ifname], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]["address"]


def transfer(topo, src, dst, address, size):
    sink = topo.popen(dst, [sys.executable, "-c", SINK, address, "5001"], stdout=-1, text=True)
    try:
        assert sink.stdout.readline().strip() == "ready"
        sent = topo.exec(src, [sys.executable, "-c", SOURCE, address, "5001", str(size)],
                         capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        received = sink.stdout.readline().split()
        sink.wait(timeout=30)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    return sent.stdout.split(), received


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_while_link_down(topo, switch, end: str, seconds: float = 2) -> float:
    """The share of a core `switch` uses while the root-namespace interface `end` (one of its ports) is down."""
    subprocess.run(["ip", "link", "set", end, "down"], check=True)
    try:
        before = cpu_seconds(switch.pid)
        time.sleep(seconds)
        return (cpu_seconds(switch.pid) - before) / seconds
    finally:
        subprocess.run(["ip", "link", "set", end, "up"], check=True)
