"""Open vSwitch's userspace datapath as a forwarder for the benchmarks, beside pyswitch on the same veth ends.

    sudo .venv/bin/python bench/ovs.py          # self-check: ping and one short trafgen load through OVS

`ensure_installed()` installs Debian's openvswitch-switch if it is missing, without leaving the system's OVS
service running.  `OpenVSwitch` starts a private ovsdb-server and ovs-vswitchd, whose databases, sockets, logs
and pidfiles all live in a /tmp/psw-ovs-* directory, so a system instance is never touched:

    with OpenVSwitch(["psw-b0sw-h1", "psw-b0sw-h2"], cpu=1, port_type="afxdp", xdp_mode="native") as ovs:
        ...                                     # forwarding; ovs.pids() are the two daemons
        ovs.pmd_stats()                         # the PMD's busy share since ovs.clear_pmd_stats()

The bridge is of datapath_type=netdev (OVS's userspace datapath; this machine has no openvswitch kernel module)
with one flow, actions=NORMAL, OVS's learning switch.  Its ports are of type "system" (the netdev datapath reads
and writes a Linux interface through an AF_PACKET socket) or "afxdp" (an AF_XDP socket on an XDP program OVS
attaches to the interface, polled by a PMD thread).  On veth, AF_XDP works in xdp-mode "native" (veth's own XDP
hook, copy mode) and "generic"; "native-with-zerocopy" fails, since veth has no zero-copy AF_XDP.

The self-check builds netns/demo.toml (namespaces psw-{PSW_BENCH_ID}*), runs OVS with each port type on the two
root-side ends, pings h1 -> h2 through it and offers one trafgen load as bench/pps.py does.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tcp import BENCH_ID  # noqa: E402

OVS_PACKAGE = "openvswitch-switch"
SYSTEM_RUNDIR = Path("/run/openvswitch")  # where the package's own service keeps its pidfiles
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")  # asked by invoke-rc.d before a package's script starts a service
VSWITCH_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
PORT_TYPES = ("system", "afxdp")
XDP_MODES = ("native-with-zerocopy", "native", "generic", "best-effort")
IFNAMSIZ = 15  # longest Linux interface name
IFF_PROMISC = 0x100  # in /sys/class/net/*/flags
POLICY_DENY = "#!/bin/sh\n# pyswitch bench/ovs.py: no service may start while openvswitch-switch installs.\nexit 101\n"


@dataclasses.dataclass(frozen=True)
class Installed:
    """ensure_installed()'s answer: true if OVS can run here; if not, `reason` says why."""
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def ensure_installed() -> Installed:
    """Installs openvswitch-switch if ovs-vswitchd is missing; true if Open vSwitch can run, else false with why.

    The package's postinst starts the system service (`invoke-rc.d openvswitch-switch start`, which runs
    ovsdb-server and ovs-vswitchd with /run/openvswitch).  A policy-rc.d that answers 101 ("forbidden") for the
    duration of the install keeps it from starting; one already in place is left as it is.  Should a daemon have
    started all the same, it is stopped by the PID in its pidfile, and only if that pidfile is new.
    """
    if all(shutil.which(tool) for tool in ("ovs-vswitchd", "ovsdb-server", "ovs-vsctl")):
        return Installed(True)
    if os.geteuid() != 0:
        return Installed(False, "Open vSwitch is not installed, and installing it needs root")
    result = apt_install_quietly([OVS_PACKAGE], lambda: set(SYSTEM_RUNDIR.glob("*.pid")), POLICY_DENY)
    if result.returncode != 0:
        return Installed(False, f"apt-get install {OVS_PACKAGE} failed: "
                                f"{(result.stderr or result.stdout).strip()[-500:]}")
    if not shutil.which("ovs-vswitchd"):
        return Installed(False, f"{OVS_PACKAGE} is installed but ovs-vswitchd is not on PATH")
    return Installed(True)


