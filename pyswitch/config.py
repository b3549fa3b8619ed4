"""The switch's configuration: TOML in, typed and validated objects out.

Every error names the key it is about (`port[1].vlan: ...`), because a config
is written by hand and the user must be able to find the line.  A config is
untrusted input (it is also what `pyswitch reload` swaps in): the only exception
that leaves this module is ConfigError, the file is read bounded, and every
string that reaches the system (paths, interface and namespace names, the
health check's request line) is checked before it does.
"""
from __future__ import annotations

import difflib
import ipaddress
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import consts

if TYPE_CHECKING:
    from .config_l7 import L7Config

DATAPATHS = ("c", "python")
PORT_TYPES = ("afpacket", "afxdp", "tap")
EXISTING_INTERFACE_TYPES = ("afpacket", "afxdp")  # pyswitch binds these, but does not own them
DEFAULT_VLAN = 1
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
IFNAME_MAX = 15             # IFNAMSIZ - 1
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.+@-]{1,15}$")     # what dev_valid_name allows, less the odd characters
NETNS_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")        # a file name under /run/netns
GROUP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")  # a POSIX group name
MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")
LISTEN_RE = re.compile(r"^(?:\[(?P<v6>[^\]]*)\]|(?P<v4>[^:\[\]]*)):(?P<port>[0-9]{1,5})$")  # [metrics] listen
MAX_CONFIG_BYTES = 1 << 20  # a real config is a few KiB: a larger file is a mistake (or /dev/zero)
MAX_SECONDS = 30 * 86400    # every duration: 30 days fit the datapath's uint32 milliseconds
MAX_ROUTES = 65536          # static routes ([[route]])
MAX_VIPS = consts.RING_MAX_VIPS - 1     # VIP ids 1..4095
MAX_BACKENDS = consts.RING_MAX_BACKENDS  # backends of one VIP
SUN_PATH_MAX = 107          # sockaddr_un.sun_path less its NUL: the control socket's whole path


class ConfigError(ValueError):
    """A config the switch refuses; the message starts with the key."""


@dataclass
class SwitchSettings:
    name: str = "sw1"
    datapath: str = "c"
    mac_aging_s: float = 300.0          # an idle MAC is forgotten after this long
    max_macs: int = 65536               # MAC table bound (the biggest port's least recently seen evicted)
    max_macs_per_port: int = 0          # default per-port MAC limit (0: none, as OVS and the Linux bridge)
    max_flows: int = 65536              # fast-path flow table bound
    flow_idle_s: float = 10.0           # an unused fast-path flow is removed after this long
    ring_frames: int = 2048             # AF_PACKET RX ring size, frames (of the MTU) per port (afxdp: >= 2048 per queue)
    busy_poll_us: int = 0               # keep looking at idle ports this long before sleeping (latency vs CPU)
    workers: int = 1                    # datapath threads sharing each port (PACKET_FANOUT); C datapath only
    arp_reachable_s: float = 60.0       # an ARP entry is trusted this long, then probed
    arp_retries: int = 3                # requests (one a second) before a neighbor is given up
    arp_max_entries: int = 65536        # ARP table bound
    arp_queue: int = 16                 # packets held per unresolved neighbor (more are dropped, counted)
    arp_queue_total: int = 4096         # packets held for all unresolved neighbors together
    arp_rate_per_port: int = 1000       # ARP packets a second each port may bring to the slow path (0: no limit)
    control_dir: str = "/run/pyswitch"  # where NAME.sock lives
    max_conns: int = 1048576            # load-balanced connections the datapath tracks (LRU evicted beyond)
    conn_syn_s: float = 60.0            # connection timeouts by TCP state, close to IPVS's defaults
    conn_established_s: float = 900.0
    conn_fin_wait_s: float = 120.0
    conn_close_s: float = 10.0
    conn_udp_s: float = 300.0           # a UDP "connection": the last datagram either way


@dataclass
class PortConfig:
    name: str
    type: str
    device: str
    vlan: int | None = None             # access VLAN (None on a trunk)
    trunk: tuple[int, ...] = ()         # VLANs carried tagged
    native_vlan: int | None = None      # a trunk's untagged VLAN, if any
    netns: str | None = None            # tap: namespace to move the device into
    address: tuple[str, ...] = ()       # tap: addresses given to it there
    mac: str | None = None              # tap: its MAC address
    max_macs: int | None = None         # MACs this port may hold (its own oldest evicted); None: the switch's
    mirror_target: bool = field(default=False, compare=False)   # a [[mirror]]'s `to`: gets copies, nothing
                                        # else; set from [[mirror]] (compared there, not here, by a reload)

    def mac_limit(self, switch: "SwitchSettings") -> int | None:
        """The most MAC entries this port may hold, or None for no per-port limit."""
        if self.max_macs is not None:
            return self.max_macs
        return switch.max_macs_per_port or None

    @property
    def is_trunk(self) -> bool:
        return bool(self.trunk)

    def carries(self, vlan: int) -> bool:
        if self.mirror_target:          # out of the switching: no flood, no learned MAC, nothing routed to it
            return False
        if self.is_trunk:
            return vlan in self.trunk or vlan == self.native_vlan
        return vlan == self.vlan

    def tagged_on_egress(self, vlan: int) -> bool:
        return self.is_trunk and vlan != self.native_vlan


@dataclass
class VlanInterface:
    """A routed interface (SVI): the switch's own address in a VLAN; hosts use it as their gateway."""
    id: int
    address: ipaddress.IPv4Interface
    mac: str | None = None              # default: derived from the switch name and the VLAN id
    decap: bool = False                 # terminate IPIP/GRE tunnels routed to hosts in this subnet


@dataclass
class Route:
    prefix: ipaddress.IPv4Network
    via: ipaddress.IPv4Address          # a next hop inside a VLAN interface's subnet


