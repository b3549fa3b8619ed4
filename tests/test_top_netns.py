"""`pyswitch top` in a real terminal: tmux runs it beside a switch on netns/demo.toml while h1 pings h2; the
screen tmux shows (capture-pane) names the ports and its counters move; q ends it."""
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.netns

DEMO, DEMO_SW = "netns/demo.toml", "netns/demo-sw.toml"


def screen(server):
    return subprocess.run(["tmux", "-L", server, "capture-pane", "-p", "-t", "top"], capture_output=True,
                          text=True, timeout=10).stdout


def port_row(text, name):
    return next((line.split() for line in text.splitlines() if line.startswith(name + " ")), None)


def test_top_shows_the_ports_and_moving_counters_and_quits_on_q(topology, netns_id):
    topo = topology(DEMO, switches=[DEMO_SW], datapath="c")
    name = topo.switch("demo").name
    server = f"psw-top-{netns_id}"          # a tmux server of the test's own, never the user's
    subprocess.run(["tmux", "-L", server, "new-session", "-d", "-s", "top", "-x", "110", "-y", "30",
                    f"{sys.executable} -m pyswitch top --name {name}"], check=True, timeout=10)
    pinger = topo.popen("h1", ["ping", "-c", "40", "-i", "0.1", "198.51.100.12"], stdout=subprocess.DEVNULL)
    try:
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = screen(server)
            row = port_row(text, "p1")
            if row and f"pyswitch top - {name}" in text and row[1] not in ("0", "RX"):
                seen.append((text, row))
                if len(seen) == 2:
                    break
            time.sleep(0.5)
        assert len(seen) == 2, screen(server)
        text, row = seen[-1]
        print(text)                         # shown with pytest -s
        assert port_row(text, "p2") and port_row(text, "p3"), text
        assert "macs 0 " not in text, "h1 and h2 are learned"
        assert float(row[1].rstrip("kMG")) > 0, "p1 receives h1's pings: its RX pps moves"
        subprocess.run(["tmux", "-L", server, "send-keys", "-t", "top", "q"], check=True, timeout=10)
        deadline = time.monotonic() + 5
        while subprocess.run(["tmux", "-L", server, "has-session", "-t", "top"], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "top did not quit on q"
            time.sleep(0.1)
    finally:
        pinger.kill()
        pinger.wait()
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True)