def apt_install_quietly(packages: list[str], pidfiles, policy: str) -> subprocess.CompletedProcess:
    """apt-get install `packages` (again after an update if the lists were stale) without leaving their services
    running: `policy` is the policy-rc.d that answers 101 while apt runs (one already in place is left as it is),
    and a daemon that started all the same is stopped by the PID in a pidfile that `pidfiles()` finds only after
    the install.  bench/l7.py installs its tools the same way."""
    pidfiles_before = pidfiles()
    own_policy = not POLICY_RC_D.exists()
    if own_policy:
        POLICY_RC_D.write_text(policy)
        POLICY_RC_D.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        result = subprocess.run(install, env=env, capture_output=True, text=True)
        if result.returncode != 0:          # perhaps the package lists are missing or stale
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            result = subprocess.run(install, env=env, capture_output=True, text=True)
    finally:
        if own_policy:
            POLICY_RC_D.unlink()
    for pidfile in pidfiles() - pidfiles_before:
        _stop_pid(_read_pid(pidfile))
    return result


class OpenVSwitch:
    """A private ovsdb-server and ovs-vswitchd forwarding between `interfaces` with actions=NORMAL.

    `cpu` pins both daemons (taskset, so every thread they create inherits it) and is the PMD CPU mask, so the
    PMD thread that polls afxdp ports runs there too; system ports are polled by ovs-vswitchd's main thread.
    `port_type` is "system" or "afxdp"; `xdp_mode` (afxdp only) is OVS's options:xdp-mode: "native" (the
    driver's XDP hook, copy mode), "native-with-zerocopy", "generic" (the XDP hook on the skb path) or
    "best-effort".  Entering returns once every port is up in the datapath; leaving (also after a failure)
    deletes the bridge, stops both daemons by the PIDs in their pidfiles and removes the directory.
    """

    def __init__(self, interfaces: list[str], *, cpu: int | str | None = None, port_type: str = "system",
                 xdp_mode: str = "native", bridge: str = f"psw-{BENCH_ID}ovs", timeout: float = 30.0):
        if port_type not in PORT_TYPES:
            raise ValueError(f"port_type {port_type!r}: one of {', '.join(PORT_TYPES)}")
        if port_type == "afxdp" and xdp_mode not in XDP_MODES:
            raise ValueError(f"xdp_mode {xdp_mode!r}: one of {', '.join(XDP_MODES)}")
        if not bridge.startswith("psw-") or len(bridge) > IFNAMSIZ:
            raise ValueError(f"bridge {bridge!r}: names a root-namespace TAP device, so psw-* of at most {IFNAMSIZ}")
        self.interfaces = list(interfaces)
        self.cpu = None if cpu is None else int(cpu)
        self.port_type = port_type
        self.xdp_mode = xdp_mode
        self.bridge = bridge
        self.timeout = timeout
        self.dir: Path | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._bridge_added = False
        self._touched: list[str] = []        # interfaces that had neither XDP nor IFF_PROMISC before we began

    # -- the caller's view

    def pids(self) -> dict[str, int]:
        """{"ovsdb-server": pid, "ovs-vswitchd": pid} of the daemons running now (from their pidfiles)."""
        return {name: pid for name in self._procs if (pid := self._pid(name)) is not None}

    def vsctl(self, *args: str, check: bool = True) -> str:
        """ovs-vsctl against this instance's database; waits for ovs-vswitchd to apply a change."""
        return self._run(["ovs-vsctl", f"--db=unix:{self.dir}/db.sock", f"--timeout={self.timeout:.0f}", *args],
                         check=check)

    def appctl(self, *args: str, check: bool = True) -> str:
        """ovs-appctl to this instance's ovs-vswitchd (e.g. "dpif-netdev/pmd-stats-show")."""
        return self._run(["ovs-appctl", "-t", str(self.dir / "ovs-vswitchd.ctl"), *args], check=check)

    def xdp_modes_in_use(self) -> dict[str, str]:
        """{interface: "native" or "generic"} for the afxdp ports, as ovs-vswitchd reports them."""
        return dict(re.findall(r"^\s+(\S+) \d+/\d+: \(afxdp:.*?xdp-mode-in-use=([\w-]+)", self.appctl("dpif/show"),
                               re.MULTILINE))

    def clear_pmd_stats(self) -> None:
        self.appctl("dpif-netdev/pmd-stats-clear")

    def pmd_stats(self) -> dict[str, float]:
        """Since clear_pmd_stats(), over the PMD threads (the afxdp ports' pollers; {} with system ports):
        "busy", the share of their cycles spent processing rather than polling empty queues, and
        "cycles_per_packet", the processing cycles per packet.  A PMD spins at 100% CPU whatever the load,
        so these, not the CPU time, say how close to its limit it runs."""
        text = self.appctl("dpif-netdev/pmd-stats-show")
        pmds = [section for section in re.split(r"(?m)^(?=\S)", text) if section.startswith("pmd thread")]
        idle = processing = packets = 0
        for section in pmds:
            idle += int(re.search(r"idle cycles: (\d+)", section).group(1))
            processing += int(re.search(r"processing cycles: (\d+)", section).group(1))
            packets += int(re.search(r"packets received: (\d+)", section).group(1))
        if not pmds or idle + processing == 0:
            return {}
        return {"busy": processing / (idle + processing),
                "cycles_per_packet": processing / packets if packets else float("nan")}

    def log(self) -> str:
        """ovs-vswitchd's log so far."""
        try:
            return (self.dir / "ovs-vswitchd.log").read_text()
        except (OSError, TypeError):
            return ""

    # -- start

    def __enter__(self) -> OpenVSwitch:
        self.dir = Path(tempfile.mkdtemp(prefix="psw-ovs-", dir="/tmp"))
        try:
            self._touched = [name for name in self.interfaces if not _has_xdp(name) and not _promiscuous(name)]
            self._start_ovsdb()
            self._start_vswitchd()
            self._add_bridge()
            self._wait_ports()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _env(self) -> dict[str, str]:
        # Every default path of the OVS tools points into our directory, so that nothing, even a tool called
        # without --db or -t, can reach a system instance in /run/openvswitch.
        here = str(self.dir)
        return dict(os.environ, OVS_RUNDIR=here, OVS_DBDIR=here, OVS_LOGDIR=here, OVS_SYSCONFDIR=here)

    def _run(self, argv: list[str], check: bool = True) -> str:
        result = subprocess.run(argv, env=self._env(), capture_output=True, text=True, timeout=self.timeout + 10)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout

    def _pinned(self, argv: list[str]) -> list[str]:
        return argv if self.cpu is None else ["taskset", "-c", str(self.cpu), *argv]

    def _daemon(self, name: str, argv: list[str], ready) -> None:
        """Starts daemon `name` in the foreground (our child, so it can be waited for) and waits for `ready()`."""
        out = open(self.dir / f"{name}.out", "w")
        with out:
            self._procs[name] = subprocess.Popen(
                self._pinned([name, *argv, f"--pidfile={self.dir}/{name}.pid", f"--unixctl={self.dir}/{name}.ctl",
                              f"--log-file={self.dir}/{name}.log", "-vconsole:off", "--no-chdir"]),
                env=self._env(), stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.timeout
        while not (self._pid(name) and ready()):
            if self._procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited ({self._procs[name].returncode}): {self._tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start in {self.timeout} s: {self._tail(name)}")
            time.sleep(0.05)

    def _start_ovsdb(self) -> None:
        self._run(["ovsdb-tool", "create", str(self.dir / "conf.db"), str(VSWITCH_SCHEMA)])
        self._daemon("ovsdb-server", [str(self.dir / "conf.db"), f"--remote=punix:{self.dir}/db.sock"],
                     ready=(self.dir / "db.sock").exists)
        self.vsctl("--no-wait", "init")
        # The netdev datapath handles its upcalls in the thread that polled the packet, so one handler (and one
        # revalidator) is plenty, and keeps the forwarder's core to the threads that forward.
        config = {"n-handler-threads": "1", "n-revalidator-threads": "1"}
        if self.cpu is not None:
            # PMD threads set their own affinity from this mask.  dpdk-lcore-mask would matter only with
            # dpdk-init=true, and Debian's openvswitch-switch is built without DPDK.
            config["pmd-cpu-mask"] = hex(1 << self.cpu)
        self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                   *(f"other_config:{key}={value}" for key, value in config.items()))

    def _start_vswitchd(self) -> None:
        # --disable-system: the kernel datapath (the openvswitch module, absent here) is never probed.
        self._daemon("ovs-vswitchd", [f"unix:{self.dir}/db.sock", "--disable-system"],
                     ready=lambda: self.appctl("version", check=False) != "")

    def _add_bridge(self) -> None:
        # fail_mode=secure: no flow but ours, and no controller to fall back from.
        self.vsctl("add-br", self.bridge, "--", "set", "Bridge", self.bridge, "datapath_type=netdev",
                   "fail_mode=secure", "other_config:disable-in-band=true")
        self._bridge_added = True
        for name in self.interfaces:
            settings = [f"type={self.port_type}"]
            if self.port_type == "afxdp":
                # One AF_XDP socket per RX queue in use: a frame arriving on a queue without one would go to the
                # kernel stack instead (a veth uses one queue unless its channels are raised).
                settings += [f"options:xdp-mode={self.xdp_mode}", f"options:n_rxq={_rx_queues(name)}"]
            self.vsctl("add-port", self.bridge, name, "--", "set", "Interface", name, *settings)
        self._run(["ovs-ofctl", "del-flows", f"unix:{self.dir}/{self.bridge}.mgmt"])
        self._run(["ovs-ofctl", "add-flow", f"unix:{self.dir}/{self.bridge}.mgmt", "actions=NORMAL"])

    def _wait_ports(self) -> None:
        """Waits until each port has an OpenFlow number, no error and carrier, and (afxdp) a PMD polling it."""
        deadline = time.monotonic() + self.timeout
        while True:
            waiting = []
            for name in self.interfaces:
                ofport, error, link = self.vsctl("--", "get", "Interface", name, "ofport", "error",
                                                 "link_state").split("\n")[:3]
                if error.strip() not in ("", "[]"):
                    raise RuntimeError(f"port {name}: {error.strip()}; ovs-vswitchd's errors: {self._errors()}")
                if int(ofport) <= 0 or link.strip() != "up":
                    waiting.append(name)
            if self.port_type == "afxdp" and not waiting:
                polled = self.appctl("dpif-netdev/pmd-rxq-show")
                waiting = [name for name in self.interfaces if f"port: {name} " not in polled]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"ports {', '.join(waiting)} not up in {self.timeout} s: "
                                   f"{self._tail('ovs-vswitchd')}")
            time.sleep(0.1)

    # -- stop

    def __exit__(self, *exc) -> None:
        try:
            if self._bridge_added:
                # Deleting the ports lets ovs-vswitchd detach its XDP programs and restore the interfaces'
                # flags; wait for that only if it is still there to do it.
                wait = [] if self._pid("ovs-vswitchd") else ["--no-wait"]
                self.vsctl(*wait, "--if-exists", "del-br", self.bridge, check=False)
                self._bridge_added = False
            for name in ("ovs-vswitchd", "ovsdb-server"):
                if name in self._procs:
                    self._stop_daemon(name)
        finally:
            # An ovs-vswitchd that died or had to be killed left its XDP programs and promiscuous mode behind.
            for name in self._touched:
                if _has_xdp(name):
                    subprocess.run(["ip", "link", "set", "dev", name, "xdp", "off"], capture_output=True)
                if _promiscuous(name):
                    subprocess.run(["ip", "link", "set", "dev", name, "promisc", "off"], capture_output=True)
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def _stop_daemon(self, name: str) -> None:
        proc = self._procs.pop(name)
        pid = _read_pid(self.dir / f"{name}.pid")
        # The pidfile names the process we started (taskset execs it, so the PIDs are the same); should it name
        # another, or none, our child's own PID is the one to stop.
        if proc.poll() is None:
            os.kill(pid if pid == proc.pid else proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            return None
        return _read_pid(self.dir / f"{name}.pid")

    def _errors(self) -> str:
        """ovs-vswitchd's logged errors, the last few (they say why a port failed, e.g. which AF_XDP bind)."""
        errors = [line.split("|ERR|", 1)[1] for line in self.log().splitlines() if "|ERR|" in line]
        return " / ".join(errors[-6:]) or "none"

    def _tail(self, name: str) -> str:
        text = ""
        for suffix in ("out", "log"):
            try:
                text += (self.dir / f"{name}.{suffix}").read_text()
            except OSError:
                pass
        return text.strip()[-1500:]


def _has_xdp(interface: str) -> bool:
    """Whether an XDP program (native or generic) is attached to `interface`."""
    out = subprocess.run(["ip", "-d", "link", "show", "dev", interface], capture_output=True, text=True).stdout
    return re.search(r"\s(xdp|xdpgeneric|xdpdrv|xdpoffload)\s", out) is not None


def _promiscuous(interface: str) -> bool:
    try:
        return int(Path(f"/sys/class/net/{interface}/flags").read_text(), 16) & IFF_PROMISC != 0
    except OSError:
        return False


def _rx_queues(interface: str) -> int:
    return max(1, len(list(Path(f"/sys/class/net/{interface}/queues").glob("rx-*"))))


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop_pid(pid: int | None, timeout: float = 5.0) -> None:
    """SIGTERM to `pid`, SIGKILL if it is still there after `timeout` (for a daemon that is not our child)."""
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def main() -> int:
    parser = argparse.ArgumentParser(description="Self-check: ping and one trafgen load through OVS's userspace "
                                                 "datapath on netns/demo.toml")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--flows", type=int, default=256)
    args = parser.parse_args()
    # Imported here, not at the top: bench/pps.py imports this module, and the library part needs neither.
    from pps import FORWARDER_CPU, discard_udp, ensure_tools, offer, ping_rtt_ms, trafgen_config
    from tcp import ROOT

    from pyswitch.topology import Topology

    installed = ensure_installed()
    if not installed:
        print(f"Open vSwitch: {installed.reason}")
        return 1
    ensure_tools()
    topo = Topology.load(ROOT / "netns/demo.toml", id=BENCH_ID)
    ends = [f"psw-{BENCH_ID}sw-h1", f"psw-{BENCH_ID}sw-h2"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        config = Path(tmp) / f"udp-{args.flows}.trafgen"
        config.write_text(trafgen_config(args.flows, H1_MAC, H2_MAC, H1_ADDRESS, H2_ADDRESS))
        try:
            topo.up()
            discard_udp(topo, "h2")
            for port_type, xdp_mode in SELF_CHECKS:
                label = port_type if xdp_mode is None else f"{port_type} {xdp_mode}"
                start = time.monotonic()
                try:
                    with OpenVSwitch(ends, cpu=FORWARDER_CPU, port_type=port_type,
                                     xdp_mode=xdp_mode or "native") as ovs:
                        startup = time.monotonic() - start
                        ping = topo.exec("h1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", H2_ADDRESS],
                                         capture_output=True, text=True)
                        if ping.returncode != 0:
                            rows.append((label, f"started in {startup:.1f} s, but ping h1 -> h2 failed"))
                            continue
                        offer(topo, config, 1.0)            # warm up: learning, flows, caches
                        ovs.clear_pmd_stats()
                        offered, delivered, ns_per_packet = offer(topo, config, args.seconds)
                        pmd = ovs.pmd_stats()
                        rtt = ping_rtt_ms(topo, "h1", H2_ADDRESS)
                        in_use = ", ".join(sorted(set(ovs.xdp_modes_in_use().values())))
                        busy = f"{pmd['busy']:.0%}" if pmd else "-"
                        rows.append((label, f"{offered:>10.0f} {delivered:>10.0f} {ns_per_packet:>8.0f} {busy:>8} "
                                            f"{rtt:>8.3f} {startup:>8.1f}"
                                            + (f"  (xdp-mode-in-use={in_use})" if in_use else "")))
                except RuntimeError as error:
                    rows.append((label, f"does not start: {error}"))
        finally:
            topo.down()

    print(f"OVS userspace datapath, netns/demo.toml h1 -> h2, {args.flows} flows, {args.seconds:g} s, "
          f"ovs-vswitchd on core {FORWARDER_CPU}")
    print(f"{'port type':<30} {'offered':>10} {'delivered':>10} {'ns/pkt':>8} {'pmd busy':>8} {'ping ms':>8} "
          f"{'start s':>8}")
    for label, text in rows:
        print(f"{label:<30} {text}")
    print(f"ns/pkt: core {FORWARDER_CPU}'s busy time per delivered packet; pmd busy: the share of the PMD's cycles "
          "spent on packets (it polls at 100% CPU)")
    return 0


# The self-check: netns/demo.toml's h1 sends to h2.  Its port types: AF_PACKET, then AF_XDP in each mode of OVS.
H1_MAC, H1_ADDRESS = "02:00:00:00:00:11", "198.51.100.11"
H2_MAC, H2_ADDRESS = "02:00:00:00:00:12", "198.51.100.12"
SELF_CHECKS = [("system", None), ("afxdp", "native-with-zerocopy"), ("afxdp", "native"), ("afxdp", "generic")]

if __name__ == "__main__":
    sys.exit(main())