VIP_MODES = ("nat", "fullnat", "dsr", "tunnel", "l7", "l7-tls")   # l7*: config_l7.py, not served yet
VIP_PROTOCOLS = ("tcp", "udp")
HEALTH_TYPES = ("tcp", "http", "icmp", "none")
TUNNEL_ENCAPS = ("ipip", "gre")
MAX_EMBRYONIC = 1 << 24         # [[vip]] max_embryonic: no more than the connection table's largest bound
MAX_UPCALL_RATE = 10000000      # [[vip]] upcall_rate: the datapath's VIP_GUARD_MAX_RATE


@dataclass
class BackendConfig:
    address: ipaddress.IPv4Address
    port: int
    weight: int = 1                     # 0 = drain: no new connections, existing ones continue


@dataclass
class HealthConfig:
    type: str = "none"
    interval_s: float = 1.0
    timeout_s: float = 0.5
    rise: int = 2                       # consecutive successes to come up
    fall: int = 2                       # consecutive failures to go down
    http_path: str = "/"
    http_expect: int = 200
    on_down: str = "keep"               # existing connections of a dead backend: "reset" or "keep"


@dataclass
class VipConfig:
    name: str
    address: ipaddress.IPv4Address
    port: int
    protocol: str = "tcp"
    mode: str = "nat"
    scheduler: str = "rr"
    persistence_s: float = 0.0          # > 0: a client IP keeps its backend this long (IPVS -p)
    encap: str = "ipip"                 # tunnel mode: "ipip" (RFC 2003) or "gre"
    max_embryonic: int = 16384          # SYN-state connections held at most (0: no limit); RELIABILITY.md
    flood_threshold: int = 1024         # SYN-state connections from which the VIP counts as flooded
    upcall_rate: int = 1000             # while flooded: new-connection upcalls a second at most (0: no limit)
    backends: list[BackendConfig] = field(default_factory=list)
    health: HealthConfig = field(default_factory=HealthConfig)
    l7: L7Config | None = None        # mode l7 / l7-tls: rules, pools, limits (config_l7.py)


@dataclass
class HaConfig:
    """[ha]: this switch is one of an active/passive pair (VRRPv3, RFC 5798; docs/HA.md)."""
    group: int                          # VRRP virtual router id, 1-255: the virtual MAC is 00:00:5e:00:01:<group>
    priority: int                       # 1-255, higher wins; 255 = the address owner (master at once)
    vlans: tuple[int, ...]              # VLANs whose switch addresses (and every VIP) move with mastership
    sync_vlan: int                      # this instance's own address there: adverts' source, connection sync
    advert_interval_s: float = 1.0      # 0.01 - 40.95 (centiseconds on the wire)
    preempt: bool = True                # a higher priority takes mastership back from a lower one
    peer: ipaddress.IPv4Address | None = None   # the other instance's sync address: unicast connection sync
    track_ports: tuple[str, ...] = ()   # port names: one going down gives up mastership (fault)
    preempt_delay_s: float = 5.0        # a returning instance waits at most this long for a full sync to preempt


MIRROR_DIRECTIONS = ("in", "out", "both")


@dataclass
class MirrorConfig:
    """[[mirror]]: copies of what ports receive ("in"), send ("out") or both, sent out of one more port, whose
    host watches (docs/OBSERVABILITY_CAPTURE.md).  That port takes no part in the switching."""
    sources: tuple[str, ...]            # `from`: port names
    to: str                             # a port name, nobody's source
    direction: str = "both"


@dataclass
class ControlConfig:
    """[control]: who may drive the switch through its control socket, beyond its own user and root."""
    group: str | None = None            # also this group: the socket is 0660 and owned by it (else 0600)


@dataclass
class MetricsConfig:
    """[metrics]: a Prometheus endpoint (pyswitch/metrics.py, docs/OBSERVABILITY_METRICS.md); no section, none."""
    host: str                           # an IP address of this machine, as text ("127.0.0.1", "::1", "0.0.0.0")
    port: int

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class Config:
    switch: SwitchSettings
    ports: list[PortConfig] = field(default_factory=list)
    vlans: list[VlanInterface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    vips: list[VipConfig] = field(default_factory=list)
    ha: HaConfig | None = None
    control: ControlConfig = field(default_factory=ControlConfig)
    metrics: MetricsConfig | None = None
    mirrors: list[MirrorConfig] = field(default_factory=list)
    source: str = "<dict>"


def load(path: str | Path) -> Config:
    """The config in file `path`; a file that is too large, not UTF-8 or not TOML is refused with its line and
    column, and a mistake in its contents with the key it is about."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)      # bounded: the path may be /dev/zero or a huge file
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:          # a NUL in the path (a path that came through the control socket, say)
        raise ConfigError(f"{str(path)!r}: not a file name") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes, not a config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start)
        raise ConfigError(f"{path}: not UTF-8 text: line {line}, column {column}: byte 0x{raw[exc.start]:02x}") \
            from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {_toml_reason(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    config = from_dict(data)
    config.source = str(path)
    return config


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of `offset` in `raw`."""
    line = raw.count(b"\n", 0, offset) + 1
    return line, offset - (raw.rfind(b"\n", 0, offset) + 1) + 1


def _toml_reason(exc: tomllib.TOMLDecodeError) -> str:
    """tomllib says "REASON (at line L, column C)": put the place first, where an editor looks."""
    match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(exc), re.S)
    if match:
        return f"line {match[2]}, column {match[3]}: {match[1]}"
    match = re.fullmatch(r"(.*) \(at end of document\)", str(exc), re.S)
    if match:
        return f"at the end of the file: {match[1]}"
    return str(exc)


