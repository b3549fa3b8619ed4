"""Applying a changed config file to a running switch: SIGHUP, or `pyswitch reload`.

The file is read and validated whole first, then compared with the config the switch runs.  Whatever differs
must be something the running switch can change in place, or the reload is refused whole, nothing applied,
with a message naming the first key it cannot apply; the running config stays.  What applies live:

    [switch]   mac_aging_s, flow_idle_s, busy_poll_us, conn_*_s (the connection timeouts)
    [[route]]  added, changed (another via) or removed: one table write each
    [[vip]]    added (flows, address, ring, health checks, as at start) or removed (its connections closed)
    backends   added, removed (drained: no new connection, its open ones run on, as IPVS keeps a deleted real
               server's), weight changed

Everything else (ports, [[mirror]], VLAN interfaces, the datapath kind, workers, table sizes, [ha], [control], [metrics], a
VIP's address, port, mode, scheduler or health check) is fixed for the switch's life: restart it to change them.  A VIP is known
by its name: one renamed is one removed and one added.  Connections the change does not concern are never
touched: a change is a table write between two batches, and no table is rebuilt.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from . import config as config_mod

log = logging.getLogger("pyswitch")

LIVE_SWITCH_KEYS = ("mac_aging_s", "flow_idle_s", "busy_poll_us", "conn_syn_s", "conn_established_s",
                    "conn_fin_wait_s", "conn_close_s", "conn_udp_s")
LIVE_VIP_KEYS = ("name", "backends", "health")    # compared on their own (health: field by field)
FIXED_VIP_KEYS = tuple(f.name for f in dataclasses.fields(config_mod.VipConfig) if f.name not in LIVE_VIP_KEYS)
RESTART = "cannot change while the switch runs (restart it to apply this)"


class ReloadRefused(ValueError):
    """The new config is wrong or changes what cannot change live; the message starts with the key."""


@dataclasses.dataclass
class Plan:
    switch_keys: list[str] = dataclasses.field(default_factory=list)
    routes_set: list = dataclasses.field(default_factory=list)        # Route: added or changed
    routes_del: list = dataclasses.field(default_factory=list)        # prefix
    vips_add: list = dataclasses.field(default_factory=list)          # VipConfig
    vips_del: list = dataclasses.field(default_factory=list)          # name
    backends_add: list = dataclasses.field(default_factory=list)      # (vip name, BackendConfig)
    backends_del: list = dataclasses.field(default_factory=list)      # (vip name, (address, port))
    weights: list = dataclasses.field(default_factory=list)           # (vip name, (address, port), weight)

    def describe(self) -> list[str]:
        out = [f"switch.{key}" for key in self.switch_keys]
        out += [f"route {r.prefix} via {r.via}" for r in self.routes_set]
        out += [f"route {p} removed" for p in self.routes_del]
        out += [f"vip {v.name} added" for v in self.vips_add]
        out += [f"vip {name} removed" for name in self.vips_del]
        out += [f"vip {name}: backend {b.address}:{b.port} added" for name, b in self.backends_add]
        out += [f"vip {name}: backend {a}:{p} removed" for name, (a, p) in self.backends_del]
        out += [f"vip {name}: backend {a}:{p} weight {w}" for name, (a, p), w in self.weights]
        return out


def load(path: str, overrides: dict) -> config_mod.Config:
    """The file's config, validated, with the command line's overrides (run --datapath) applied as at start."""
    try:
        new = config_mod.load(path)
    except config_mod.ConfigError as exc:
        raise ReloadRefused(f"config error: {exc}") from None
    for key, value in overrides.items():
        setattr(new.switch, key, value)
    if new.vips and not new.vlans:
        raise ReloadRefused("config error: vip[0]: a virtual IP is routed: give the switch [[vlan]] interfaces")
    return new


def plan(running: config_mod.Config, new: config_mod.Config) -> Plan:
    """What changes from `running` to `new`; raises ReloadRefused naming the first key that cannot change live."""
    p = Plan()
    for f in dataclasses.fields(config_mod.SwitchSettings):
        old_value, new_value = getattr(running.switch, f.name), getattr(new.switch, f.name)
        if old_value == new_value:
            continue
        if f.name not in LIVE_SWITCH_KEYS:
            raise ReloadRefused(f"switch.{f.name}: {RESTART} (running {old_value!r}, the file says {new_value!r})")
        p.switch_keys.append(f.name)
    _same_list(running.mirrors, new.mirrors, "mirror")     # first: a new target is a port's change too
    _same_list(running.ports, new.ports, "port")
    _same_list(running.vlans, new.vlans, "vlan")
    if running.ha != new.ha:
        raise ReloadRefused(f"ha: {RESTART}")
    for f in dataclasses.fields(running.control):
        if getattr(running.control, f.name) != getattr(new.control, f.name):
            raise ReloadRefused(f"control.{f.name}: {RESTART} (the socket's owner and mode are set when it is made)")
    if running.metrics != new.metrics:
        raise ReloadRefused(f"metrics.listen: {RESTART} (the endpoint is opened when the switch starts)")
    old_routes = {r.prefix: r for r in running.routes}
    new_routes = {r.prefix: r for r in new.routes}
    p.routes_set = [r for prefix, r in new_routes.items() if old_routes.get(prefix) != r]
    p.routes_del = [prefix for prefix in old_routes if prefix not in new_routes]
    _plan_vips(running, new, p)
    return p


def _same_list(old: list, new: list, key: str) -> None:
    for i in range(max(len(old), len(new))):
        if i >= len(old):
            raise ReloadRefused(f"{key}[{i}]: added; {key}s {RESTART}")
        if i >= len(new):
            raise ReloadRefused(f"{key}[{i}]: removed; {key}s {RESTART}")
        if old[i] != new[i]:
            field = next(f.name for f in dataclasses.fields(old[i])
                         if getattr(old[i], f.name) != getattr(new[i], f.name))
            raise ReloadRefused(f"{key}[{i}].{field}: {RESTART}")


def _plan_vips(running: config_mod.Config, new: config_mod.Config, p: Plan) -> None:
    old_vips = {v.name: v for v in running.vips}
    new_names = {v.name for v in new.vips}
    for i, vip in enumerate(new.vips):
        old = old_vips.get(vip.name)
        if old is None and vip.l7 is not None:
            raise ReloadRefused(f"vip[{i}]: an {vip.mode} VIP cannot be added while the switch runs: {RESTART}")
        if old is None:
            if running.ha is not None:
                raise ReloadRefused(f"vip[{i}]: VIPs cannot be added to a member of an HA pair while it runs "
                                    "(its peer would not have it): restart both")
            p.vips_add.append(vip)
            continue
        for key in FIXED_VIP_KEYS:
            if getattr(old, key) != getattr(vip, key):
                raise ReloadRefused(f"vip[{i}].{key}: {RESTART} (or give the VIP another name: a new VIP)")
        for f in dataclasses.fields(config_mod.HealthConfig):
            if getattr(old.health, f.name) != getattr(vip.health, f.name):
                raise ReloadRefused(f"vip[{i}].health.{f.name}: {RESTART}")
        old_backends = {(str(b.address), b.port): b for b in old.backends}
        new_backends = {(str(b.address), b.port): b for b in vip.backends}
        for key, b in new_backends.items():
            if key not in old_backends:
                p.backends_add.append((vip.name, b))
            elif old_backends[key].weight != b.weight:
                p.weights.append((vip.name, key, b.weight))
        p.backends_del += [(vip.name, key) for key in old_backends if key not in new_backends]
    for name in old_vips:
        if name not in new_names:
            if old_vips[name].l7 is not None:
                raise ReloadRefused(f"vip: {name!r} removed; an {old_vips[name].mode} VIP cannot be removed while "
                                    f"the switch runs: {RESTART}")
            if running.ha is not None:
                raise ReloadRefused(f"vip: {name!r} removed; VIPs cannot be removed from a member of an HA pair "
                                    "while it runs: restart both")
            p.vips_del.append(name)


def apply(switch, new: config_mod.Config, p: Plan) -> list[str]:
    """Makes the running switch what `new` says (plan() has accepted every difference); returns what changed."""
    now = time.monotonic()
    settings = switch.settings
    for key in p.switch_keys:
        setattr(settings, key, getattr(new.switch, key))
    if {"mac_aging_s", "flow_idle_s"} & set(p.switch_keys):
        switch.macs.aging_s = settings.mac_aging_s
        switch.l2.flow_idle_ms = int(settings.flow_idle_s * 1000)
    if any(key.startswith("conn_") for key in p.switch_keys):
        switch.vips.set_timeouts(settings)
    for prefix in p.routes_del:
        if prefix in switch.l3.static:
            switch.l3.route_del(str(prefix))
    for route in p.routes_set:
        if route.prefix in switch.l3.static:
            # No packet runs between the two writes: the datapath forwards only inside serve().
            switch.l3.route_del(str(route.prefix))
        switch.l3.route_add(str(route.prefix), str(route.via))
    vips = switch.vips
    for name in p.vips_del:
        closed = vips.remove_service(name)
        log.info("reload: vip %s removed, %d connections closed", name, closed)
    for vip in p.vips_add:
        vips.add_service(vip, now)
    for name, address_port in p.backends_del:
        service = vips.by_name[name]
        vips.remove_backend(service, service.backend(*address_port))
    for name, backend in p.backends_add:
        vips.add_backend(vips.by_name[name], backend, now)
    for name, address_port, weight in p.weights:
        service = vips.by_name[name]
        vips.set_weight(service, service.backend(*address_port), weight)
    # The config the switch now runs: the next reload is compared with it.  Its [switch] is the one the
    # stages hold, changed in place above.
    new.switch = settings
    switch.config = new
    return p.describe()


def reload(switch, path: str | None = None) -> dict:
    """Reads the config file again (or `path`) and applies it; raises ReloadRefused with nothing applied."""
    started = time.monotonic()
    path = path or switch.config.source
    try:
        new = load(path, switch.overrides)
        p = plan(switch.config, new)
    except ReloadRefused as exc:
        switch.events.emit("config_reload_refused", file=path, error=str(exc))
        raise
    changes = apply(switch, new, p)
    took_ms = round((time.monotonic() - started) * 1000, 3)
    switch.events.emit("config_reload", file=path, changes=changes, took_ms=took_ms)
    if changes:
        log.info("reload of %s applied in %.1f ms: %s", path, took_ms, "; ".join(changes))
    else:
        log.info("reload of %s: nothing changed", path)
    return {"file": path, "changes": changes, "took_ms": took_ms}
