"""pytest plugin: real namespaces and real pyswitch processes for a test, always removed afterwards.

Loaded through the `pytest11` entry point when pyswitch is installed, or with `pytest_plugins = ["pyswitch.testing"]`
in the root conftest.py (not both: pluggy refuses one module under two names).

Fixtures:

    netns_id      a unique 4-hex-digit id for this test, to render "{id}" in topology and switch files
    topology      a factory: topology(path_or_dict, switches=[config_path, ...], datapath=None, run_args=())
                  -> Network; run_args go to every `pyswitch run` (e.g. ["--log-json"])

    def test_ping(topology):
        net = topology("netns/demo.toml", switches=["netns/demo-sw.toml"], datapath="python")
        assert net.exec("h1", ["ping", "-c", "1", "198.51.100.12"]).returncode == 0
        assert net.switch("demo").show("fdb")

Tests marked `netns` fail (never skip) unless running as root with `ip` installed.
"""

import contextlib
import hashlib
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib

import pytest

from pyswitch.topology import NETNS_DIR, Topology

SWITCH_START_S = 15.0  # how long a switch may take to answer on its control socket
SWITCH_STOP_S = 5.0  # SIGTERM-to-SIGKILL delay for a switch at teardown
SWITCH_COMMAND = [sys.executable, "-m", "pyswitch", "run"]  # followed by the rendered config's path

_ids = itertools.count()


def _request(name, command, timeout):
    # Imported on use: the plugin loads in every pytest run, also in trees where the control plane is not built.
    from pyswitch.control.client import request

    return request(name, command, timeout=timeout)


def pytest_configure(config):
    config.addinivalue_line("markers", "netns: runs hosts in real network namespaces (needs root)")


def pytest_runtest_setup(item):
    if item.get_closest_marker("netns") is None:
        return
    # A missing prerequisite is a failure, not a skip: a green run must mean the hosts really talked.
    if os.geteuid() != 0:
        pytest.fail("netns tests need root (namespaces, veth pairs, AF_PACKET sockets)", pytrace=False)
    if shutil.which("ip") is None:
        pytest.fail("netns tests need iproute2's ip (run tests/run.sh, which installs it)", pytrace=False)


def new_id():
    """A 4-hex-digit id that no namespace or device in use contains yet."""
    for _ in range(100):
        seed = f"{os.getpid()}-{next(_ids)}-{time.time_ns()}"
        id = hashlib.blake2s(seed.encode(), digest_size=2).hexdigest()
        if not any(id in name for name in _names_in_use()):
            return id
    raise RuntimeError("no free topology id after 100 tries")


def _names_in_use():
    names = []
    for directory in (NETNS_DIR, "/sys/class/net"):
        with contextlib.suppress(OSError):
            names += os.listdir(directory)
    return names


@pytest.fixture
def netns_id():
    """A short id unique to this test, for "{id}" in topology and switch files."""
    return new_id()


class Switch:
    """One running `pyswitch run`, seen through its control socket."""

    def __init__(self, name, config_path, log_path, process, config_template=None, run_args=()):
        self.name = name  # as rendered: the control socket is /run/pyswitch/NAME.sock
        self.run_args = list(run_args)  # after the config's path on the command line (kept for restart)
        self.config_path = config_path  # the rendered config the switch runs
        self.config_template = config_template or config_path  # the file as written, with "{id}"
        self.log_path = log_path
        self.process = process

    @property
    def pid(self):
        return self.process.pid

    def request(self, command, timeout=5.0):
        return _request(self.name, command, timeout)

    def show(self, what, timeout=5.0):
        """The parsed answer of `show WHAT` (stats, ports, fdb, ...)."""
        return self.request({"cmd": "show", "what": what}, timeout)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def kill(self):
        """SIGKILL: the switch dies without a word (no HA shutdown advert), as in a crash."""
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def restart(self):
        """Runs the same rendered config again (after kill or stop), its log appended; returns once it answers."""
        assert self.process.poll() is not None, f"switch {self.name} is still running"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([*SWITCH_COMMAND, self.config_path, *self.run_args],
                                            stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, env=_switch_env())
        _wait_ready(self)

    def stop(self):
        """SIGTERM by PID, SIGKILL if still running after SWITCH_STOP_S; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=SWITCH_STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Network:
    """A topology that is up, with the switches running on it."""

    def __init__(self, topology, switches):
        self.topology = topology
        self.switches = switches  # rendered name -> Switch
        self._aliases = {}  # name as written in the file (before "{id}") -> rendered name

    @property
    def id(self):
        return self.topology.id

    @property
    def hosts(self):
        """Host names, in file order."""
        return list(self.topology.hosts)

    @property
    def links(self):
        return self.topology.links

    def _ports(self):
        for switch in self.switches.values():
            with open(switch.config_path, "rb") as f:
                yield from tomllib.load(f).get("port", [])

    def _port_of(self, host):
        """The switch port that `host` hangs on: the one bound to its link's root end, or its TAP port."""
        peers = {link.peer for link in self.topology.links if link.host == host}
        netns = self.netns(host)
        for port in self._ports():
            if port.get("device") in peers or (port.get("type") == "tap" and port.get("netns") == netns):
                return port
        raise KeyError(f"no switch port serves host {host!r}")

    def vlan_of(self, host):
        """The access VLAN of the port `host` is on (1 when the port names none)."""
        return self._port_of(host).get("vlan", 1)

    def address_of(self, host, version=4):
        """The first address of `host` (without the prefix length) from its link or its TAP port."""
        candidates = [a for link in self.topology.links if link.host == host for a in link.address]
        port = self._port_of(host) if not candidates else {}
        candidates += [port["address"]] if isinstance(port.get("address"), str) else port.get("address", [])
        for text in candidates:
            address = ipaddress.ip_interface(text).ip
            if address.version == version:
                return str(address)
        raise KeyError(f"host {host!r} has no IPv{version} address")

    def tap_device(self, name):
        """The rendered name of a TAP port's device, given as written with or without "{id}" ("psw-tap3")."""
        for switch in self.switches.values():
            with open(switch.config_template, "rb") as f:
                ports = tomllib.load(f).get("port", [])
            for port in ports:
                device = port.get("device", "")
                if port.get("type") == "tap" and name in (device, device.replace("{id}", "")):
                    return device.replace("{id}", self.id)
        raise KeyError(f"no TAP port with device {name!r}")

    def exec(self, host, argv, **kwargs):
        return self.topology.exec(host, argv, **kwargs)

    def popen(self, host, argv, **kwargs):
        return self.topology.popen(host, argv, **kwargs)

    def netns(self, host):
        return self.topology.netns(host)

    def switch(self, name):
        """The switch named `name`, either as rendered ("demoab12") or as written ("demo{id}" or "demo")."""
        name = self._aliases.get(name, name)
        try:
            return self.switches[name]
        except KeyError:
            raise KeyError(f"no switch named {name!r} (switches: {', '.join(self.switches) or 'none'})") from None

    def switch_log(self, name):
        return self.switch(name).log()