def from_dict(data: dict) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"config: must be a table of sections, got {type(data).__name__}")
    _only_keys(data, "", {"switch", "control", "port", "vlan", "route", "vip", "ha", "metrics", "mirror"})
    switch = _switch(_table(data, "switch", "switch"))
    control = _control(_table(data, "control", "control"))
    ports = [_port(p, f"port[{i}]") for i, p in enumerate(_array(data, "port"))]
    if len(ports) > consts.MAX_PORTS:
        raise ConfigError(f"port: at most {consts.MAX_PORTS} ports, got {len(ports)}")
    _unique(ports, "name")
    _unique(ports, "device")
    _unique_tap_macs(ports)
    _check_workers_ports(switch, ports)
    _check_mac_limits(switch, ports)
    mirrors = [_mirror(m, f"mirror[{i}]", ports) for i, m in enumerate(_array(data, "mirror"))]
    _check_mirrors(mirrors, ports)
    vlans = [_vlan_interface(v, f"vlan[{i}]") for i, v in enumerate(_array(data, "vlan"))]
    _check_vlan_interfaces(vlans)
    routes = [_route(r, f"route[{i}]", vlans) for i, r in enumerate(_array(data, "route"))]
    _check_routes(routes, vlans)
    vips = [_vip(v, f"vip[{i}]", vlans) for i, v in enumerate(_array(data, "vip"))]
    _check_vips(vips, vlans, routes)
    ha = _ha(data["ha"], ports, vlans) if "ha" in data else None
    metrics = _metrics(_table(data, "metrics", "metrics")) if "metrics" in data else None
    return Config(switch=switch, ports=ports, vlans=vlans, routes=routes, vips=vips, ha=ha, control=control,
                  metrics=metrics, mirrors=mirrors)


def _mirror(raw, where: str, ports: list[PortConfig]) -> MirrorConfig:
    _entry(raw, where, {"from", "to", "direction"}, ("from", "to"))
    names = [p.name for p in ports]
    sources = raw["from"]
    if not isinstance(sources, list) or not sources:
        raise ConfigError(f"{where}.from: must be a non-empty list of port names, got {_show(sources)}")
    for k, name in enumerate(sources):
        if not isinstance(name, str) or name not in names:
            raise ConfigError(f"{where}.from[{k}]: no port named {name!r}{_did_you_mean(name, names)}")
        if name in sources[:k]:
            raise ConfigError(f"{where}.from[{k}]: lists port {name!r} twice")
    to = _string(raw, "to", f"{where}.to")
    if to not in names:
        raise ConfigError(f"{where}.to: no port named {to!r}{_did_you_mean(to, names)}")
    if to in sources:
        raise ConfigError(f"{where}.to: port {to!r} is also in from; a port cannot watch itself")
    direction = _string(raw, "direction", f"{where}.direction") if "direction" in raw else "both"
    if direction not in MIRROR_DIRECTIONS:
        raise ConfigError(f"{where}.direction: must be one of {', '.join(MIRROR_DIRECTIONS)} (what the ports "
                          f"receive, send, or both), got {direction!r}")
    return MirrorConfig(sources=tuple(sources), to=to, direction=direction)


def _check_mirrors(mirrors: list[MirrorConfig], ports: list[PortConfig]) -> None:
    """A target is nobody's source (its copies would be copied again), and is marked out of the switching."""
    sources = {name: i for i, m in enumerate(mirrors) for name in m.sources}
    for i, m in enumerate(mirrors):
        if m.to in sources:
            raise ConfigError(f"mirror[{i}].to: port {m.to!r} is a source of mirror[{sources[m.to]}]; a mirror's "
                              f"target only watches")
    targets = {m.to for m in mirrors}
    for port in ports:
        port.mirror_target = port.name in targets


def _control(raw: dict) -> ControlConfig:
    _only_keys(raw, "control", set(ControlConfig.__dataclass_fields__))
    control = ControlConfig()
    if "group" in raw:
        control.group = _string(raw, "group", "control.group")
        if not GROUP_RE.match(control.group):
            raise ConfigError(f"control.group: not a group name (a letter or '_', then letters, digits, '_', "
                              f"'.' or '-', at most 32): {control.group!r}")
    return control


