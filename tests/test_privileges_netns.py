"""A switch that runs as nobody with CAP_NET_RAW and CAP_NET_ADMIN only forwards real traffic; without a capability
it needs it exits at once with one sentence naming it.

The switch is started here under setpriv (the topology fixture's own switches run as root); its control socket
lives in a directory nobody owns, as docs/RELIABILITY.md "Config and privileges" tells an operator to do."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pyswitch.config import ControlConfig, from_dict
from pyswitch.control.client import request
from pyswitch import privileges

pytestmark = pytest.mark.netns
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_S = 15.0


def setpriv(caps):
    """The argv prefix that runs a command as nobody:nogroup with exactly `caps` (e.g. "+net_raw,+net_admin")."""
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", f"--inh-caps=-all,{caps}",
            f"--ambient-caps=-all,{caps}", "--bounding-set=-all," + caps] if caps else \
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]


def switch_config(nobody_dir, net, port_type="afpacket"):
    """The switch's config, beside its control directory: nobody must read it (pytest's tmp dirs are 0700)."""
    path = os.path.join(os.path.dirname(nobody_dir), f"sw-{port_type}.toml")
    with open(path, "w") as f:
        f.write(f'[switch]\nname = "priv{net.id}"\n'
                + "".join(f'[[port]]\nname = "p{i}"\ntype = "{port_type}"\ndevice = "psw-{net.id}sw-h{i}"\n'
                          f'vlan = 10\n' for i in (1, 2)))
    return path


@pytest.fixture
def nobody_dir(netns_id):
    """The control socket's directory, owned by nobody (the switch's user must be able to create it there),
    in a root-owned directory that also holds the config."""
    top = f"/run/psw-{netns_id}-priv"
    os.mkdir(top, 0o755)
    path = os.path.join(top, "ctl")
    os.mkdir(path, 0o755)
    shutil.chown(path, "nobody", "nogroup")
    yield path
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def run_switch(tmp_path):
    """run_switch(caps, config, control_dir) -> Popen of `pyswitch run` under setpriv; stopped by PID after."""
    started = []

    def run(caps, config, control_dir):
        log = open(tmp_path / f"switch{len(started)}.log", "w+")
        process = subprocess.Popen([*setpriv(caps), sys.executable, "-m", "pyswitch", "run", config,
                                    "--control-dir", control_dir], stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=ROOT)
        process.log = log
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.log.close()


def log_of(process):
    process.log.seek(0)
    return process.log.read()


def wait_ready(process, name, control_dir):
    deadline = time.monotonic() + START_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"switch exited with {process.returncode}:\n{log_of(process)}")
        try:
            return request(name, {"cmd": "show", "what": "stats"}, timeout=1.0, directory=control_dir)
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"switch did not answer within {START_S} s:\n{log_of(process)}")
            time.sleep(0.05)


def capabilities_of(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return int(fields["Uid"][1]), int(fields["CapEff"][0], 16)


def test_switch_as_nobody_with_net_raw_and_net_admin_forwards(topology, tmp_path, nobody_dir, run_switch):
    net = topology("netns/demo.toml")
    config = switch_config(nobody_dir, net)
    switch = run_switch("+net_raw,+net_admin", config, nobody_dir)
    wait_ready(switch, f"priv{net.id}", nobody_dir)

    uid, caps = capabilities_of(switch.pid)
    assert uid == 65534
    assert caps == (1 << privileges.CAP_NET_RAW) | (1 << privileges.CAP_NET_ADMIN), hex(caps)
    sock = os.stat(os.path.join(nobody_dir, f"priv{net.id}.sock"))
    assert (sock.st_uid, sock.st_mode & 0o777) == (65534, 0o600)

    ping = net.exec("h1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.12"], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    stats = request(f"priv{net.id}", {"cmd": "show", "what": "stats"}, directory=nobody_dir)
    assert stats["rx_packets"] >= 6 and stats["tx_packets"] >= 6, stats

    switch.send_signal(signal.SIGTERM)
    assert switch.wait(timeout=5) == 0, log_of(switch)
    assert os.listdir(nobody_dir) == []         # its socket went with it


@pytest.mark.parametrize("caps, missing", [("+net_admin", "CAP_NET_RAW"), ("", "CAP_NET_RAW")])
def test_without_net_raw_exits_naming_it(topology, tmp_path, nobody_dir, run_switch, caps, missing):
    net = topology("netns/demo.toml")
    switch = run_switch(caps, switch_config(nobody_dir, net), nobody_dir)
    assert switch.wait(timeout=15) == 1
    output = log_of(switch).strip()
    assert output.count("\n") == 0, output        # one line: no traceback, no log of ports half opened
    assert output.startswith(f"pyswitch: missing capability {missing}, which port p1's AF_PACKET socket needs"), \
        output


def test_a_down_interface_without_net_admin_is_named(topology, tmp_path, nobody_dir, run_switch):
    net = topology("netns/demo.toml")
    subprocess.run(["ip", "link", "set", f"psw-{net.id}sw-h2", "down"], check=True)
    switch = run_switch("+net_raw", switch_config(nobody_dir, net), nobody_dir)
    assert switch.wait(timeout=15) == 1
    last = log_of(switch).strip().splitlines()[-1]
    assert last == f"pyswitch: port p2: interface 'psw-{net.id}sw-h2' is down, and bringing it up needs " \
                   f"CAP_NET_ADMIN", last


def test_afxdp_needs_bpf_and_ipc_lock_too(topology, tmp_path, nobody_dir, run_switch):
    """afxdp ports: without CAP_BPF the switch names it; with CAP_BPF and CAP_IPC_LOCK (the UMEMs are locked
    memory) added, nobody's switch forwards through AF_XDP."""
    net = topology("netns/demo.toml")
    config = switch_config(nobody_dir, net, port_type="afxdp")
    refused = run_switch("+net_raw,+net_admin", config, nobody_dir)
    assert refused.wait(timeout=15) == 1
    assert log_of(refused).strip().startswith("pyswitch: missing capability CAP_BPF, which loading port p1's XDP "
                                              "program needs"), log_of(refused)

    switch = run_switch("+net_raw,+net_admin,+bpf,+ipc_lock", config, nobody_dir)
    wait_ready(switch, f"priv{net.id}", nobody_dir)
    ports = request(f"priv{net.id}", {"cmd": "show", "what": "ports"}, directory=nobody_dir)
    assert all(p["xdp_mode"] in ("native", "generic") for p in ports), ports
    ping = net.exec("h1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.12"], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_needed_capabilities_follow_the_config():
    """privileges.check on capability masks: what each port kind asks for, and the sentence naming it."""
    full = (1 << 41) - 1
    base = (1 << privileges.CAP_NET_RAW) | (1 << privileges.CAP_NET_ADMIN)
    afpacket = from_dict({"port": [{"name": "a", "type": "afpacket", "device": "psw-a"}]})
    afxdp = from_dict({"port": [{"name": "x", "type": "afxdp", "device": "psw-x"}]})
    tap_ns = from_dict({"port": [{"name": "t", "type": "tap", "device": "psw-t", "netns": "psw-h"}]})
    privileges.check(afpacket, full)
    privileges.check(afpacket, 1 << privileges.CAP_NET_RAW)
    with pytest.raises(privileges.PrivilegeError, match=r"^missing capability CAP_NET_RAW, which port a's AF_PACKET"):
        privileges.check(afpacket, 1 << privileges.CAP_NET_ADMIN)
    with pytest.raises(privileges.PrivilegeError, match=r"^missing capability CAP_BPF, .*--ambient-caps=\+net_raw,"
                                                         r"\+net_admin,\+bpf "):
        privileges.check(afxdp, base)
    privileges.check(afxdp, base | 1 << privileges.CAP_BPF)
    privileges.check(afxdp, base | 1 << privileges.CAP_SYS_ADMIN)     # CAP_SYS_ADMIN still covers bpf(2)
    afxdp.switch.datapath = "python"                                  # opened as afpacket
    privileges.check(afxdp, 1 << privileges.CAP_NET_RAW)
    with pytest.raises(privileges.PrivilegeError, match=r"^missing capability CAP_SYS_ADMIN, which entering "
                                                         r"namespace psw-h \(setns\)"):
        privileges.check(tap_ns, base | 1 << privileges.CAP_DAC_OVERRIDE)
    grouped = from_dict({"control": {"group": "root"}})
    grouped.control = ControlConfig(group="root")      # root's own group: no CAP_CHOWN needed
    privileges.check(grouped, 0)
