"""Topologies of network namespaces and veth pairs, described in TOML, for running pyswitch against real hosts.

A topology file names hosts (network namespaces), links (veth pairs with one end inside a host and the other left
in the root namespace, where a pyswitch afpacket port binds it) and wires (veth pairs with both ends in the root
namespace, e.g. a trunk between two switches)::

    [[host]]
    name = "h1"                                   # namespace "psw-{id}h1" unless netns = "..." is given
    routes = [{ to = "default", via = "198.51.100.1" }]      # also: dev, metric
    sysctl = { "net.ipv4.ip_forward" = "1" }      # set inside the namespace
    run = ["python3 -m http.server 8080"]         # a shell command, or an argv list; started on up, killed on down

    [[link]]
    host = "h1"
    name = "eth0"                                 # the end inside the host
    peer = "psw-{id}sw-h1"                        # the end in the root namespace
    mac = "02:00:00:00:00:11"                     # optional, like mtu, address and vlans
    address = ["198.51.100.11/24", "2001:db8::11/64"]
    vlans = [{ id = 10, address = "203.0.113.11/24" }]       # 802.1Q sub-interface eth0.10 in the host
    mtu = 1500

    [[wire]]
    a = "psw-{id}t1"
    b = "psw-{id}t2"

"{id}" in any string is replaced by the topology's id, so that tests running the same file at once, or after a
crashed run, never collide. Namespaces and root-namespace devices must be named "psw-*": `down` deletes whatever
the file names, and the prefix keeps a typo from deleting a device that is not pyswitch's.

    topo = Topology.load("netns/demo.toml", id="ab12")
    topo.up()
    topo.exec("h1", ["ping", "-c", "1", "198.51.100.12"])
    topo.down()
"""

import contextlib
import dataclasses
import errno
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

NAME_PREFIX = "psw-"  # every namespace and root-namespace device a topology creates starts with this
IFNAMSIZ = 15  # longest Linux interface name (IFNAMSIZ - 1)
NETNS_DIR = pyroute2_netns.NETNS_RUN_DIR  # where `ip netns` keeps its namespaces
KILL_GRACE_S = 2.0  # SIGTERM-to-SIGKILL delay for processes left in a namespace on down
RUN_CHECK_S = 0.2  # how long up waits to catch a `run` command that fails at once

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{0,8}$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_SYSCTL_RE = re.compile(r"^[A-Za-z0-9_./-]+$")
# Keys of one device (net.ipv4.conf.eth0.forwarding) are set after the links exist; the rest are set first, so that
# conf.default.* values reach the devices created afterwards.
_DEVICE_SYSCTL_RE = re.compile(r"^net[./]ipv[46][./](conf|neigh)[./](?!all[./]|default[./])")


class TopologyError(Exception):
    """A topology file is wrong, or bringing it up or down failed; the message names the key."""


@dataclasses.dataclass(frozen=True)
class Route:
    to: str  # "default" or a prefix
    via: str | None
    dev: str | None
    metric: int | None


@dataclasses.dataclass(frozen=True)
class Host:
    key: str  # "host[0]", for error messages
    name: str
    netns: str
    routes: tuple[Route, ...]
    sysctl: tuple[tuple[str, str], ...]
    run: tuple[str | tuple[str, ...], ...]  # a string runs under sh -c, a tuple is an argv


@dataclasses.dataclass(frozen=True)
class Vlan:
    key: str
    id: int
    name: str  # "eth0.10"
    address: tuple[str, ...]
    mac: str | None
    mtu: int | None


@dataclasses.dataclass(frozen=True)
class Link:
    key: str
    host: str
    name: str  # the end inside the host
    peer: str  # the end in the root namespace
    mac: str | None
    address: tuple[str, ...]
    vlans: tuple[Vlan, ...]
    mtu: int | None


@dataclasses.dataclass(frozen=True)
class Wire:
    key: str
    a: str
    b: str
    mtu: int | None


# ---------------------------------------------------------------------------------------------------------------
# Reading a file: every error names the key it is about.

_REQUIRED = object()