def _metrics(raw: dict) -> MetricsConfig:
    _only_keys(raw, "metrics", {"listen"})
    if "listen" not in raw:
        raise ConfigError('metrics.listen: missing (the endpoint\'s ADDRESS:PORT, such as "127.0.0.1:9110"; '
                          'leave [metrics] out for no endpoint)')
    text = _string(raw, "listen", "metrics.listen")
    match = LISTEN_RE.match(text)
    if match is None:
        raise ConfigError(f'metrics.listen: give ADDRESS:PORT, such as "127.0.0.1:9110" (an IPv6 address in '
                          f'brackets: "[::1]:9110"), got {text!r}')
    host = match["v6"] if match["v6"] is not None else match["v4"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # A name would be resolved once at start, maybe to another address than the operator meant.
        raise ConfigError(f"metrics.listen: {host!r} is not an IP address (names are not resolved; "
                          f"\"127.0.0.1\" keeps the endpoint on this machine)") from None
    if address.version == 4 and match["v6"] is not None:
        raise ConfigError(f'metrics.listen: only an IPv6 address goes in brackets ("{host}:{match["port"]}"), '
                          f'got {text!r}')
    if address.is_multicast:
        raise ConfigError(f"metrics.listen: {address} is a multicast address; give one of this machine's")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ConfigError(f"metrics.listen: the port must be from 1 to 65535, got {port}")
    return MetricsConfig(host=str(address), port=port)


def _ha(raw, ports: list[PortConfig], vlans: list[VlanInterface]) -> HaConfig:
    _entry(raw, "ha", set(HaConfig.__dataclass_fields__), ("group", "priority", "vlans", "sync_vlan"))
    by_id = {v.id: v for v in vlans}
    group = _integer(raw, "group", "ha.group", 1, 255)
    priority = _integer(raw, "priority", "ha.priority", 1, 255)
    if not isinstance(raw["vlans"], list) or not raw["vlans"]:
        raise ConfigError(f"ha.vlans: must be a non-empty list of VLAN ids, got {raw['vlans']!r}")
    ha_vlans = tuple(_vlan_id(v, f"ha.vlans[{k}]") for k, v in enumerate(raw["vlans"]))
    for vid in ha_vlans:
        if vid not in by_id:
            raise ConfigError(f"ha.vlans: VLAN {vid} has no [[vlan]] interface whose address could move")
        if by_id[vid].mac is not None:
            raise ConfigError(f"ha.vlans: VLAN {vid}'s [[vlan]] gives a mac, but a VLAN that moves uses the "
                              f"virtual MAC 00:00:5e:00:01:{group:02x}")
    if len(set(ha_vlans)) != len(ha_vlans):
        raise ConfigError("ha.vlans: lists a VLAN twice")
    sync_vlan = _vlan_id(raw["sync_vlan"], "ha.sync_vlan")
    if sync_vlan not in by_id:
        raise ConfigError(f"ha.sync_vlan: VLAN {sync_vlan} has no [[vlan]] interface (this instance's own address)")
    if sync_vlan in ha_vlans:
        raise ConfigError(f"ha.sync_vlan: VLAN {sync_vlan} is also in ha.vlans; the sync VLAN's address is this "
                          f"instance's own and must not move")
    ha = HaConfig(group=group, priority=priority, vlans=ha_vlans, sync_vlan=sync_vlan)
    if "advert_interval_s" in raw:
        # VRRPv3 counts centiseconds in 12 bits: 0.01 to 40.95.
        ha.advert_interval_s = _number(raw, "advert_interval_s", "ha.advert_interval_s", minimum=0.01,
                                       maximum=40.95)
    if "preempt_delay_s" in raw:
        ha.preempt_delay_s = _number(raw, "preempt_delay_s", "ha.preempt_delay_s", minimum=0.0, maximum=3600.0)
    if "preempt" in raw:
        ha.preempt = _bool(raw, "preempt", "ha.preempt")
    if "peer" in raw:
        ha.peer = _ipv4(raw, "peer", "ha.peer")
        own = by_id[sync_vlan].address
        if ha.peer not in own.network or ha.peer == own.ip or not _host_of(ha.peer, own.network):
            raise ConfigError(f"ha.peer: {ha.peer} must be the other instance's address in the sync VLAN's "
                              f"subnet {own.network}")
    if "track_ports" in raw:
        names = raw["track_ports"]
        known = {p.name for p in ports}
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"ha.track_ports: must be a list of port names, got {names!r}")
        for k, name in enumerate(names):
            if name not in known:
                raise ConfigError(f"ha.track_ports[{k}]: no port named {name!r}{_did_you_mean(name, known)} "
                                  f"(have {', '.join(sorted(known)) or 'none'})")
            if name in names[:k]:
                raise ConfigError(f"ha.track_ports[{k}]: port {name!r} is listed twice")
        ha.track_ports = tuple(names)
    return ha


def _vip(raw, where: str, vlans: list[VlanInterface]) -> VipConfig:
    from . import config_l7
    from .lb.schedulers import SCHEDULERS

    _entry(raw, where, {"name", "address", "port", "protocol", "mode", "scheduler", "persistence_s",
                       "encap", "backend", "health", "max_embryonic", "flood_threshold", "upcall_rate"}
           | config_l7.L7_KEYS, ("name", "address", "port"))
    name = _name(raw, "name", f"{where}.name")
    address = _ipv4(raw, "address", f"{where}.address")
    _not_a_switch_address(address, f"{where}.address", vlans)
    vip = VipConfig(name=name, address=address, port=_integer(raw, "port", f"{where}.port", 1, 65535))
    for key, choices in (("protocol", VIP_PROTOCOLS), ("mode", VIP_MODES), ("scheduler", tuple(SCHEDULERS)),
                         ("encap", TUNNEL_ENCAPS)):
        if key in raw:
            value = _string(raw, key, f"{where}.{key}")
            if value not in choices:
                raise ConfigError(f"{where}.{key}: must be one of {', '.join(choices)}, got {value!r}"
                                  f"{_did_you_mean(value, choices)}")
            setattr(vip, key, value)
    if "persistence_s" in raw:
        vip.persistence_s = _number(raw, "persistence_s", f"{where}.persistence_s", minimum=0)
    for key, high in (("max_embryonic", MAX_EMBRYONIC), ("flood_threshold", MAX_EMBRYONIC),
                      ("upcall_rate", MAX_UPCALL_RATE)):
        if key in raw:
            setattr(vip, key, _integer(raw, key, f"{where}.{key}", 0, high))
    if vip.upcall_rate and vip.max_embryonic and vip.flood_threshold > vip.max_embryonic:
        raise ConfigError(f"{where}.flood_threshold: {vip.flood_threshold} is above max_embryonic "
                          f"{vip.max_embryonic}: the VIP would never count as flooded")
    backends = raw.get("backend", [])
    if not isinstance(backends, list):
        raise ConfigError(f"{where}.backend: must be an array of tables ([[vip.backend]])")
    if len(backends) > MAX_BACKENDS:
        raise ConfigError(f"{where}.backend: at most {MAX_BACKENDS} backends, got {len(backends)}")
    for j, b in enumerate(backends):
        vip.backends.append(_backend(b, f"{where}.backend[{j}]", vip, vlans))
    seen = {}
    for j, b in enumerate(vip.backends):
        if (b.address, b.port) in seen:
            raise ConfigError(f"{where}.backend[{j}]: {b.address}:{b.port} is already backend[{seen[b.address, b.port]}]")
        seen[(b.address, b.port)] = j
    if "health" in raw:
        vip.health = _health(raw["health"], f"{where}.health")
    if vip.mode in config_l7.L7_MODES:
        vip.l7 = config_l7.parse(raw, where, vip, vlans)
    else:
        config_l7.refuse_l7_keys(raw, where, vip.mode)
    return vip