def render_switch_config(text, id, datapath=None):
    """Replaces "{id}" and, when `datapath` is given, sets [switch] datapath; keeps the rest of the text as written."""
    text = text.replace("{id}", id)
    if datapath is not None:
        text = _set_switch_datapath(text, datapath)
    return text


def _set_switch_datapath(text, datapath):
    lines = text.splitlines(keepends=True)
    setting = f'datapath = "{datapath}"\n'
    header = re.compile(r"^\s*\[\[?\s*[A-Za-z0-9_.\"-]+\s*\]\]?\s*(#.*)?$")
    tables = [i for i, line in enumerate(lines) if header.match(line)]
    start = next((i for i in tables if re.match(r"^\s*\[\s*switch\s*\]", lines[i])), None)
    if start is None:
        # At the end: a table header written before root-level keys would capture them.
        return text + ("" if text.endswith("\n") or not text else "\n") + f"[switch]\n{setting}"
    end = next((i for i in tables if i > start), len(lines))
    for i in range(start + 1, end):
        if re.match(r"^\s*datapath\s*=", lines[i]):
            lines[i] = setting
            break
    else:
        lines.insert(start + 1, setting)
    return "".join(lines)


def _start_switch(config, id, datapath, directory, index, run_args=()):
    with open(config) as f:
        template = f.read()
    text = render_switch_config(template, id, datapath)
    data = tomllib.loads(text)
    name = data.get("switch", {}).get("name")
    if not name:
        pytest.fail(f"{config}: [switch] name is missing")
    if datapath is not None:
        assert data["switch"].get("datapath") == datapath, f"{config}: could not set [switch] datapath"
    written = tomllib.loads(template).get("switch", {}).get("name")

    rendered = os.path.join(directory, f"switch{index}-{name}.toml")
    with open(rendered, "w") as f:
        f.write(text)
    log_path = os.path.join(directory, f"switch{index}-{name}.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*SWITCH_COMMAND, rendered, *run_args], stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=_switch_env())
    return Switch(name, rendered, log_path, process, os.fspath(config), run_args), written


def _switch_env():
    # The switch imports pyswitch from this tree even when the package is not installed.
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _wait_ready(switch):
    deadline = time.monotonic() + SWITCH_START_S
    while True:
        status = switch.process.poll()
        if status is not None:
            pytest.fail(f"switch {switch.name} exited with status {status} before answering; its log:\n{switch.log()}")
        try:
            switch.request({"cmd": "show", "what": "stats"}, timeout=1.0)
            return
        except OSError:  # ConnectionError is one: the socket is not there or not listening yet
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"switch {switch.name} did not answer within {SWITCH_START_S:.0f} s; its log:\n"
                        f"{switch.log()}")
        time.sleep(0.05)


@pytest.fixture
def topology(tmp_path, netns_id):
    """A factory: topology(path_or_dict, switches=[config, ...], datapath=None, run_args=()) -> Network, all
    removed at teardown.

    The first topology of a test gets the test's netns_id, later ones fresh ids."""
    started = []  # (Topology, [Switch]) in order of creation

    def make(source, switches=(), datapath=None, id=None, run_args=()):
        if id is None:
            id = netns_id if not started else new_id()
        if isinstance(source, dict):
            topo = Topology.from_dict(source, id=id)
        else:
            topo = Topology.load(source, id=id)
        running = []
        started.append((topo, running))
        topo.up()
        network = Network(topo, {})
        for index, config in enumerate(switches):
            switch, written = _start_switch(config, id, datapath, tmp_path, index, run_args)
            running.append(switch)
            network.switches[switch.name] = switch
            for alias in {written, written.replace("{id}", "")} if written else ():
                network._aliases.setdefault(alias, switch.name)
        for switch in running:
            _wait_ready(switch)
        return network

    yield make

    # Switches first (their TAP devices live in the namespaces), then the namespaces; every step runs even after
    # an earlier one failed, and the first failure is raised at the end.
    failures = []
    for topo, running in reversed(started):
        for switch in reversed(running):
            try:
                switch.stop()
            except Exception as e:  # noqa: BLE001 - keep tearing down
                failures.append(e)
        try:
            topo.down()
        except Exception as e:  # noqa: BLE001
            failures.append(e)
    if failures:
        raise failures[0]
