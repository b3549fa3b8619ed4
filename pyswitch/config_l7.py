"""The L7 sections of a [[vip]] (docs/L7.md): mode "l7" / "l7-tls", rules, pools, persistence, limits.

A part of config.py kept in a module of its own: config.py's _vip() hands an l7 VIP's keys here, and every error
names its key as the rest of the config's do (`vip[0].rule[1].pool: ...`).  Regexes are compiled at load, so a bad
one is a config error, not a request-time surprise.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field

from .config import (MAX_BACKENDS, ConfigError, HealthConfig, VipConfig, VlanInterface, _bool, _did_you_mean,
                     _entry, _health, _integer, _name, _not_a_switch_address, _number, _show, _string, _unicast)

L7_MODES = ("l7", "l7-tls")
L7_KEYS = {"default_pool", "rule", "pool", "persistence", "max_request_bytes", "request_timeout_s"}
RULE_MATCHES = ("host", "path_prefix", "path_regex", "header", "cookie")
TLS_MATCHES = ("host",)             # an l7-tls VIP sees the ClientHello's SNI and nothing of the request
MAX_POOLS = 64                      # pools of one VIP
MAX_RULES = 256                     # rules of one VIP, tried in order
MAX_PATTERN = 1024                  # characters of a path, a regex, a header or cookie value
DEFAULT_MAX_REQUEST_BYTES = 16384   # the first request is read up to this many bytes...
DEFAULT_REQUEST_TIMEOUT_S = 5.0     # ...and for this long; slower clients are reset and counted
MAX_REQUEST_BYTES = 1 << 20
HOST_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                     r"[A-Za-z0-9])?)*\.?$")
TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")   # an HTTP field name (RFC 9110 token)
COOKIE_NAME_RE = TOKEN_RE                                         # a cookie name is a token too (RFC 6265)
PATH_RE = re.compile(r"^/[!-~]{0,1023}$")                         # as it stands in the request line


@dataclass
class L7Rule:
    """One [[vip.rule]]: every key it gives must match (first matching rule wins)."""
    pool: str
    host: str | None = None                     # lowercase, without a trailing dot; the Host header or the SNI
    path_prefix: str | None = None
    path_regex: re.Pattern | None = None        # searched in the path (anchor it with ^ to match from the start)
    header: tuple[str, str] | None = None       # (name lowercase, value): the field's value equals it
    cookie: tuple[str, str] | None = None       # (name, value): the request carries the cookie with this value


@dataclass
class L7Pool:
    """One [[vip.pool]]: the backends a rule sends to, with their own scheduler and health check."""
    name: str
    scheduler: str = "rr"
    backends: list[tuple[ipaddress.IPv4Address, int]] = field(default_factory=list)
    health: HealthConfig = field(default_factory=HealthConfig)


@dataclass
class L7Persistence:
    """[vip.persistence]: a client that shows this cookie keeps the backend it names."""
    cookie: str
    insert: bool = False                        # the switch adds the cookie to the first response


@dataclass
class L7Config:
    """What an l7 or l7-tls VIP adds to a VipConfig (VipConfig.l7)."""
    rules: list[L7Rule] = field(default_factory=list)
    pools: list[L7Pool] = field(default_factory=list)
    default_pool: str | None = None             # None: a request no rule matches gets a 503
    persistence: L7Persistence | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S

    def pool(self, name: str) -> L7Pool:
        return next(p for p in self.pools if p.name == name)


def refuse_l7_keys(raw: dict, where: str, mode: str) -> None:
    """An L4 VIP (nat, fullnat, dsr, tunnel) has no rules, pools or request limits."""
    for key in sorted(L7_KEYS & set(raw)):
        raise ConfigError(f"{where}.{key}: only an l7 or l7-tls VIP has {key}, this one's mode is {mode}")


def parse(raw: dict, where: str, vip: VipConfig, vlans: list[VlanInterface]) -> L7Config:
    """The L7 keys of `raw`, the [[vip]] table of `vip` (whose mode is l7 or l7-tls)."""
    if vip.protocol != "tcp":
        raise ConfigError(f"{where}.protocol: an {vip.mode} VIP is TCP (it reads the request), got {vip.protocol!r}")
    if "backend" in raw:
        raise ConfigError(f"{where}.backend: an {vip.mode} VIP sends to pools: give its backends in [[vip.pool]] "
                          f"backends = [\"address:port\", ...]")
    l7 = L7Config()
    pools = raw.get("pool", [])
    if not isinstance(pools, list) or not pools:
        raise ConfigError(f"{where}.pool: an {vip.mode} VIP needs at least one pool ([[vip.pool]])")
    if len(pools) > MAX_POOLS:
        raise ConfigError(f"{where}.pool: at most {MAX_POOLS} pools, got {len(pools)}")
    names: dict[str, int] = {}
    for k, p in enumerate(pools):
        pool = _pool(p, f"{where}.pool[{k}]", vip, vlans)
        if pool.name in names:
            raise ConfigError(f"{where}.pool[{k}].name: {pool.name!r} is already pool[{names[pool.name]}]")
        names[pool.name] = k
        l7.pools.append(pool)
    if "default_pool" in raw:
        l7.default_pool = _pool_name(raw, "default_pool", f"{where}.default_pool", names)
    rules = raw.get("rule", [])
    if not isinstance(rules, list):
        raise ConfigError(f"{where}.rule: must be an array of tables ([[vip.rule]])")
    if len(rules) > MAX_RULES:
        raise ConfigError(f"{where}.rule: at most {MAX_RULES} rules, got {len(rules)}")
    l7.rules = [_rule(r, f"{where}.rule[{k}]", vip.mode, names) for k, r in enumerate(rules)]
    if "persistence" in raw:
        l7.persistence = _persistence(raw["persistence"], f"{where}.persistence", vip.mode)
    if "max_request_bytes" in raw:
        l7.max_request_bytes = _integer(raw, "max_request_bytes", f"{where}.max_request_bytes", 1024,
                                        MAX_REQUEST_BYTES)
    if "request_timeout_s" in raw:
        l7.request_timeout_s = _number(raw, "request_timeout_s", f"{where}.request_timeout_s", minimum=0.1,
                                       maximum=300.0)
    return l7


def _pool_name(raw: dict, key: str, where: str, names: dict[str, int]) -> str:
    name = _string(raw, key, where)
    if name not in names:
        raise ConfigError(f"{where}: no pool named {name!r}{_did_you_mean(name, names)} "
                          f"(have {', '.join(sorted(names))})")
    return name


def _pool(raw, where: str, vip: VipConfig, vlans: list[VlanInterface]) -> L7Pool:
    from .lb.schedulers import SCHEDULERS

    _entry(raw, where, {"name", "scheduler", "backends", "health"}, ("name", "backends"))
    # The VIP's scheduler and health check are the pools' defaults.
    pool = L7Pool(name=_name(raw, "name", f"{where}.name"), scheduler=vip.scheduler,
                  health=dataclasses.replace(vip.health))
    if "scheduler" in raw:
        pool.scheduler = _string(raw, "scheduler", f"{where}.scheduler")
        if pool.scheduler not in SCHEDULERS:
            raise ConfigError(f"{where}.scheduler: must be one of {', '.join(SCHEDULERS)}, got {pool.scheduler!r}"
                              f"{_did_you_mean(pool.scheduler, SCHEDULERS)}")
    backends = raw["backends"]
    if not isinstance(backends, list) or not backends:
        raise ConfigError(f"{where}.backends: must be a non-empty list of \"address:port\" strings, "
                          f"got {_show(backends)}")
    if len(backends) > MAX_BACKENDS:
        raise ConfigError(f"{where}.backends: at most {MAX_BACKENDS} backends, got {len(backends)}")
    seen: dict[tuple, int] = {}
    for j in range(len(backends)):
        backend = _address_port(backends, j, f"{where}.backends[{j}]")
        if backend[0] == vip.address:
            raise ConfigError(f"{where}.backends[{j}]: {backend[0]} is the VIP itself (a backend is a real server)")
        _not_a_switch_address(backend[0], f"{where}.backends[{j}]", vlans)
        if backend in seen:
            raise ConfigError(f"{where}.backends[{j}]: {backend[0]}:{backend[1]} is already backends[{seen[backend]}]")
        seen[backend] = j
        pool.backends.append(backend)
    if "health" in raw:
        pool.health = _health(raw["health"], f"{where}.health")
    return pool


def _address_port(values: list, j: int, where: str) -> tuple[ipaddress.IPv4Address, int]:
    text = _string({"v": values[j]}, "v", where)
    address, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{where}: not \"address:port\" (an IPv4 address and a port from 1 to 65535): {text!r}")
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise ConfigError(f"{where}: not an IPv4 address before the port: {text!r}") from None
    _unicast(ip, where)
    return ip, int(port)


def _rule(raw, where: str, mode: str, pools: dict[str, int]) -> L7Rule:
    _entry(raw, where, set(RULE_MATCHES) | {"pool"}, ("pool",))
    given = [key for key in RULE_MATCHES if key in raw]
    if not given:
        raise ConfigError(f"{where}: a rule needs at least one of {', '.join(RULE_MATCHES)} (a request that "
                          f"matches nothing in particular goes to default_pool)")
    if mode == "l7-tls":
        for key in given:
            if key not in TLS_MATCHES:
                raise ConfigError(f"{where}.{key}: an l7-tls VIP sees only the TLS server name (host), "
                                  f"not the encrypted request")
    rule = L7Rule(pool=_pool_name(raw, "pool", f"{where}.pool", pools))
    if "host" in raw:
        host = _string(raw, "host", f"{where}.host")
        if not HOST_RE.match(host):
            raise ConfigError(f"{where}.host: not a host name (letters, digits, '-' in labels joined by '.'): "
                              f"{host!r}")
        rule.host = host.lower().rstrip(".")
    if "path_prefix" in raw:
        rule.path_prefix = _string(raw, "path_prefix", f"{where}.path_prefix")
        if not PATH_RE.match(rule.path_prefix):
            raise ConfigError(f"{where}.path_prefix: must start with '/' and be printable ASCII without spaces "
                              f"(at most {MAX_PATTERN}), got {rule.path_prefix!r}")
    if "path_regex" in raw:
        pattern = _string(raw, "path_regex", f"{where}.path_regex")
        if len(pattern) > MAX_PATTERN:
            raise ConfigError(f"{where}.path_regex: at most {MAX_PATTERN} characters, got {len(pattern)}")
        try:
            rule.path_regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{where}.path_regex: not a regular expression: {exc} in {pattern!r}") from None
    if "header" in raw:
        rule.header = _pair(raw, "header", f"{where}.header", ":", TOKEN_RE, "\"Name: value\"")
        rule.header = (rule.header[0].lower(), rule.header[1])
    if "cookie" in raw:
        rule.cookie = _pair(raw, "cookie", f"{where}.cookie", "=", COOKIE_NAME_RE, "\"name=value\"")
    return rule


def _pair(raw: dict, key: str, where: str, sep: str, name_re: re.Pattern, shape: str) -> tuple[str, str]:
    """"Name: value" or "name=value": a token, the separator, a value (spaces around a header value dropped)."""
    text = _string(raw, key, where)
    name, found, value = text.partition(sep)
    value = value.strip(" \t") if sep == ":" else value
    if not found or not name_re.match(name):
        raise ConfigError(f"{where}: must be {shape} with a name of letters, digits and !#$%&'*+.^_`|~-, "
                          f"got {text!r}")
    if len(value) > MAX_PATTERN:
        raise ConfigError(f"{where}: the value is at most {MAX_PATTERN} characters, got {len(value)}")
    if sep == "=" and any(c in value for c in ' ",;\\'):
        raise ConfigError(f"{where}: a cookie value has no spaces, '\"', ',', ';' or '\\' (RFC 6265), got {text!r}")
    return name, value


def _persistence(raw, where: str, mode: str) -> L7Persistence:
    if mode == "l7-tls":
        raise ConfigError(f"{where}: an l7-tls VIP cannot read or set cookies (the request is encrypted)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table ([vip.persistence])")
    _entry(raw, where, {"cookie", "insert"}, ("cookie",))
    cookie = _string(raw, "cookie", f"{where}.cookie")
    if not COOKIE_NAME_RE.match(cookie):
        raise ConfigError(f"{where}.cookie: not a cookie name (letters, digits and !#$%&'*+.^_`|~-): {cookie!r}")
    persistence = L7Persistence(cookie=cookie)
    if "insert" in raw:
        persistence.insert = _bool(raw, "insert", f"{where}.insert")
    return persistence


def backends(vip: VipConfig) -> list[tuple[str, ipaddress.IPv4Address]]:
    """Every backend address of an l7 VIP's pools, with the key that names it, for the config's reachability
    checks; [] for an L4 VIP."""
    if vip.l7 is None:
        return []
    return [(f"pool[{k}].backends[{j}]", address) for k, pool in enumerate(vip.l7.pools)
            for j, (address, _port) in enumerate(pool.backends)]