def _backend(raw, where: str, vip: VipConfig, vlans: list[VlanInterface]) -> BackendConfig:
    _entry(raw, where, {"address", "port", "weight"}, ("address",))
    backend = BackendConfig(address=_ipv4(raw, "address", f"{where}.address"), port=vip.port)
    if backend.address == vip.address:
        raise ConfigError(f"{where}.address: {backend.address} is the VIP itself (a backend is a real server)")
    _not_a_switch_address(backend.address, f"{where}.address", vlans)
    if vip.mode == "dsr" and vlans and not any(backend.address in v.address.network for v in vlans):
        # Only the destination MAC changes: a next hop would send the VIP's packet back to us.
        raise ConfigError(f"{where}.address: a dsr backend must be on a [[vlan]] interface's subnet (only its MAC "
                          f"is rewritten), {backend.address} is on none")
    if "port" in raw:
        backend.port = _integer(raw, "port", f"{where}.port", 1, 65535)
        if vip.mode in ("dsr", "tunnel") and backend.port != vip.port:
            raise ConfigError(f"{where}.port: in {vip.mode} mode the backend serves the VIP's own port "
                              f"{vip.port} (only nat and fullnat can change it)")
    if "weight" in raw:
        backend.weight = _integer(raw, "weight", f"{where}.weight", 0, 65535)
    return backend


def _health(raw, where: str) -> HealthConfig:
    _entry(raw, where, set(HealthConfig.__dataclass_fields__), ())
    health = HealthConfig()
    if "type" in raw:
        health.type = _string(raw, "type", f"{where}.type")
        if health.type not in HEALTH_TYPES:
            raise ConfigError(f"{where}.type: must be one of {', '.join(HEALTH_TYPES)}, got {health.type!r}"
                              f"{_did_you_mean(health.type, HEALTH_TYPES)}")
    for key in ("interval_s", "timeout_s"):
        if key in raw:
            setattr(health, key, _number(raw, key, f"{where}.{key}", minimum=0.01, maximum=3600.0))
    for key in ("rise", "fall"):
        if key in raw:
            setattr(health, key, _integer(raw, key, f"{where}.{key}", 1, 100))
    if "http_path" in raw:
        health.http_path = _string(raw, "http_path", f"{where}.http_path")
        # It goes into the request line as it is: a space or a control character would end it early.
        if not re.fullmatch(r"/[!-~]{0,1023}", health.http_path):
            raise ConfigError(f"{where}.http_path: must start with '/' and be printable ASCII without spaces "
                              f"(at most 1024), got {health.http_path!r}")
    if "http_expect" in raw:
        health.http_expect = _integer(raw, "http_expect", f"{where}.http_expect", 100, 599)
    if "on_down" in raw:
        health.on_down = _string(raw, "on_down", f"{where}.on_down")
        if health.on_down not in ("reset", "keep"):
            raise ConfigError(f"{where}.on_down: must be reset or keep, got {health.on_down!r}")
    if health.timeout_s > health.interval_s:
        raise ConfigError(f"{where}.timeout_s: {health.timeout_s} is longer than interval_s {health.interval_s}")
    return health


def _check_vips(vips: list[VipConfig], vlans: list[VlanInterface], routes: list[Route]) -> None:
    from . import config_l7

    if len(vips) > MAX_VIPS:
        raise ConfigError(f"vip: at most {MAX_VIPS} VIPs, got {len(vips)}")
    names, services, addresses = {}, {}, {}
    for i, vip in enumerate(vips):
        if vip.name in names:
            raise ConfigError(f"vip[{i}].name: {vip.name!r} is already vip[{names[vip.name]}]")
        names[vip.name] = i
        service = (vip.address, vip.port, vip.protocol)
        if service in services:
            raise ConfigError(f"vip[{i}]: {vip.address}:{vip.port}/{vip.protocol} is already vip[{services[service]}]")
        services[service] = i
        addresses.setdefault(vip.address, i)
    for i, vip in enumerate(vips):
        for j, backend in enumerate(vip.backends):
            if backend.address in addresses:
                raise ConfigError(f"vip[{i}].backend[{j}].address: {backend.address} is vip[{addresses[backend.address]}]'s "
                                  f"address (the switch itself would answer)")
            if vlans and not any(backend.address in v.address.network for v in vlans) \
                    and not any(backend.address in r.prefix for r in routes):
                raise ConfigError(f"vip[{i}].backend[{j}].address: {backend.address} is on no [[vlan]] interface's "
                                  f"subnet and no [[route]] leads to it")
    for i, vip in enumerate(vips):
        for key, address in config_l7.backends(vip):
            if address in addresses:
                raise ConfigError(f"vip[{i}].{key}: {address} is vip[{addresses[address]}]'s address "
                                  f"(the switch itself would answer)")
            if vlans and not any(address in v.address.network for v in vlans) \
                    and not any(address in r.prefix for r in routes):
                raise ConfigError(f"vip[{i}].{key}: {address} is on no [[vlan]] interface's subnet and no "
                                  f"[[route]] leads to it")
    for j, route in enumerate(routes):
        if route.via in addresses:
            raise ConfigError(f"route[{j}].via: {route.via} is vip[{addresses[route.via]}]'s address")


