"""The `pyswitch` command as a user meets it: exit codes, one-sentence errors, clean exits, show tables."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pyswitch.control.client import request

PYSWITCH = [sys.executable, "-m", "pyswitch"]


def run(argv, **kw):
    return subprocess.run(PYSWITCH + argv, capture_output=True, text=True, timeout=30, **kw)


def one_sentence(stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return len(lines) == 1 and "Traceback" not in stderr and lines[0].startswith("pyswitch: ")


def write(tmp_path, text, name="sw.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_bad_config_names_the_key(tmp_path):
    config = write(tmp_path, '[[port]]\nname = "p1"\ntype = "afpacket"\ndevice = "psw-x"\nvlan = 5000\n')
    result = run(["run", config])
    assert result.returncode == 2
    assert one_sentence(result.stderr), result.stderr
    assert "port[0].vlan" in result.stderr


def test_unknown_key_is_refused(tmp_path):
    config = write(tmp_path, '[switch]\nname = "x"\ndatapth = "c"\n')
    result = run(["run", config])
    assert result.returncode == 2 and "switch.datapth: unknown key" in result.stderr


def test_workers_with_the_python_datapath_are_refused(tmp_path):
    """Also when --datapath python overrides a config that asks for workers."""
    config = write(tmp_path, '[switch]\nname = "x"\nworkers = 2\n')
    result = run(["run", config, "--datapath", "python"])
    assert result.returncode == 2 and one_sentence(result.stderr), result.stderr
    assert "config error: switch.workers:" in result.stderr


def test_missing_interface_is_one_sentence(tmp_path):
    config = write(tmp_path, '[[port]]\nname = "p1"\ntype = "afpacket"\ndevice = "psw-nothere"\n')
    result = run(["run", config])
    assert result.returncode == 1
    assert one_sentence(result.stderr), result.stderr
    assert "'psw-nothere' does not exist" in result.stderr


def test_show_without_a_switch(tmp_path):
    result = run(["show", "fdb", "--name", "psw-none"])
    assert result.returncode == 1 and one_sentence(result.stderr)


@pytest.fixture
def veth(netns_id):
    """A veth pair in the root namespace, unaddressed, removed afterwards."""
    a, b = f"psw-{netns_id}ca", f"psw-{netns_id}cb"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        for dev in (a, b):
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=True)
            subprocess.run(["ip", "link", "set", dev, "up"], check=True)
        yield a
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)


@pytest.mark.netns
def test_missing_privilege_is_one_sentence(tmp_path, veth):
    config = write(tmp_path, f'[switch]\nname = "cli-{veth}"\n[[port]]\nname = "p1"\ntype = "afpacket"\n'
                             f'device = "{veth}"\n')
    drop = ["setpriv", "--bounding-set", "-net_raw,-net_admin", "--inh-caps", "-net_raw,-net_admin", "--"]
    result = subprocess.run(drop + PYSWITCH + ["run", config], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert one_sentence(result.stderr), result.stderr
    assert "CAP_NET_RAW" in result.stderr


@pytest.fixture
def running_switch(tmp_path, veth, netns_id):
    name = f"cli{netns_id}"
    tap = f"psw-{netns_id}ct"
    config = write(tmp_path, f'[switch]\nname = "{name}"\n'
                             f'[[port]]\nname = "p1"\ntype = "afpacket"\ndevice = "{veth}"\nvlan = 10\n'
                             f'[[port]]\nname = "t1"\ntype = "tap"\ndevice = "{tap}"\nvlan = 10\n')
    log = open(tmp_path / "switch.log", "w")
    proc = subprocess.Popen(PYSWITCH + ["run", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                request(name, {"cmd": "show", "what": "stats"}, timeout=1)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "switch.log").read_text()
                assert time.monotonic() < deadline, "the switch did not answer"
                time.sleep(0.1)
        yield name, tap, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "link", "del", tap], check=False, capture_output=True)
        if os.path.exists(f"/run/pyswitch/{name}.sock"):  # only a killed switch leaves it
            os.unlink(f"/run/pyswitch/{name}.sock")


@pytest.mark.netns
def test_show_prints_tables_and_json(running_switch):
    name, tap, _ = running_switch
    table = run(["show", "ports", "--name", name])
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["name", "type", "device"]
    assert [r.split()[0] for r in rows] == ["p1", "t1"]
    ports = json.loads(run(["show", "ports", "--name", name, "--json"]).stdout)
    assert {"name", "type", "device", "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "drops"} <= set(ports[0])
    stats = json.loads(run(["show", "stats", "--name", name, "--json"]).stdout)
    assert {"upcalls", "flows", "rx_packets", "tx_packets"} <= set(stats)
    assert isinstance(json.loads(run(["show", "fdb", "--name", name, "--json"]).stdout), list)
    assert isinstance(json.loads(run(["show", "flows", "--name", name, "--json"]).stdout), list)
    assert run(["show", "stats", "--name", name]).stdout.startswith("name")


@pytest.mark.netns
def test_sigterm_exits_zero_and_removes_what_it_made(running_switch):
    name, tap, proc = running_switch
    assert os.path.exists(f"/sys/class/net/{tap}")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not os.path.exists(f"/sys/class/net/{tap}"), "the TAP device outlived the switch"
    assert not os.path.exists(f"/run/pyswitch/{name}.sock"), "the control socket outlived the switch"


@pytest.mark.netns
def test_second_switch_with_the_same_name_is_refused(running_switch, tmp_path):
    name, _, _ = running_switch
    config = write(tmp_path, f'[switch]\nname = "{name}"\n', name="dup.toml")
    result = run(["run", config])
    assert result.returncode == 1 and one_sentence(result.stderr) and "already running" in result.stderr


def test_a_vip_without_routed_interfaces_is_refused(tmp_path):
    config = write(tmp_path, '[[vip]]\nname = "web"\naddress = "203.0.113.10"\nport = 80\n')
    result = run(["run", config])
    assert result.returncode == 2 and one_sentence(result.stderr) and "vip[0]" in result.stderr
    assert "[[vlan]]" in result.stderr
