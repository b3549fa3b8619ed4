"""One switch, composed from a config: ports, a datapath, the slow-path stages, the control socket.

The run loop, once per wakeup:
    datapath.poll()  -> frames go port to port in the datapath; misses queue as upcalls
    upcalls          -> the L2 stage decides, sends each frame, installs a flow
    timers           -> idle flows expire, MAC entries age (kept alive by their flows)
    control socket   -> `pyswitch show ...` is answered between batches
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections import deque

from . import consts, mirrors
from .actions import describe as describe_actions
from .config import Config
from .control.server import ControlServer
from .flow_explain import explain_flow
from .events import EventLog
from .flowkey import FlowKey, mac_str
from .pipeline.ha import HaStage
from .pipeline.l2 import L2Stage
from .pipeline.l3 import L3Stage
from .pipeline.mac_table import MacTable
from .pipeline.vip import VipStage
from .ports import make_port
from .ports.watch import PortWatch
from .capture_sessions import CaptureSessions
from .reload import ReloadRefused
from .reload import reload as reload_config
from .trace import Tracer
from .table_watch import TableWatch, switch_tables

log = logging.getLogger("pyswitch")

POLL_MS = 100               # the longest the loop sleeps: bounds timer lateness
CONTROL_POLL_MS = 5         # ...while a control client's request is arriving
CAPTURE_POLL_MS = 20        # ...while a capture runs: its copies reach the client this soon (the datapath
                            # also returns early once a capture buffer is half full)
HOUSEKEEPING_S = 0.5        # flow expiry and MAC aging run this often at most
RECENT_UPCALLS = 128        # `show upcalls` keeps this many of the latest
UPCALL_REASONS = {consts.UPCALL_MISS: "miss", consts.UPCALL_ACTION: "action", consts.UPCALL_NO_ROUTE: "no_route",
                  consts.UPCALL_NO_NEIGH: "no_neigh", consts.UPCALL_TTL: "ttl", consts.UPCALL_LOCAL: "local",
                  consts.UPCALL_CONN_MISS: "conn_miss", consts.UPCALL_L7: "l7"}
# A slow-path turn longer than this means the slow path is overloaded (a flood of misses): the datapath then
# forwards on as long as the turn took before it hands the next upcalls over (ps_dp_set_hold), up to HOLD_MAX_US.
OVERLOADED_TURN_S = 0.001
HOLD_MAX_US = 10000
# The longest the slow path handles table misses in one go: traffic in the fast path waits while it does, so a
# flood of misses would otherwise add its whole queue's handling (tens of ms) to every packet's latency.  The
# misses left over are dropped and counted (upcalls_shed), each port having had its turn (interleave_by_port).
# Only misses: the upcalls that flows ask for (VRRP adverts, ARP, health-check answers, new VIP connections)
# are few, or bounded on their own, and losing one can cost more than a moment of latency.
UPCALL_BUDGET_S = 0.002


def interleave_by_port(upcalls: list) -> list:
    """The upcalls in round-robin order of their input ports, each port's in the order they came: when the
    slow path cannot handle them all, a flooding port's do not come before every other port's."""
    by_port: dict[int, list] = {}
    for upcall in upcalls:
        by_port.setdefault(upcall.in_port, []).append(upcall)
    if len(by_port) < 2:
        return upcalls
    queues = list(by_port.values())
    out = []
    for i in range(max(map(len, queues))):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def make_datapath(kind: str, max_flows: int, workers: int = 1):
    if kind == "python":
        from .refpath.datapath import Datapath
        return Datapath(max_flows=max_flows)     # one thread: config refuses workers > 1 here
    from .fastpath import Datapath
    return Datapath(max_flows=max_flows, workers=workers)


class Switch:
    def __init__(self, config: Config):
        self.config = config
        self.settings = config.switch
        self.dp = make_datapath(self.settings.datapath, self.settings.max_flows, self.settings.workers)
        self.ports = {}                     # port_no -> port object (ports/)
        self.port_configs = {}              # port_no -> PortConfig
        limits = {no: pc.mac_limit(self.settings) for no, pc in enumerate(config.ports)}
        self.macs = MacTable(self.settings.max_macs, self.settings.mac_aging_s,
                             {no: limit for no, limit in limits.items() if limit is not None})
        self.l2 = L2Stage(self.port_configs, self.macs, self.dp, int(self.settings.flow_idle_s * 1000))
        self.l3 = L3Stage(config, self.port_configs, self.dp, self.l2)
        self.vips = VipStage(config, self.port_configs, self.dp, self.l3)
        self.ha = HaStage(config, self.port_configs, self.dp, self.l3, self.vips) if config.ha else None
        self.events = EventLog()            # state changes, for `show events` and the log (pyswitch/events.py)
        for stage in (self.l2, self.vips, self.ha):
            if stage is not None:
                stage.event_log = self.events
        self.port_watch = PortWatch(self)   # interfaces deleted and made again while running
        self.table_watch = TableWatch(self.events, lambda: switch_tables(self))
        self.overrides = {}                 # [switch] keys the command line set (run --datapath): kept on reload
        self._reload_requested = False      # SIGHUP: reload the config file between two steps
        self.control = None
        self.metrics = None                 # [metrics]: the Prometheus endpoint (pyswitch/metrics.py)
        self.started = time.monotonic()
        self.recent_upcalls = deque(maxlen=RECENT_UPCALLS)   # (seq, time, in_port, reason, key)
        self.upcall_seq = 0
        self.upcalls_by_reason = dict.fromkeys(UPCALL_REASONS.values(), 0)   # handled by the slow path
        self._stop = False
        self._wake_r = self._wake_w = None
        self._next_housekeeping = 0.0
        self._refresh_every = max(0.5, min(self.settings.mac_aging_s / 4, 10.0))
        self._next_refresh = 0.0
        self._hold_us = 0                   # what the datapath was last told to hold upcalls for
        self.holds = 0                      # turns after which the datapath was made to forward on
        self.upcalls_shed = 0               # upcalls left over when a turn's budget ran out
        self.captures = CaptureSessions(self.dp, {p.name: no for no, p in enumerate(config.ports)},
                                        self._port_attached, self.events)   # `pyswitch capture`
        self.mirror_targets = set(mirrors.targets(config))   # ports that only watch ([[mirror]] to)
        self.mirror_target_dropped = 0      # their frames that came up anyway (their drop flow was refused)

    # -- life cycle ---------------------------------------------------------------

    def open(self) -> None:
        """Open every port and the control socket; on any failure, close what was opened and re-raise."""
        try:
            for port_no, port_config in enumerate(self.config.ports):
                port = make_port(port_config, port_no, self.settings.ring_frames)
                port.open()
                self.ports[port_no] = port
                port.attach(self.dp)
                self.port_configs[port_no] = port_config
                log.info("port %s (%s %s) attached as %d", port_config.name, port_config.type,
                         port_config.device, port_no)
            mirrors.install(self.dp, self.config)
            self.l3.install()
            self.vips.install()
            self.vips.start_health_checks(time.monotonic())
            if self.ha is not None:
                self.ha.install(time.monotonic())
            self.control = ControlServer(self.settings.name, self.settings.control_dir, self.handle_command,
                                         group=self.config.control.group)
            self.dp.add_wake_fd(self.control.fileno())
            self.control.clients.watch = (self.dp.add_wake_fd, self.dp.del_wake_fd)
            if self.config.metrics is not None:
                from .metrics import MetricsEndpoint, read_switch    # prometheus_client only when asked for
                self.metrics = MetricsEndpoint(self.config.metrics, lambda: read_switch(self))
                # One of the datapath's 8 wake fds (PS_MAX_WAKE_FDS), with the control socket, the loop's own and
                # the 4 control clients' (control/clients.py MAX_WATCHED).
                self.dp.add_wake_fd(self.metrics.fileno())
        except BaseException:
            self.close()
            raise

    def _port_attached(self, port_no: int) -> bool:
        return port_no in self.port_configs and port_no not in self.port_watch.missing

    def close(self) -> None:
        self.captures.close()               # first: each client hears why its capture ended
        if self.metrics is not None:        # first: no scrape waits on a loop that has stopped
            self.metrics.close()
            self.metrics = None
        if self.ha is not None and self.ports:
            self.ha.shutdown(time.monotonic())
        if self.control is not None:
            self.control.close()
            self.control = None
        for port_no, port in list(self.ports.items()):
            if port_no in self.port_configs and port_no not in self.port_watch.missing:
                try:
                    self.dp.del_port(port_no)
                except OSError:
                    pass
            port.close()
        self.ports.clear()
        self.port_configs.clear()
        self.dp.close()

    @property
    def workers(self) -> int:
        return getattr(self.dp, "workers", 1)

    def stop(self) -> None:
        self._stop = True
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass

    def request_reload(self) -> None:
        """SIGHUP: the reload runs in the loop, between two steps, never inside a signal handler."""
        self._reload_requested = True
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"r")
            except OSError:
                pass

    def reload(self) -> dict:
        """Applies the config file as it is now (pyswitch/reload.py); raises ValueError, nothing applied, when
        it cannot."""
        result = reload_config(self)
        self._refresh_every = max(0.5, min(self.settings.mac_aging_s / 4, 10.0))
        return result

    def _reload_from_signal(self) -> None:
        self._reload_requested = False
        try:
            self.reload()
        except ReloadRefused as exc:
            log.error("reload refused, the running config stays: %s", exc)
        except Exception:   # a table that refused a write: the switch goes on with what was applied
            log.exception("reload failed part way")

    def run(self) -> None:
        """Forward until SIGINT/SIGTERM (or stop()); the caller closes."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.dp.add_wake_fd(self._wake_r.fileno())
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        log.info("switch %s running with the %s datapath, %d ports, %d worker%s", self.settings.name,
                 self.dp.kind, len(self.ports), self.workers, "" if self.workers == 1 else "s")
        try:
            while not self._stop:
                self.step(self._poll_ms())
        finally:
            self.dp.del_wake_fd(self._wake_r.fileno())
            self._wake_r.close()
            self._wake_w.close()
            self._wake_r = self._wake_w = None

    def _poll_ms(self) -> int:
        """How long the loop may sleep: POLL_MS, or less when an HA timer is due sooner (adverts every
        100 ms leave no room for a late wakeup) or a control client's request is on its way (its socket
        is not a wake fd: look again soon rather than make it wait a whole POLL_MS)."""
        longest = CONTROL_POLL_MS if self.control is not None and self.control.clients.pending else POLL_MS
        if self.captures.active:
            longest = min(longest, CAPTURE_POLL_MS)
        deadline = self.ha.next_deadline() if self.ha is not None else None
        if deadline is None:
            return longest
        return max(0, min(longest, int((deadline - time.monotonic()) * 1000) + 1))

    def step(self, timeout_ms: int) -> None:
        # The datapath keeps forwarding on its own until it has upcalls or events for us, a wake fd (the
        # control socket) is readable or the timeout passes: under load the slow path runs once per burst of
        # work, not once per batch.
        self.dp.serve(timeout_ms, self.settings.busy_poll_us)
        now = time.monotonic()
        try:
            self._turn(now)
        finally:
            self._balance(time.monotonic() - now)

    def _balance(self, turn_s: float) -> None:
        """Keeps an overloaded slow path from taking the whole core: after a turn of `turn_s`, the datapath
        forwards for as long before the next turn (the upcalls that do not fit meanwhile are dropped and counted
        in upcall_dropped), so traffic in the fast path keeps about half of it whatever a flood costs."""
        hold_us = min(HOLD_MAX_US, int(turn_s * 1e6)) if turn_s > OVERLOADED_TURN_S else 0
        if hold_us:
            self.holds += 1
        if hold_us != self._hold_us:
            self.dp.set_hold(hold_us)
            self._hold_us = hold_us

    def _turn(self, now: float) -> None:
        """The slow path's turn: upcalls, timers, the control socket."""
        # Handling an upcall may execute packets that upcall again (a connection's first packet now waits
        # for ARP): they join the same queue, so read on from where we were until nothing new came.  The
        # queue is bounded.
        handled = self._drain_upcalls(0, now)
        self.captures.pump()
        if self.ha is not None:
            self.ha.timers(now)
        if self.vips.enabled:
            self.vips.events()
            if self.vips.serving:
                self.vips.health.timers(now)
        if now >= self._next_housekeeping:
            self._housekeeping(now)
        # Packets the timers sent (health probes, HA sync) may have come up too, say to wait for ARP; the
        # next poll starts a new run, which discards this one's upcalls, so they are handled now.
        self._drain_upcalls(handled, now)
        if self.control is not None:
            self.control.serve_pending()
        if self.metrics is not None:
            self.metrics.serve_pending()
        if self._reload_requested:
            self._reload_from_signal()
        if self._wake_r is not None:
            try:
                self._wake_r.recv(64)
            except BlockingIOError:
                pass

    def _drain_upcalls(self, handled: int, now: float) -> int:
        """Handles the run's upcalls from number `handled` on, and those that handling them adds to the
        queue (a connection's first packet now waits for ARP), until nothing new came; returns how many
        the queue held.  The queue is bounded."""
        deadline = time.monotonic() + UPCALL_BUDGET_S
        while upcalls := self.dp.upcalls(handled):
            handled += len(upcalls)
            for upcall in interleave_by_port(upcalls):
                if upcall.reason == consts.UPCALL_MISS and time.monotonic() >= deadline:
                    self.upcalls_shed += 1
                    continue
                self._upcall(upcall, now)
        return handled

    def _upcall(self, upcall, now: float) -> None:
        self.upcall_seq += 1
        reason = UPCALL_REASONS.get(upcall.reason, "other")
        self.upcalls_by_reason[reason] = self.upcalls_by_reason.get(reason, 0) + 1
        self.recent_upcalls.append((self.upcall_seq, now, upcall.in_port, upcall.reason, upcall.key))
        if upcall.in_port in self.mirror_targets:
            self.mirror_target_dropped += 1
            return
        if self.ha is not None and self.ha.handle(upcall, now):
            return
        if self.vips.enabled and self.vips.handle(upcall, now):
            return
        if self.l3.enabled and self.l3.handle(upcall, now):
            return
        self.l2.handle(upcall, now)

    def _housekeeping(self, now: float) -> None:
        self._next_housekeeping = now + HOUSEKEEPING_S
        while len(self.dp.expire()) >= 1024:
            pass
        self.port_watch.check()
        self.table_watch.check()
        self.l3.timers(now)
        self.vips.timers(now)
        if now >= self._next_refresh:
            self._next_refresh = now + self._refresh_every
            self.l2.refresh_from_flows(self.dp.flows())
            self.l2.age(now)

    # -- the control socket ---------------------------------------------------------

    def handle_command(self, command: dict):
        cmd = command.get("cmd")
        if cmd == "show":
            what = command.get("what")
            show = {"ports": self.show_ports, "fdb": self.show_fdb, "flows": self.show_flows,
                    "stats": self.show_stats, "upcalls": self.show_upcalls, "routes": self.l3.show_routes,
                    "arp": lambda: self.l3.show_arp(time.monotonic()), "vips": self.vips.show_vips,
                    "conns": lambda: self.vips.show_conns(time.monotonic()), "ha": self._show_ha,
                    "events": self.events.recent, "captures": self.captures.show}.get(what)
            if show is None:
                raise ValueError(f"show: unknown table {what!r} "
                                 f"(ports, fdb, flows, stats, upcalls, routes, arp, vips, conns, ha, events, captures)")
            return show()
        if cmd == "ha":
            if self.ha is None:
                raise ValueError("ha: this switch has no [ha] section")
            if command.get("op") != "release":
                raise ValueError(f"ha: unknown operation {command.get('op')!r} (release)")
            return self.ha.release(time.monotonic())
        if cmd == "route":
            return self._route_command(command)
        if cmd == "trace":
            # Read only: builds and follows a copy of the frame, sends nothing, changes no table or counter.
            return Tracer(self).trace(command.get("port"), command.get("frame"))
        if cmd == "capture":
            return self.captures.start(command)
        if cmd == "reload":
            return self.reload()
        if cmd == "backend":
            return self.vips.backend_command(str(command.get("vip")), str(command.get("backend")),
                                             str(command.get("change")))
        raise ValueError(f"unknown command {cmd!r}")

    def _route_command(self, command: dict):
        op, prefix = command.get("op"), command.get("prefix")
        if not self.l3.enabled:
            raise ValueError("route: this switch has no [[vlan]] interfaces to route between")
        try:
            if op == "add":
                self.l3.route_add(prefix, command.get("via"))
            elif op == "del":
                self.l3.route_del(prefix)
            else:
                raise ValueError(f"route: unknown operation {op!r} (add, del)")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"route {op}: {exc}") from None
        log.info("route %s %s%s", op, prefix, f" via {command.get('via')}" if op == "add" else "")
        return self.l3.show_routes()

    def show_ports(self) -> list[dict]:
        rows = []
        for port_no, port in sorted(self.ports.items()):
            pc = self.port_configs.get(port_no)
            if pc is None:
                continue
            s = self.port_watch.stats(port_no)
            rows.append({
                "name": pc.name, "type": pc.type, "device": pc.device, "port_no": port_no,
                "vlan": pc.vlan, "trunk": list(pc.trunk), "native_vlan": pc.native_vlan,
                "rx_packets": s["rx_packets"], "tx_packets": s["tx_packets"],
                "rx_bytes": s["rx_bytes"], "tx_bytes": s["tx_bytes"],
                "drops": s["rx_dropped"] + s["rx_errors"] + s["tx_dropped"],
                "rx_dropped": s["rx_dropped"], "rx_errors": s["rx_errors"], "tx_dropped": s["tx_dropped"],
                **self.macs.port_stats(port_no),
                **self.port_watch.show(port_no, port),
                **port.details(),
            })
        return rows

    def show_fdb(self) -> list[dict]:
        now = time.monotonic()
        self.l2.refresh_from_flows(self.dp.flows())
        rows = []
        for (vlan, mac), entry in self.macs.entries():
            rows.append({"mac": mac_str(mac), "vlan": vlan, "port": self.port_configs[entry.port_no].name,
                         "age_s": round(now - entry.last_seen, 1)})
        rows.sort(key=lambda r: (r["vlan"], r["mac"]))
        return rows

    def show_flows(self) -> list[dict]:
        now_ms = int(time.monotonic() * 1000)
        names = Tracer(self).names
        rows = []
        for f in self.dp.flows():
            rows.append({"match": FlowKey.unpack(f.key).describe(f.mask), "priority": f.priority,
                         "actions": describe_actions(f.actions), "packets": f.packets, "bytes": f.bytes,
                         "idle_ms": max(0, now_ms - f.used_ms), "idle_timeout_ms": f.idle_timeout_ms,
                         "cookie": f"0x{f.cookie:x}", "explain": explain_flow(f.key, f.mask, f.actions, names)})
        rows.sort(key=lambda r: (-r["priority"], r["match"]))
        return rows

    def show_upcalls(self) -> list[dict]:
        """The latest packets that went to the slow path, and why: the first place to look when
        traffic that should stay in the fast path does not."""
        now = time.monotonic()
        rows = []
        for seq, when, in_port, reason, key in self.recent_upcalls:
            pc = self.port_configs.get(in_port)
            rows.append({"seq": seq, "age_s": round(now - when, 3), "port": pc.name if pc else in_port,
                         "reason": UPCALL_REASONS.get(reason, str(reason)),
                         "packet": FlowKey.unpack(key).describe()})
        return rows

    def show_stats(self) -> dict:
        s = self.dp.stats()
        out = {"name": self.settings.name, "datapath": self.dp.kind, "pid": os.getpid(),
               "uptime_s": round(time.monotonic() - self.started, 1),
               "upcalls": s["upcalls"], "flows": s["flows"], "rx_packets": s["rx_packets"],
               "tx_packets": s["tx_packets"]}
        for key, value in s.items():
            out.setdefault(key, value)
        out["parse_errors_total"] = sum(s["parse_errors"].values())
        out["slow_path_holds"] = self.holds
        out["upcalls_shed"] = self.upcalls_shed
        out["mirror_target_dropped"] = self.mirror_target_dropped
        out.update(self.captures.stats())
        out.update(self.events.stats())
        out["upcalls_by_reason"] = dict(self.upcalls_by_reason)
        out["workers"] = self.workers
        if hasattr(self.dp, "worker_stats"):
            # One list per counter, a worker's value at its index: the share each worker carries.
            rows = self.dp.worker_stats()
            for key in ("rx_packets", "tx_packets", "upcalls", "emc_hits", "masked_hits", "misses"):
                out[f"worker_{key}"] = [row[key] for row in rows]
        out.update(self.l2.stats())
        out["mac_evicted_by_port"] = {pc.name: self.macs.port_evicted.get(no, 0)
                                      for no, pc in sorted(self.port_configs.items())}
        out.update(self.l3.stats())
        if self.vips.enabled:
            out.update(self.vips.stats())
        if self.ha is not None:
            out.update(self.ha.stats())
        if self.control is not None:
            out.update(self.control.stats())
        return out

    def _show_ha(self) -> dict:
        if self.ha is None:
            raise ValueError("show ha: this switch has no [ha] section")
        return self.ha.show(time.monotonic())