def _not_a_switch_address(address: ipaddress.IPv4Address, where: str, vlans: list[VlanInterface]) -> None:
    """`address` names another machine: not one of the switch's own, nor a subnet's network or broadcast address."""
    for k, vlan in enumerate(vlans):
        if address == vlan.address.ip:
            raise ConfigError(f"{where}: {address} is one of the switch's own VLAN addresses (vlan[{k}])")
        if address in vlan.address.network and not _host_of(address, vlan.address.network):
            raise ConfigError(f"{where}: {address} is the network or broadcast address of vlan[{k}]'s "
                              f"{vlan.address.network}")


def _host_of(address, network) -> bool:
    """Whether `address` may be a host of `network`: not its network or broadcast address (below a /31)."""
    if network.prefixlen >= network.max_prefixlen - 1:
        return True
    if network.version == 6:        # no broadcast; the all-zero host is the subnet-router anycast address
        return address != network.network_address
    return address not in (network.network_address, network.broadcast_address)


def _ipv4(raw: dict, key: str, where: str) -> ipaddress.IPv4Address:
    """A unicast IPv4 address: one machine's, so never multicast, broadcast, 0.0.0.0, loopback or 240/4."""
    text = _string(raw, key, where)
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ConfigError(f"{where}: not an IPv4 address: {text!r}{_looks_like_network(text)}") from None
    _unicast(address, where)
    return address


def _unicast(address, where: str) -> None:
    for wrong, what in ((address.is_multicast, "a multicast"), (address.is_unspecified, "the unspecified"),
                        (address.is_loopback, "a loopback"),
                        (address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"),
                         "the broadcast"),
                        (address.version == 4 and address.is_reserved, "a reserved (240.0.0.0/4)")):
        if wrong:
            raise ConfigError(f"{where}: {address} is {what} address; a unicast address is needed here")


def _looks_like_network(text: str) -> str:
    return " (a single address is needed here, without a prefix length)" if "/" in text else ""