class _Table:
    """One TOML table being read: refuses keys it does not know and names `key.field` in every error."""

    def __init__(self, value, key, known):
        if not isinstance(value, dict):
            raise TopologyError(f"{key or 'the file'}: expected a table, got {_kind(value)}")
        self.value = value
        self.key = key  # "" for the file itself
        for field in value:
            if field not in known:
                raise TopologyError(f"{self.sub(field)}: unknown key (known keys: {', '.join(known)})")

    def sub(self, field):
        return f"{self.key}.{field}" if self.key else field

    def str(self, field, default=_REQUIRED):
        value = self.value.get(field, default)
        if value is _REQUIRED:
            raise TopologyError(f"{self.key}.{field}: missing")
        if value is not None and (not isinstance(value, str) or not value):
            raise TopologyError(f"{self.key}.{field}: expected a non-empty string, got {value!r}")
        return value

    def int(self, field, low, high):
        value = self.value.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise TopologyError(f"{self.key}.{field}: expected an integer from {low} to {high}, got {value!r}")
        return value

    def strings(self, field):
        """A list of strings, where a single string also counts as a list of one."""
        value = self.value.get(field, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise TopologyError(f"{self.key}.{field}: expected a string or a list of strings, got {_kind(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise TopologyError(f"{self.key}.{field}[{i}]: expected a non-empty string, got {item!r}")
        return tuple(value)

    def tables(self, field):
        value = self.value.get(field, [])
        if not isinstance(value, list):
            raise TopologyError(f"{self.sub(field)}: expected a list of tables, got {_kind(value)}")
        return [(f"{self.sub(field)}[{i}]", item) for i, item in enumerate(value)]


def _kind(value):
    return {dict: "a table", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def _render(value, id):
    """Replaces "{id}" in every string of a parsed file (plain replace: other braces stay as written)."""
    if isinstance(value, str):
        return value.replace("{id}", id)
    if isinstance(value, list):
        return [_render(item, id) for item in value]
    if isinstance(value, dict):
        return {k: _render(v, id) for k, v in value.items()}
    return value


def _check_ifname(key, name):
    if len(name) > IFNAMSIZ:
        raise TopologyError(f"{key}: interface name {name!r} has {len(name)} characters; Linux allows {IFNAMSIZ}")
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise TopologyError(f"{key}: {name!r} is not a valid interface name")


def _check_owned(key, name, what):
    if not name.startswith(NAME_PREFIX):
        raise TopologyError(f"{key}: {what} {name!r} must start with {NAME_PREFIX!r}, "
                            f"so that down never deletes something that is not pyswitch's")


def _check_addresses(key, addresses):
    for i, text in enumerate(addresses):
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise TopologyError(f"{key}[{i}]: {text!r} is not an address with a prefix length") from None
        if "/" not in text:
            raise TopologyError(f"{key}[{i}]: {text!r} has no prefix length (e.g. {iface.ip}/24)")


def _check_mac(key, mac):
    if mac is None:
        return
    if not _MAC_RE.match(mac):
        raise TopologyError(f"{key}: {mac!r} is not a MAC address like 02:00:00:00:00:11")
    if int(mac[:2], 16) & 1:
        raise TopologyError(f"{key}: {mac!r} is a multicast address; a device needs a unicast one")


def _read_host(key, value, id):
    table = _Table(value, key, ("name", "netns", "routes", "sysctl", "run"))
    name = table.str("name")
    netns = table.str("netns", f"{NAME_PREFIX}{id}{name}")
    _check_owned(f"{key}.netns", netns, "namespace")
    if len(netns) > 64 or "/" in netns or netns in (".", ".."):
        raise TopologyError(f"{key}.netns: {netns!r} is not a valid namespace name")

    routes = []
    for rkey, rvalue in table.tables("routes"):
        rt = _Table(rvalue, rkey, ("to", "via", "dev", "metric"))
        route = Route(to=rt.str("to"), via=rt.str("via", None), dev=rt.str("dev", None),
                      metric=rt.int("metric", 0, 2**32 - 1))
        if route.via is None and route.dev is None:
            raise TopologyError(f"{rkey}: needs via or dev")
        if route.to != "default":
            try:
                ipaddress.ip_network(route.to, strict=False)
            except ValueError:
                raise TopologyError(f"{rkey}.to: {route.to!r} is neither 'default' nor a prefix") from None
        if route.via is not None:
            try:
                ipaddress.ip_address(route.via)
            except ValueError:
                raise TopologyError(f"{rkey}.via: {route.via!r} is not an address") from None
        routes.append(route)

    sysctl = table.value.get("sysctl", {})
    if not isinstance(sysctl, dict):
        raise TopologyError(f"{key}.sysctl: expected a table of key = value, got {_kind(sysctl)}")
    for skey, svalue in sysctl.items():
        if not _SYSCTL_RE.match(skey):
            raise TopologyError(f"{key}.sysctl.{skey}: not a sysctl name")
        if isinstance(svalue, bool) or not isinstance(svalue, (str, int)):
            raise TopologyError(f"{key}.sysctl.{skey}: expected a string or an integer, got {svalue!r}")

    run = table.value.get("run", [])
    if not isinstance(run, list):
        raise TopologyError(f"{key}.run: expected a list of commands, got {_kind(run)}")
    commands = []
    for i, command in enumerate(run):
        if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            commands.append(tuple(command))
        elif isinstance(command, str) and command.strip():
            commands.append(command)
        else:
            raise TopologyError(f"{key}.run[{i}]: expected a shell command string or an argv list of strings")

    return Host(key=key, name=name, netns=netns, routes=tuple(routes),
                sysctl=tuple((k, str(v)) for k, v in sysctl.items()), run=tuple(commands))


def _read_link(key, value, hosts):
    table = _Table(value, key, ("host", "name", "peer", "mac", "address", "vlans", "mtu"))
    host = table.str("host")
    if host not in hosts:
        raise TopologyError(f"{key}.host: no host named {host!r}")
    name, peer = table.str("name"), table.str("peer")
    _check_ifname(f"{key}.name", name)
    _check_ifname(f"{key}.peer", peer)
    _check_owned(f"{key}.peer", peer, "root-namespace device")
    mac = table.str("mac", None)
    _check_mac(f"{key}.mac", mac)
    address = table.strings("address")
    _check_addresses(f"{key}.address", address)

    vlans = []
    for vkey, vvalue in table.tables("vlans"):
        vt = _Table(vvalue, vkey, ("id", "address", "mac", "mtu"))
        vid = vt.int("id", 1, 4094)
        if vid is None:
            raise TopologyError(f"{vkey}.id: missing")
        vaddress = vt.strings("address")
        _check_addresses(f"{vkey}.address", vaddress)
        vmac = vt.str("mac", None)
        _check_mac(f"{vkey}.mac", vmac)
        vname = f"{name}.{vid}"
        _check_ifname(vkey, vname)
        vlans.append(Vlan(key=vkey, id=vid, name=vname, address=vaddress, mac=vmac, mtu=vt.int("mtu", 68, 65535)))

    return Link(key=key, host=host, name=name, peer=peer, mac=mac, address=address, vlans=tuple(vlans),
                mtu=table.int("mtu", 68, 65535))


def _read_wire(key, value):
    table = _Table(value, key, ("a", "b", "mtu"))
    a, b = table.str("a"), table.str("b")
    for field, name in (("a", a), ("b", b)):
        _check_ifname(f"{key}.{field}", name)
        _check_owned(f"{key}.{field}", name, "root-namespace device")
    return Wire(key=key, a=a, b=b, mtu=table.int("mtu", 68, 65535))


# ---------------------------------------------------------------------------------------------------------------
# The topology.


class Topology:
    """Hosts, links and wires read from one file, with their "{id}" already rendered."""

    def __init__(self, hosts, links, wires, id="", source="<dict>"):
        self.hosts = {host.name: host for host in hosts}  # name -> Host, in file order
        self.links = tuple(links)
        self.wires = tuple(wires)
        self.id = id
        self.source = source
        self.processes = []  # Popen of every `run` command this object started

    @classmethod
    def load(cls, path, id=""):
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise TopologyError(f"{path}: no such file") from None
        except OSError as e:
            raise TopologyError(f"{path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise TopologyError(f"{path}: not valid TOML: {e}") from None
        try:
            return cls.from_dict(data, id=id, source=path)
        except TopologyError as e:
            raise TopologyError(f"{path}: {e}") from None

    @classmethod
    def from_dict(cls, data, id="", source="<dict>"):
        if not isinstance(id, str) or not _ID_RE.match(id):
            raise TopologyError(f"id: {id!r} must be at most 8 letters, digits, '-' or '_'")
        data = _render(data, id)
        top = _Table(data, "", ("host", "link", "wire"))
        hosts = [_read_host(key, value, id) for key, value in top.tables("host")]
        host_names = {}
        for host in hosts:
            _unique(host_names, host.name, f"{host.key}.name", "host")
        _unique_all([(h.netns, f"{h.key}.netns") for h in hosts], "namespace")
        links = [_read_link(key, value, host_names) for key, value in top.tables("link")]
        wires = [_read_wire(key, value) for key, value in top.tables("wire")]

        # Names must not clash: root-namespace ends across links and wires, host ends within each host.
        _unique_all([(l.peer, f"{l.key}.peer") for l in links]
                    + [(w.a, f"{w.key}.a") for w in wires] + [(w.b, f"{w.key}.b") for w in wires],
                    "root-namespace device")
        for host in hosts:
            ends = []
            for link in links:
                if link.host == host.name:
                    ends.append((link.name, f"{link.key}.name"))
                    ends += [(v.name, v.key) for v in link.vlans]
            _unique_all(ends, f"device in host {host.name!r}")
            for rkey, route in enumerate(host.routes):
                if route.dev is not None and route.dev not in {name for name, _ in ends} | {"lo"}:
                    raise TopologyError(f"{host.key}.routes[{rkey}].dev: host {host.name!r} has no device "
                                        f"{route.dev!r}")
        return cls(hosts, links, wires, id=id, source=source)

    def netns(self, host):
        """The namespace name of `host`."""
        try:
            return self.hosts[host].netns
        except KeyError:
            raise TopologyError(f"no host named {host!r} (hosts: {', '.join(self.hosts) or 'none'})") from None

    def exec(self, host, argv, **kwargs):
        """Runs `argv` (a list, or a string for sh -c) inside `host`; the keywords go to subprocess.run."""
        return subprocess.run(self._argv(host, argv), **kwargs)

    def popen(self, host, argv, **kwargs):
        """Starts `argv` (a list, or a string for sh -c) inside `host`; the keywords go to subprocess.Popen."""
        return subprocess.Popen(self._argv(host, argv), **kwargs)

    def _argv(self, host, argv):
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        return ["ip", "netns", "exec", self.netns(host), *argv]

    def exists(self, host):
        """True when the namespace of `host` exists."""
        return os.path.exists(os.path.join(NETNS_DIR, self.netns(host)))

    # --- up ----------------------------------------------------------------------------------------------------

    def up(self):
        """Creates what is missing; on a failure removes what this call created and raises a TopologyError."""
        made = _Made()
        try:
            self._up(made)
        except BaseException as e:
            # Undo only this call's work: a second `up` that fails must not tear down a topology that was running.
            self._undo(made)
            if isinstance(e, TopologyError):
                raise TopologyError(f"{self.source}: up failed: {e}") from e.__cause__
            raise

    def _up(self, made):
        for host in self.hosts.values():
            if not self.exists(host.name):
                with _step(host.key, f"create namespace {host.netns}"):
                    pyroute2_netns.create(host.netns)
                made.namespaces.append(host.netns)
                made.hosts.append(host)
        for host in self.hosts.values():
            self._sysctl(host, device_keys=False)

        with contextlib.ExitStack() as stack:
            root = stack.enter_context(IPRoute())
            inside = {}
            for host in self.hosts.values():
                with _step(host.key, f"open namespace {host.netns}"):
                    inside[host.name] = stack.enter_context(IPRoute(netns=host.netns, flags=0))
                with _step(host.key, "bring lo up"):
                    inside[host.name].link("set", index=_index(inside[host.name], "lo"), state="up")
            for link in self.links:
                self._link_up(root, inside[link.host], link, made)
            for wire in self.wires:
                self._wire_up(root, wire, made)
            for host in self.hosts.values():
                for i, route in enumerate(host.routes):
                    self._route(inside[host.name], f"{host.key}.routes[{i}]", route)

        for host in self.hosts.values():
            self._sysctl(host, device_keys=True)
        # `run` commands start only in namespaces this call created, so that a second up starts no duplicates.
        for host in made.hosts:
            for i, command in enumerate(host.run):
                self._start(f"{host.key}.run[{i}]", host, command, made)
        self._check_started(made)

    def _link_up(self, root, inside, link, made):
        ns = self.netns(link.host)
        peer_index, end_index = _lookup(root, link.peer), _lookup(inside, link.name)
        if peer_index is None and end_index is None:
            with _step(link.key, f"create veth {link.peer} <-> {ns}:{link.name}"):
                root.link("add", ifname=link.peer, kind="veth", peer={"ifname": link.name, "net_ns_fd": ns})
            made.devices.append(link.peer)
            peer_index, end_index = _index(root, link.peer), _index(inside, link.name)
        elif end_index is None:
            raise TopologyError(f"{link.key}.peer: {link.peer} already exists in the root namespace without "
                                f"{link.name} in {ns}; run down first, or use another id")
        elif peer_index is None:
            raise TopologyError(f"{link.key}.name: {link.name} already exists in {ns} without {link.peer} "
                                f"in the root namespace; run down first, or use another id")
        self._root_end_up(root, link.key, link.peer, peer_index, link.mtu)

        with _step(link.key, f"configure {link.name} in {ns}"):
            _configure(inside, end_index, link.mac, link.mtu)
        _add_addresses(inside, f"{link.key}.address", end_index, link.address)

        for vlan in link.vlans:
            index = _lookup(inside, vlan.name)
            if index is None:
                with _step(vlan.key, f"create {vlan.name} in {ns}"):
                    inside.link("add", ifname=vlan.name, kind="vlan", link=end_index, vlan_id=vlan.id)
                index = _index(inside, vlan.name)
            with _step(vlan.key, f"configure {vlan.name} in {ns}"):
                _configure(inside, index, vlan.mac, vlan.mtu)
            _add_addresses(inside, f"{vlan.key}.address", index, vlan.address)

    def _wire_up(self, root, wire, made):
        a, b = _lookup(root, wire.a), _lookup(root, wire.b)
        if a is None and b is None:
            with _step(wire.key, f"create veth {wire.a} <-> {wire.b}"):
                root.link("add", ifname=wire.a, kind="veth", peer={"ifname": wire.b})
            made.devices.append(wire.a)
        elif a is None or b is None:
            there, missing = (wire.b, wire.a) if a is None else (wire.a, wire.b)
            raise TopologyError(f"{wire.key}: {there} already exists without {missing}; run down first, "
                                f"or use another id")
        self._root_end_up(root, wire.key, wire.a, _index(root, wire.a), wire.mtu)
        self._root_end_up(root, wire.key, wire.b, _index(root, wire.b), wire.mtu)

    def _root_end_up(self, root, key, name, index, mtu):
        # A switch port must carry only what the switch sends: with IPv6 off the kernel sends no router
        # solicitations, MLD reports or DAD probes from it. It is set before the device goes up, when those start.
        path = f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"
        if os.path.exists(path):
            with _step(key, f"disable IPv6 on {name}"), open(path, "w") as f:
                f.write("1")
        with _step(key, f"bring {name} up"):
            _configure(root, index, None, mtu)

    def _route(self, inside, key, route):
        family = socket.AF_INET6 if ":" in route.to + (route.via or "") else socket.AF_INET
        request = {"dst": route.to, "family": family}
        if route.via is not None:
            request["gateway"] = route.via
        if route.dev is not None:
            request["oif"] = _index(inside, route.dev)
        if route.metric is not None:
            request["priority"] = route.metric
        with _step(key, f"add route to {route.to}"):
            inside.route("replace", **request)

    def _sysctl(self, host, device_keys):
        for name, value in host.sysctl:
            if bool(_DEVICE_SYSCTL_RE.match(name)) != device_keys:
                continue
            # sysctl(8) inside the namespace: /proc/sys/net shows the namespace of the process that reads it.
            with _step(f"{host.key}.sysctl.{name}", f"set to {value!r}"):
                subprocess.run(self._argv(host.name, ["sysctl", "-q", "-w", f"{name}={value}"]),
                               check=True, capture_output=True, text=True)

    def _start(self, key, host, command, made):
        # stderr goes to an unlinked file: a pipe nobody reads would stall a chatty server; the file lets up report
        # why a command failed at once.
        errors = tempfile.TemporaryFile()
        with _step(key, "start"):
            process = self.popen(host.name, command if isinstance(command, str) else list(command),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                                 start_new_session=True)
        process.pyswitch_key = key
        process.pyswitch_errors = errors
        self.processes.append(process)
        made.processes.append(process)

    def _check_started(self, made):
        if not made.processes:
            return
        time.sleep(RUN_CHECK_S)
        for process in made.processes:
            status = process.poll()
            if status:
                process.pyswitch_errors.seek(0)
                lines = process.pyswitch_errors.read().decode(errors="replace").strip().splitlines()
                why = f": {lines[-1]}" if lines else ""
                raise TopologyError(f"{process.pyswitch_key}: exited at once with status {status}{why}")

    def _undo(self, made):
        for process in made.processes:
            _stop([process.pid])
            _reap(process)
        with contextlib.suppress(OSError, NetlinkError), IPRoute() as root:
            for name in made.devices:
                _delete(root, name)
        for ns in made.namespaces:
            _stop(_netns_pids(ns))
            with contextlib.suppress(OSError):
                pyroute2_netns.remove(ns)

    # --- down --------------------------------------------------------------------------------------------------

    def down(self):
        """Removes everything the file names: processes in its namespaces, root-namespace ends, namespaces.

        Works after a failed or partial up, and is quiet about anything already gone."""
        problems = []
        namespaces = [host.netns for host in self.hosts.values()]
        pids = [pid for ns in namespaces for pid in _netns_pids(ns)]
        problems += _stop(pids)
        for process in self.processes:
            _reap(process)
        self.processes = []

        # Deleting one end deletes the pair at once; leaving it to the namespace's removal would leave the root ends
        # around until the kernel's asynchronous namespace cleanup gets to them.
        names = [link.peer for link in self.links] + [end for wire in self.wires for end in (wire.a, wire.b)]
        try:
            with IPRoute() as root:
                for name in names:
                    try:
                        _delete(root, name)
                    except NetlinkError as e:
                        problems.append(f"delete {name}: {e.args[1] if len(e.args) > 1 else e}")
        except OSError as e:
            problems.append(f"open the root namespace: {e}")

        for ns in namespaces:
            path = os.path.join(NETNS_DIR, ns)
            if os.path.exists(path):
                try:
                    pyroute2_netns.remove(ns)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    problems.append(f"remove namespace {ns}: {e.strerror or e}")
        if problems:
            raise TopologyError(f"{self.source}: down left things behind: {'; '.join(problems)}")


@dataclasses.dataclass
class _Made:
    """What one call of up created, so that a failure removes exactly that."""

    namespaces: list = dataclasses.field(default_factory=list)
    hosts: list = dataclasses.field(default_factory=list)
    devices: list = dataclasses.field(default_factory=list)
    processes: list = dataclasses.field(default_factory=list)


def _unique(seen, name, key, what):
    if name in seen:
        raise TopologyError(f"{key}: {what} {name!r} is also {seen[name]}")
    seen[name] = key


def _unique_all(pairs, what):
    seen = {}
    for name, key in pairs:
        _unique(seen, name, key, what)


@contextlib.contextmanager
def _step(key, doing):
    """Turns a failure of one step of up into a TopologyError that names the key and the step."""
    try:
        yield
    except TopologyError:
        raise
    except NetlinkError as e:
        reason = e.args[1] if len(e.args) > 1 else str(e)
        if e.code == errno.EOPNOTSUPP and "vlan" in doing + key:
            reason += " (does the kernel have 802.1Q VLAN support?)"
        raise TopologyError(f"{key}: {doing}: {reason}") from e
    except subprocess.CalledProcessError as e:
        lines = (e.stderr or "").strip().splitlines()
        raise TopologyError(f"{key}: {doing}: {lines[-1] if lines else f'exit status {e.returncode}'}") from e
    except OSError as e:
        raise TopologyError(f"{key}: {doing}: {e.strerror or e}") from e


def _lookup(ipr, name):
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _index(ipr, name):
    index = _lookup(ipr, name)
    if index is None:
        raise TopologyError(f"device {name!r} vanished while being configured")
    return index


def _configure(ipr, index, mac, mtu):
    # Address and MTU first, then up: some drivers refuse a new address on a running device.
    settings = {}
    if mac is not None:
        settings["address"] = mac
    if mtu is not None:
        settings["mtu"] = mtu
    if settings:
        ipr.link("set", index=index, **settings)
    ipr.link("set", index=index, state="up")


def _add_addresses(ipr, key, index, addresses):
    for i, text in enumerate(addresses):
        iface = ipaddress.ip_interface(text)
        request = {"index": index, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if iface.version == 6:
            # The file's addresses are unique by construction; skipping duplicate address detection makes them
            # usable at once instead of a second or two later.
            request["flags"] = IFA_F_NODAD
        try:
            with _step(f"{key}[{i}]", f"add {text}"):
                ipr.addr("add", **request)
        except TopologyError as e:
            if isinstance(e.__cause__, NetlinkError) and e.__cause__.code == errno.EEXIST:
                continue  # present since an earlier up
            raise


def _delete(root, name):
    index = _lookup(root, name)
    if index is None:
        return
    try:
        root.link("del", index=index)
    except NetlinkError as e:
        if e.code != errno.ENODEV:  # deleted meanwhile, e.g. as the peer of the previous name
            raise


def _netns_pids(ns):
    """PIDs of the processes in namespace `ns`, found as `ip netns pids` does: by the namespace's inode."""
    try:
        target = os.stat(os.path.join(NETNS_DIR, ns))
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # gone, or a zombie: a zombie has no namespaces
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry))
    return pids


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # one of ours: reap it
        return False
    return True


def _stop(pids):
    """SIGTERM, then SIGKILL after KILL_GRACE_S, each process by PID; returns what could not be stopped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for sig, grace in ((signal.SIGKILL, KILL_GRACE_S), (None, KILL_GRACE_S)):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.02)
        pids = [pid for pid in pids if _alive(pid)]
        if sig is not None:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
    return [f"process {pid} survived SIGKILL" for pid in pids]


def _reap(process):
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_GRACE_S)
    errors = getattr(process, "pyswitch_errors", None)
    if errors is not None:
        errors.close()


# ---------------------------------------------------------------------------------------------------------------
# Command-line entry points (wired into `pyswitch netns ...` by pyswitch/cli.py); each returns an exit status.


def cli_up(path, id=""):
    """`pyswitch netns up FILE`: brings the topology up, printing one line."""
    try:
        topo = Topology.load(path, id=id)
        topo.up()
    except TopologyError as e:
        print(f"pyswitch netns up: {e}", file=sys.stderr)
        return 1
    namespaces = ", ".join(host.netns for host in topo.hosts.values()) or "none"
    print(f"{path}: up (namespaces: {namespaces}; {len(topo.links)} links, {len(topo.wires)} wires)")
    return 0


def cli_down(path, id=""):
    """`pyswitch netns down FILE`: removes everything the file names."""
    try:
        Topology.load(path, id=id).down()
    except TopologyError as e:
        print(f"pyswitch netns down: {e}", file=sys.stderr)
        return 1
    return 0


def cli_exec(path, host, argv, id=""):
    """`pyswitch netns exec FILE HOST -- CMD...`: runs CMD in HOST with this terminal; returns CMD's status."""
    try:
        topo = Topology.load(path, id=id)
        ns = topo.netns(host)
        if not argv:
            raise TopologyError("no command given (pyswitch netns exec FILE HOST -- CMD...)")
        if not topo.exists(host):
            raise TopologyError(f"namespace {ns} of host {host!r} does not exist; run `pyswitch netns up {path}`")
        return topo.exec(host, list(argv)).returncode
    except TopologyError as e:
        print(f"pyswitch netns exec: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
