"""`pyswitch trace` on the demo (netns/demo.toml): what it says a frame does is what the running switch then does
with that same frame, sent by scapy from h1 and watched by tcpdump in h2 and h3."""
import json
import subprocess
import sys
import tempfile
import time

import pytest

from hosts import mac_of, ping

pytestmark = pytest.mark.netns

DEMO = "netns/demo.toml"
DEMO_SW = "netns/demo-sw.toml"
H1, H2 = "198.51.100.11", "198.51.100.12"
UNKNOWN_MAC = "02:00:00:00:00:99"           # nobody in the demo has it
TO_H2_PORT, FLOOD_PORT = 33301, 33302       # UDP ports that tell the two traced frames apart in a capture
SEND = ("import sys\nfrom scapy.all import Ether, sendp\n"
        "for frame in sys.argv[1:]:\n    sendp(Ether(bytes.fromhex(frame)), iface='eth0', verbose=False)\n")


def start_capture(topo, host, interface):
    """tcpdump in `host` (only the two traced frames), once it listens; returns a function that stops it and
    gives the lines it printed.  Output to a file: a pipe nobody reads while it runs could stall it."""
    output = tempfile.TemporaryFile(mode="w+")
    process = topo.popen(host, ["tcpdump", "-n", "-l", "-c", "20", "-i", interface,
                                f"udp and (dst port {TO_H2_PORT} or dst port {FLOOD_PORT})"],
                         stdout=output, stderr=subprocess.PIPE, text=True)
    try:
        while "listening on" not in (line := process.stderr.readline()):
            assert line, "tcpdump exited before listening"
    except BaseException:
        process.kill()
        process.wait()
        raise

    def stop():
        time.sleep(0.5)                 # what crossed is read and printed before tcpdump is told to stop
        if process.poll() is None:
            process.terminate()         # by its own PID: the capture this test started
        process.communicate(timeout=10)
        output.seek(0)
        return output.read()
    return stop


def cli_trace(topo, switch, port, spec):
    """`pyswitch trace` as a user runs it; returns its JSON answer and its table form."""
    base = [sys.executable, "-m", "pyswitch", "trace", port, spec, "--name", switch.name]
    table = subprocess.run(base, capture_output=True, text=True, timeout=10)
    assert table.returncode == 0, table.stderr
    answer = subprocess.run(base + ["--json"], capture_output=True, text=True, timeout=10, check=True)
    return json.loads(answer.stdout), table.stdout


def test_trace_agrees_with_what_the_switch_does(topology):
    topo = topology(DEMO, switches=[DEMO_SW], datapath="c")
    switch = topo.switch("demo")
    assert ping(topo, "h1", H2, count=1), switch.log()          # both MACs learned
    mac1, mac2 = mac_of(topo, "h1", "eth0"), mac_of(topo, "h2", "eth0")
    to_h2 = f"eth_src={mac1},eth_dst={mac2},ip_src={H1},ip_dst={H2},udp_dst={TO_H2_PORT}"
    flood = f"eth_src={mac1},eth_dst={UNKNOWN_MAC},ip_src={H1},ip_dst={H2},udp_dst={FLOOD_PORT}"

    unicast, table = cli_trace(topo, switch, "p1", to_h2)
    assert unicast["verdict"] == "output to p2", unicast
    assert [o["port"] for o in unicast["outputs"]] == ["p2"] and unicast["outputs"][0]["eth_dst"] == mac2
    assert "verdict: output to p2" in table and "p2" in table
    flooded, table = cli_trace(topo, switch, "p1", flood)
    assert flooded["verdict"] == "flood to p2,p3", flooded
    assert any("unknown" in step for step in flooded["steps"]), flooded

    at_h2 = start_capture(topo, "h2", "eth0")
    try:
        at_h3 = start_capture(topo, "h3", topo.tap_device("psw-tap3"))
    except BaseException:
        at_h2()
        raise
    try:
        topo.exec("h1", [sys.executable, "-c", SEND, unicast["frame"], flooded["frame"]], check=True, timeout=20)
        ping(topo, "h1", H2, count=1)   # a round trip after the frames: they have crossed by its end
    finally:
        seen_h2, seen_h3 = at_h2(), at_h3()
    assert f"{H2}.{TO_H2_PORT}:" in seen_h2, seen_h2
    assert f"{H2}.{FLOOD_PORT}:" in seen_h2, seen_h2
    assert f"{H2}.{FLOOD_PORT}:" in seen_h3, seen_h3                 # flooded: h3 gets it too
    assert f".{TO_H2_PORT}:" not in seen_h3, seen_h3                 # output to p2: h3 never sees it

    explained = switch.request({"cmd": "show", "what": "flows"})
    assert any(row["explain"].startswith(f"from p1 VLAN 10, {mac1} -> {mac2}: output to p2") for row in explained), \
        [row["explain"] for row in explained]
    out = subprocess.run([sys.executable, "-m", "pyswitch", "show", "flows", "--explain", "--name", switch.name],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert "explain" in out.splitlines()[0] and "output to p2" in out