def _array(data: dict, key: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be an array of tables ([[{key}]])")
    return value


def _vlan_interface(raw, where: str) -> VlanInterface:
    _entry(raw, where, {"id", "address", "mac", "decap"}, ("id", "address"))
    vid = _vlan_id(raw["id"], f"{where}.id")
    text = _string(raw, "address", f"{where}.address")
    try:
        address = ipaddress.IPv4Interface(text)
    except ValueError:
        raise ConfigError(f"{where}.address: not an IPv4 address with a prefix length: {text!r}") from None
    if "/" not in text or address.network.prefixlen > 30:
        raise ConfigError(f"{where}.address: give the subnet's prefix length (at most /30), e.g. "
                          f"\"198.51.100.1/24\", got {text!r}")
    if address.ip == address.network.network_address or address.ip == address.network.broadcast_address:
        raise ConfigError(f"{where}.address: {address.ip} is the subnet's network or broadcast address")
    _unicast(address.ip, f"{where}.address")
    vlan = VlanInterface(id=vid, address=address)
    if "decap" in raw:
        vlan.decap = _bool(raw, "decap", f"{where}.decap")
    if "mac" in raw:
        vlan.mac = _mac(raw, "mac", f"{where}.mac")
    return vlan


def _check_vlan_interfaces(vlans: list[VlanInterface]) -> None:
    for i, vlan in enumerate(vlans):
        for j, other in enumerate(vlans[:i]):
            if other.id == vlan.id:
                raise ConfigError(f"vlan[{i}].id: VLAN {vlan.id} already has an interface (vlan[{j}])")
            if other.address.network.overlaps(vlan.address.network):
                raise ConfigError(f"vlan[{i}].address: {vlan.address.network} overlaps vlan[{j}]'s "
                                  f"{other.address.network}")


def _route(raw, where: str, vlans: list[VlanInterface]) -> Route:
    _entry(raw, where, {"prefix", "via"}, ("prefix", "via"))
    text = _string(raw, "prefix", f"{where}.prefix")
    try:
        prefix = ipaddress.IPv4Network(text)
    except ValueError:
        raise ConfigError(f"{where}.prefix: not an IPv4 prefix (host bits must be zero): {text!r}") from None
    if "/" not in text:
        raise ConfigError(f"{where}.prefix: give the prefix length (\"{text}/32\" for one host), got {text!r}")
    if prefix.prefixlen >= 4 and (prefix.is_multicast or prefix.is_loopback or prefix.network_address.is_reserved):
        raise ConfigError(f"{where}.prefix: {prefix} is multicast, loopback or reserved space, which is not routed")
    via = _ipv4(raw, "via", f"{where}.via")
    if not any(via in v.address.network for v in vlans):
        raise ConfigError(f"{where}.via: {via} is not in the subnet of any [[vlan]] interface")
    _not_a_switch_address(via, f"{where}.via", vlans)
    return Route(prefix=prefix, via=via)


def _check_routes(routes: list[Route], vlans: list[VlanInterface]) -> None:
    if len(routes) > MAX_ROUTES:
        raise ConfigError(f"route: at most {MAX_ROUTES} routes, got {len(routes)}")
    seen: dict = {}
    for i, route in enumerate(routes):
        if route.prefix in seen:
            raise ConfigError(f"route[{i}].prefix: {route.prefix} is already route[{seen[route.prefix]}]")
        seen[route.prefix] = i
        for k, vlan in enumerate(vlans):
            if route.prefix == vlan.address.network:
                raise ConfigError(f"route[{i}].prefix: {route.prefix} is vlan[{k}]'s connected subnet")
    hops = {route.via for route in routes}
    if len(hops) + len(vlans) + 1 >= consts.MAX_NEXTHOPS:     # + 1: the switch's own, local one
        raise ConfigError(f"route: {len(hops)} next hops and {len(vlans)} interfaces are more than the "
                          f"datapath's {consts.MAX_NEXTHOPS - 1} next-hop ids")


def _switch(raw: dict) -> SwitchSettings:
    _only_keys(raw, "switch", set(SwitchSettings.__dataclass_fields__))
    s = SwitchSettings()
    if "name" in raw:
        s.name = _name(raw, "name", "switch.name")
    if "datapath" in raw:
        s.datapath = _string(raw, "datapath", "switch.datapath")
        if s.datapath not in DATAPATHS:
            raise ConfigError(f"switch.datapath: must be one of {', '.join(DATAPATHS)}, got {s.datapath!r}")
    for key in ("mac_aging_s", "flow_idle_s", "arp_reachable_s", "conn_syn_s", "conn_established_s",
                "conn_fin_wait_s", "conn_close_s", "conn_udp_s"):
        if key in raw:
            setattr(s, key, _number(raw, key, f"switch.{key}", minimum=0.1, maximum=MAX_SECONDS))
    for key, low, high in (("max_macs", 1, 1 << 24), ("max_macs_per_port", 0, 1 << 24), ("max_flows", 16, 1 << 24),
                           ("ring_frames", 8, 1 << 16),
                           ("arp_retries", 1, 10), ("arp_max_entries", 1, 65536), ("arp_queue", 1, 1024),
                           ("arp_queue_total", 1, 1 << 20), ("arp_rate_per_port", 0, 1000000),
                           ("max_conns", 16, 1 << 24), ("busy_poll_us", 0, 1000000),
                           ("workers", 1, consts.MAX_WORKERS)):
        if key in raw:
            setattr(s, key, _integer(raw, key, f"switch.{key}", low, high))
    if "control_dir" in raw:
        s.control_dir = _string(raw, "control_dir", "switch.control_dir")
    check_control_dir(s)
    check_workers(s)
    return s


def check_control_dir(s: SwitchSettings) -> None:
    """The control socket's path must be absolute and fit sockaddr_un.  Also called after `pyswitch run
    --control-dir` overrides the config."""
    if not s.control_dir.startswith("/"):
        raise ConfigError(f"switch.control_dir: must be an absolute path, got {s.control_dir!r}")
    path = f"{s.control_dir.rstrip('/')}/{s.name}.sock"
    if len(path.encode()) > SUN_PATH_MAX:
        raise ConfigError(f"switch.control_dir: the control socket {path!r} is longer than a Unix socket's "
                          f"{SUN_PATH_MAX} bytes")


def _check_workers_ports(s: SwitchSettings, ports: list[PortConfig]) -> None:
    """An afxdp port is one XDP program and one socket per receive queue: a second worker cannot open it too."""
    for i, port in enumerate(ports):
        if s.workers > 1 and port.type == "afxdp":
            raise ConfigError(f"switch.workers: port[{i}] ({port.name}) is afxdp, and an afxdp port is read by one "
                              f"worker; set workers = 1 or make it an afpacket port")


def _check_mac_limits(s: SwitchSettings, ports: list[PortConfig]) -> None:
    """A per-port MAC limit above the table's own bound could never be reached: say so rather than let the
    user believe the port is limited."""
    if s.max_macs_per_port > s.max_macs:
        raise ConfigError(f"switch.max_macs_per_port: {s.max_macs_per_port} is more than switch.max_macs "
                          f"({s.max_macs}), the whole table")
    for i, port in enumerate(ports):
        if port.max_macs is not None and port.max_macs > s.max_macs:
            raise ConfigError(f"port[{i}].max_macs: {port.max_macs} is more than switch.max_macs ({s.max_macs}), "
                              f"the whole table")


def check_workers(s: SwitchSettings) -> None:
    """The Python twin is one thread by design (it is the reference, not a fast path): more workers need C.
    Also called after `pyswitch run --datapath` overrides the config."""
    if s.workers > 1 and s.datapath != "c":
        raise ConfigError(f"switch.workers: {s.workers} workers need datapath = \"c\" (the {s.datapath} "
                          f"datapath runs in one thread); set workers = 1 or use the C datapath")


def _port(raw, where: str) -> PortConfig:
    _entry(raw, where, {"name", "type", "device", "vlan", "trunk", "native_vlan", "netns", "address", "mac",
                        "max_macs"}, ("name", "type", "device"))
    name = _name(raw, "name", f"{where}.name")
    kind = _string(raw, "type", f"{where}.type")
    if kind not in PORT_TYPES:
        raise ConfigError(f"{where}.type: must be one of {', '.join(PORT_TYPES)}, got {kind!r}"
                          f"{_did_you_mean(kind, PORT_TYPES)}")
    device = _string(raw, "device", f"{where}.device")
    if not IFNAME_RE.match(device) or device in (".", ".."):
        raise ConfigError(f"{where}.device: not a valid interface name (1-{IFNAME_MAX} letters, digits or "
                          f"'_.+@-'): {device!r}")
    port = PortConfig(name=name, type=kind, device=device)
    if "max_macs" in raw:
        port.max_macs = _integer(raw, "max_macs", f"{where}.max_macs", 1, 1 << 24)

    if "vlan" in raw and "trunk" in raw:
        raise ConfigError(f"{where}: give either vlan (access port) or trunk (tagged trunk), not both")
    if "trunk" in raw:
        trunk = raw["trunk"]
        if not isinstance(trunk, list) or not trunk:
            raise ConfigError(f"{where}.trunk: must be a non-empty list of VLAN ids, got {trunk!r}")
        port.trunk = tuple(_vlan_id(v, f"{where}.trunk[{k}]") for k, v in enumerate(trunk))
        for k, vid in enumerate(port.trunk):
            if vid in port.trunk[:k]:
                raise ConfigError(f"{where}.trunk[{k}]: lists VLAN {vid} twice")
        if "native_vlan" in raw:
            port.native_vlan = _vlan_id(raw["native_vlan"], f"{where}.native_vlan")
            if port.native_vlan in port.trunk:
                # A VLAN travels either tagged or untagged on one trunk; both would accept it tagged and
                # send it untagged.
                raise ConfigError(f"{where}.native_vlan: VLAN {port.native_vlan} is also in trunk (tagged); the "
                                  f"native VLAN travels untagged, list it only here")
    else:
        if "native_vlan" in raw:
            raise ConfigError(f"{where}.native_vlan: only a trunk port has a native VLAN")
        port.vlan = _vlan_id(raw.get("vlan", DEFAULT_VLAN), f"{where}.vlan")

    if kind in EXISTING_INTERFACE_TYPES:
        for key in ("netns", "address", "mac"):
            if key in raw:
                raise ConfigError(f"{where}.{key}: only a tap port can be given {key} (pyswitch does not own "
                                  f"an {kind} port's interface)")
    else:
        if "netns" in raw:
            port.netns = _string(raw, "netns", f"{where}.netns")
            if not NETNS_RE.match(port.netns) or port.netns in (".", ".."):
                raise ConfigError(f"{where}.netns: not a namespace name (a file name in /run/netns: letters, "
                                  f"digits, '_.-', at most 64): {port.netns!r}")
        if "address" in raw:
            port.address = _interface_addresses(raw["address"], f"{where}.address")
        if "mac" in raw:
            port.mac = _mac(raw, "mac", f"{where}.mac")
    return port


def _interface_addresses(value, where: str) -> tuple[str, ...]:
    """A tap port's address or list of addresses: each IPv4 or IPv6, unicast, with its prefix length."""
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"{where}: an empty list (leave the key out for none)")
    seen = {}
    for k, text in enumerate(values):
        at = f"{where}[{k}]" if isinstance(value, list) else where
        if not isinstance(text, str):
            raise ConfigError(f"{at}: must be a string such as \"198.51.100.2/24\", got {text!r}")
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise ConfigError(f"{at}: not an address with a prefix length: {text!r}") from None
        if "/" not in text:
            raise ConfigError(f"{at}: give the prefix length too (\"{text}/24\" or so), got {text!r}")
        _unicast(iface.ip, at)
        if not _host_of(iface.ip, iface.network):
            raise ConfigError(f"{at}: {iface.ip} is the network or broadcast address of {iface.network}")
        if iface.ip in seen:
            raise ConfigError(f"{at}: {iface.ip} is already {where}[{seen[iface.ip]}]")
        seen[iface.ip] = k
    return tuple(values)


