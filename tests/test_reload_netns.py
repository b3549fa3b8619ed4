"""`pyswitch reload` and SIGHUP against a running load balancer: a changed config applies without a restart,
and the connections it does not concern carry on, byte for byte, without a reset."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hosts import ping
from test_lb_netns import BACKENDS, VIP, lb, switch_config  # noqa: F401  (lb is a fixture)

pytestmark = pytest.mark.netns

CLIENT = os.path.join(os.path.dirname(__file__), "reload_client.py")
VIP2 = "203.0.113.20"
ROUTED = "198.18.0.1"           # held on b3's loopback; the route toward it changes from b2 to b3
ROUTE = '[[route]]\nprefix = "198.18.0.0/24"\nvia = "{via}"\n\n'
VIP2_TEXT = ('[[vip]]\nname = "web2"\naddress = "203.0.113.20"\nport = 80\nprotocol = "tcp"\nmode = "nat"\n'
             'scheduler = "rr"\n\n[[vip.backend]]\naddress = "192.0.2.11"\nport = 8080\n\n'
             '[[vip.backend]]\naddress = "192.0.2.12"\nport = 8080\n\n')


def reload_cli(switch):
    return subprocess.run([sys.executable, "-m", "pyswitch", "reload", "--name", switch.name],
                          capture_output=True, text=True, timeout=10)


def rewrite(switch, text):
    with open(switch.config_path, "w") as f:
        f.write(text)


def without_backend(text, address):
    block = f'[[vip.backend]]\naddress = "{address}"\nport = 8080\nweight = 1\n\n'
    assert block in text
    return text.replace(block, "")


def with_route(text, via):
    """The [[route]] goes before the first [[vip]]: tables after it would belong to the VIP's array."""
    head, _, tail = text.partition("[[vip]]")
    return head + ROUTE.format(via=via) + "[[vip]]" + tail


@pytest.mark.parametrize("datapath", ["c", "python"])
def test_a_reload_applies_and_a_long_connection_carries_on(lb, datapath):
    lb = lb(datapath=datapath, health="http", interval_s=0.3)
    sw = lb.switch
    lb.net.exec("b3", ["ip", "addr", "add", f"{ROUTED}/32", "dev", "lo"], check=True)
    with open(sw.config_path) as f:
        original = f.read()
    rewrite(sw, with_route(original, "192.0.2.12"))
    result = reload_cli(sw)
    assert result.returncode == 0 and "route 198.18.0.0/24 via 192.0.2.12" in result.stdout, result
    assert not ping(lb.net, "c1", ROUTED), "b2 does not hold the address"

    client = lb.net.popen("c1", [sys.executable, CLIENT, VIP, "80", "150", "0.02"], stdout=subprocess.PIPE,
                          text=True)
    try:
        first = client.stdout.readline().split()
        assert first[:1] == ["backend"], first
        holder = first[1]
        gone = next(name for name in BACKENDS if name != holder)
        time.sleep(1.0)                             # data flows before the reload...
        text = with_route(without_backend(original, BACKENDS[gone]), "192.0.2.13") + VIP2_TEXT
        rewrite(sw, text)
        result = reload_cli(sw)
        out = json.loads(client.communicate(timeout=30)[0])   # ...and after it
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert result.returncode == 0, result.stderr
    for change in ("route 198.18.0.0/24 via 192.0.2.13", "vip web2 added",
                   f"vip web: backend {BACKENDS[gone]}:8080 removed"):
        assert change in result.stdout, result.stdout
    got = (out["backend"], out["sent"], out["echoed"], out["mismatch"], out["error"])
    assert got == (holder, 150, 150, None, None), out

    assert ping(lb.net, "c1", ROUTED), "the changed route leads to b3 now"
    web2 = lb.net.exec("c1", ["curl", "-s", "--max-time", "5", f"http://{VIP2}/"], capture_output=True, text=True)
    assert web2.stdout.strip() in ("b1", "b2"), web2
    results, _ = lb.curl(12)
    assert len(results) == 12 and {name for name, _ in results} == set(BACKENDS) - {gone}, results
    vips = {v["name"]: v for v in sw.show("vips")}
    assert set(vips) == {"web", "web2"}
    assert BACKENDS[gone] not in {b["address"] for b in vips["web"]["backends"]}
    assert sw.show("stats")["pid"] == sw.pid, "the same process: no restart"


def test_sighup_reloads_and_a_bad_or_fixed_change_is_refused_whole(lb):
    lb = lb(datapath="c")
    sw = lb.switch
    with open(sw.config_path) as f:
        original = f.read()
    # A bad file: nothing of it is applied, not even the VIP it also adds, and the switch says which key.
    rewrite(sw, original.replace('mode = "nat"', 'mode = "teleport"') + VIP2_TEXT)
    result = reload_cli(sw)
    assert result.returncode == 2 and "vip[0].mode" in result.stderr, result
    # A change the running switch cannot make: refused whole, naming the key.
    rewrite(sw, original.replace('datapath = "c"', 'datapath = "python"') + VIP2_TEXT)
    result = reload_cli(sw)
    assert result.returncode == 2 and "switch.datapath" in result.stderr, result
    rewrite(sw, original.replace('vlan = 20', 'vlan = 30', 1) + VIP2_TEXT)
    result = reload_cli(sw)
    assert result.returncode == 2 and "port[1].vlan" in result.stderr, result
    assert [v["name"] for v in sw.show("vips")] == ["web"], "nothing was applied"
    results, _ = lb.curl(3)
    assert len(results) == 3, "and the switch serves on"

    # SIGHUP applies the file as it is.
    rewrite(sw, original + VIP2_TEXT)
    os.kill(sw.pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while len(sw.show("vips")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [v["name"] for v in sw.show("vips")] == ["web", "web2"], sw.log()
    web2 = lb.net.exec("c1", ["curl", "-s", "--max-time", "5", f"http://{VIP2}/"], capture_output=True, text=True)
    assert web2.stdout.strip() in ("b1", "b2"), web2
    # A bad file by SIGHUP: logged, the running config stays.
    rewrite(sw, original.replace("port = 80\n", "port = 0\n", 1))
    os.kill(sw.pid, signal.SIGHUP)
    time.sleep(0.5)
    assert "reload refused" in sw.log() and "vip[0].port" in sw.log(), sw.log()[-2000:]
    assert len(sw.show("vips")) == 2
    # Removing the VIP again closes its connections and its address stops answering.
    rewrite(sw, original)
    assert reload_cli(sw).returncode == 0
    web2 = lb.net.exec("c1", ["curl", "-s", "--max-time", "3", f"http://{VIP2}/"], capture_output=True, text=True)
    assert web2.returncode != 0
    assert sw.process.poll() is None