def _unique_tap_macs(ports: list[PortConfig]) -> None:
    seen: dict[str, int] = {}
    for i, port in enumerate(ports):
        if port.mac is not None:
            mac = port.mac.lower()
            if mac in seen:
                raise ConfigError(f"port[{i}].mac: {port.mac} is already port[{seen[mac]}]'s")
            seen[mac] = i


def _entry(raw, where: str, allowed: set[str], required: tuple[str, ...]) -> dict:
    """An array entry such as [[port]]: a table with only `allowed` keys and all `required` ones."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    _only_keys(raw, where, allowed)
    for key in required:
        if key not in raw:
            raise ConfigError(f"{where}.{key}: missing")
    return raw


def _name(raw: dict, key: str, where: str) -> str:
    name = _string(raw, key, where)
    if not NAME_RE.match(name):
        raise ConfigError(f"{where}: use letters, digits, '.', '_' or '-' (1-32), got {name!r}")
    return name


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table ([{key}])")
    return value


def _only_keys(raw: dict, where: str, allowed: set[str]) -> None:
    for key in raw:
        if key not in allowed:
            prefix = f"{where}.{key}" if where else key
            raise ConfigError(f"{prefix}: unknown key{_did_you_mean(key, allowed)} "
                              f"(expected one of {', '.join(sorted(allowed))})")


def _did_you_mean(word, choices) -> str:
    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _string(raw: dict, key: str, where: str) -> str:
    value = raw[key]
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string, got {_show(value)}")
    # No key takes a control character (TOML's escapes allow \u0000): they would cut a path or a request line.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(f"{where}: contains a control character: {value!r}")
    return value


def _bool(raw: dict, key: str, where: str) -> bool:
    value = raw[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {_show(value)}")
    return value


def _mac(raw: dict, key: str, where: str) -> str:
    """A unicast MAC address: a device's own, so neither multicast (first octet odd) nor all zero."""
    mac = _string(raw, key, where)
    if not MAC_RE.match(mac):
        raise ConfigError(f"{where}: not a MAC address (six hex pairs with ':'): {mac!r}")
    if int(mac[:2], 16) & 1 or mac.strip("0:") == "":
        raise ConfigError(f"{where}: not a unicast MAC address (multicast or all zero): {mac!r}")
    return mac


def _number(raw: dict, key: str, where: str, minimum: float, maximum: float = MAX_SECONDS) -> float:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not minimum <= value <= maximum:
        raise ConfigError(f"{where}: must be a number from {minimum} to {maximum}, got {_show(value)}")
    return float(value)


def _integer(raw: dict, key: str, where: str, low: int, high: int) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: must be an integer from {low} to {high}, got {_show(value)}")
    return value


def _vlan_id(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4094:
        raise ConfigError(f"{where}: VLAN ids are integers from 1 to 4094, got {_show(value)}")
    return value


def _show(value) -> str:
    """A value as the message quotes it: short, and its type where the type is the mistake."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, (bool, str, list, dict)):
        return f"{text} ({'table' if isinstance(value, dict) else type(value).__name__})"
    return text


def _unique(ports: list[PortConfig], attr: str) -> None:
    seen: dict[str, int] = {}
    for i, port in enumerate(ports):
        value = getattr(port, attr)
        if value in seen:
            raise ConfigError(f"port[{i}].{attr}: {value!r} is already used by port[{seen[value]}]")
        seen[value] = i
