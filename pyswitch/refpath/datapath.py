"""The datapath: the twin of csrc/datapath.c (docs/DATAPATH.md "Datapath" and "Python interface").

Ports 0..63, one flow table, and the batch loop: `run` takes up to BATCH frames from each port in port-number
order, parses each, looks it up, runs the flow's actions or makes a MISS upcall, and then flushes every port's
transmit queue. Upcalls of one run stay readable until the next run starts.
"""
from __future__ import annotations

import errno
import math
import select
import time

from .. import consts
from ..datapath_types import (CaptureRecord, Conn, ConnEvent, ConnTuple, RingBackend, Splice, Upcall, conn_max,
                              conn_timeouts, splice_max)
from .actions import DROP_DECAP, GSO_TYPE_MASK, Sink, execute as execute_actions
from .conntrack import ConnTable
from .ring import Rings
from .flowtable import FlowTable, now_ms as _now
from .io import AfPacketIO, MemoryIO, PortIO, TapIO
from .parse import parse_frame
from .route import DROP, FORWARD, RouteTables
from .taps import CaptureBuffer, Taps

_PORT_STAT_KEYS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_dropped", "rx_errors", "tx_dropped")
_DP_STAT_KEYS = ("rx_packets", "tx_packets", "upcalls", "upcall_dropped", "bad_port", "routed", "route_dropped",
                 "martian", "decap_errors")
_PE_NAMES = consts.PARSE_ERROR_NAMES
SERVE_WAKE_CHECK_S = 0.001                      # PS_SERVE_WAKE_CHECK_US: wake fds looked at this often under load


class Port:
    __slots__ = ("port_no", "io", "max_frame", "tx_queue", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                 "rx_errors", "receiving")

    def __init__(self, port_no: int, io: PortIO, max_frame: int):
        self.port_no = port_no
        self.io = io
        self.max_frame = max_frame
        self.tx_queue: list[tuple[bytes, bytes]] = []   # frames waiting for the end of the run
        self.rx_packets = 0
        self.rx_bytes = 0
        self.tx_packets = 0
        self.tx_bytes = 0
        self.rx_errors = 0                              # parse errors; the io counts its own
        self.receiving = True                           # False once its fd reports an error nothing clears


class PortSink(Sink):
    """The sink that connects the executor to the ports: datapath.c's dp_output, dp_upcall, dp_route, dp_lb and
    dp_drop. `in_port`, `key` and `now_ms` are the packet's (C's struct exec_ctx): run() sets them once per batch
    and per packet rather than building new callbacks for each packet."""

    __slots__ = ("dp", "ports", "stats", "taps", "in_port", "key", "now_ms")

    def __init__(self, dp: "Datapath"):
        self.dp = dp
        self.ports = dp._ports
        self.stats = dp._stats
        self.taps = dp.taps
        self.in_port = 0
        self.key = b""
        self.now_ms = 0

    def emit(self, port_no, frame, vnet):
        # FLOOD emits through here too, so a flood bit for a missing port counts bad_port like an OUTPUT.
        port = self.ports.get(port_no)
        if port is None:
            self.stats["bad_port"] += 1
        elif self.taps.watch_out >> port_no & 1:
            self.dp._send_captured(port, frame, vnet)
            for target in _bits(self.taps.mirror_out.get(port_no, 0)):      # C's tap_sent
                if target in self.ports:
                    self.dp._send_captured(self.ports[target], frame, vnet)
        else:
            port.tx_queue.append((frame, vnet))

    def upcall(self, frame, vnet, userdata):
        self.dp._upcall(self.in_port, consts.UPCALL_ACTION, userdata, self.key, vnet, frame)

    def route(self, work, v, via):
        return self._deliver(work, v, *self.dp.routes.route(work, v, self.stats, via))

    def lb(self, work, v, act):
        dp = self.dp
        return self._deliver(work, v, *dp.conns.lb(work, v, act, dp.rings, dp.routes, self.stats, self.now_ms))

    def drop(self, reason):
        if reason == DROP_DECAP:
            self.stats["decap_errors"] += 1

    def _deliver(self, work, v, verdict, what, userdata) -> bool:
        # An upcall carries the frame unchanged (route() and lb() write only when they forward) and the original
        # key.
        if verdict == FORWARD:
            self.emit(what, bytes(work), v.pack())
            return True
        if verdict != DROP:
            self.dp._upcall(self.in_port, what, userdata, self.key, v.pack(), bytes(work))
        return False


class Datapath:
    kind = "python"

    def __init__(self, max_flows: int = 65536, emc_entries: int = 8192, max_upcalls: int = 256):
        self.flow_table = FlowTable(max_flows, emc_entries)
        self.routes = RouteTables()
        self.conns = ConnTable()
        self.rings = Rings()
        self.max_upcalls = max_upcalls
        self._ports: dict[int, Port] = {}
        self._port_order: list[Port] = []
        self._rx_order: list[Port] = []            # the ports received on (C's rx_ports): all but failed fds
        self._wake_fds: set[int] = set()
        self._pollers: dict[bool, object] = {}     # _wait_readable's, by with_ports; cleared when fds change
        self._upcalls: list[Upcall] = []
        self._port_upcalls: dict[int, int] = {}     # of them, how many each input port queued
        self.hold_us = 0                            # serve(): forward on this long once upcalls wait
        self._stats = dict.fromkeys(_DP_STAT_KEYS, 0)
        self._parse_errors = [0] * consts.PE_COUNT
        self.taps = Taps()
        self._capture = CaptureBuffer()
        self._sink = PortSink(self)

    # -- ports ---------------------------------------------------------------------------------------------------

    def add_port(self, port_no: int, kind, ifindex_or_fd: int = -1, ring_frames: int = 256,
                 max_frame: int = 0) -> None:
        """Attach a port. ring_frames sizes an afpacket port's RX ring (0: RING_FRAMES_DEFAULT)."""
        if not 0 <= port_no < consts.MAX_PORTS:
            raise OSError(errno.EINVAL, f"port number {port_no} not in 0..{consts.MAX_PORTS - 1}")
        if port_no in self._ports:
            raise OSError(errno.EEXIST, f"port {port_no} is attached")
        kind = consts.PORT_KINDS.get(kind, kind)
        if kind == consts.PORT_AFPACKET:
            io = AfPacketIO(ifindex_or_fd, ring_frames, max_frame)
        elif kind == consts.PORT_TAP:
            io = TapIO(ifindex_or_fd)
        elif kind == consts.PORT_MEMORY:
            io = MemoryIO()
        elif kind == consts.PORT_AFXDP:
            # AF_XDP's rings are C's to drive; pyswitch/ports/afxdp.py opens such an interface as afpacket here.
            raise OSError(errno.EOPNOTSUPP, "the Python datapath has no AF_XDP ports")
        else:
            raise OSError(errno.EINVAL, f"unknown port kind {kind!r}")
        self._ports[port_no] = Port(port_no, io, max_frame)
        self._port_order = [self._ports[p] for p in sorted(self._ports)]
        self._rx_order = [p for p in self._port_order if p.receiving]
        self._pollers.clear()

    def del_port(self, port_no: int) -> None:
        port = self._port(port_no)
        port.io.close()
        del self._ports[port_no]
        self.taps.port_gone(port_no)
        self._port_order = [self._ports[p] for p in sorted(self._ports)]
        self._rx_order = [p for p in self._port_order if p.receiving]
        self._pollers.clear()

    def port_stats(self, port_no: int) -> dict:
        port = self._port(port_no)
        io = port.io
        io.update_stats()
        return {"rx_packets": port.rx_packets, "rx_bytes": port.rx_bytes, "tx_packets": port.tx_packets,
                "tx_bytes": port.tx_bytes, "rx_dropped": io.rx_dropped, "rx_errors": port.rx_errors + io.rx_errors,
                "tx_dropped": io.tx_dropped}

    def port_xdp_mode(self, port_no: int) -> None:
        """How an afxdp port's XDP program is attached: never, since this datapath has no afxdp ports."""
        self._port(port_no)
        return None

    def add_wake_fd(self, fd: int) -> None:
        self._wake_fds.add(fd)
        self._pollers.clear()

    def del_wake_fd(self, fd: int) -> None:
        if fd not in self._wake_fds:
            raise OSError(errno.ENOENT, f"fd {fd} is not a wake fd")
        self._wake_fds.discard(fd)
        self._pollers.clear()

    def inject(self, port_no: int, frame, vnet=bytes(consts.VNET_HDR_SIZE)) -> None:
        """Queue a frame for a memory port's receive side.

        The contract is silent on errors; like C: a frame over FRAME_MAX is EMSGSIZE, a full queue counts
        rx_dropped and raises ENOBUFS.
        """
        if len(vnet) != consts.VNET_HDR_SIZE:
            raise ValueError(f"vnet must be {consts.VNET_HDR_SIZE} bytes")
        io = self._memory_io(port_no)
        if len(frame) > consts.FRAME_MAX:
            raise OSError(errno.EMSGSIZE, f"frame of {len(frame)} bytes > {consts.FRAME_MAX}")
        if not io.inject(frame, vnet):
            raise OSError(errno.ENOBUFS, f"port {port_no}: receive queue full")

    def take(self, port_no: int) -> list[tuple[bytes, bytes]]:
        return self._memory_io(port_no).take()

    # -- the batch loop ------------------------------------------------------------------------------------------

    def poll(self, timeout_ms: int, now_ms: int = -1) -> int:
        """Wait until a port or wake fd is readable (or the timeout passes), then run once.

        When a ring or a memory port (which has no fd) holds frames the wait is skipped. Wake fds are only
        watched, never read: their owner drains them.
        """
        fds = [p.io.fileno() for p in self._rx_order if p.io.fileno() >= 0]
        fds.extend(self._wake_fds)
        if fds and not self._rx_ready():
            poller = select.poll()
            for fd in fds:
                poller.register(fd, select.POLLIN)
            try:
                poller.poll(timeout_ms)
            except InterruptedError:
                pass
        return self.run(now_ms)

    def set_hold(self, hold_us: int) -> None:
        """ps_dp_set_hold: serve() forwards on for `hold_us` once a run queued upcalls, while frames keep coming,
        before it returns them (an overloaded slow path's share of the core stays about half); 0 returns at once."""
        self.hold_us = hold_us

    def serve(self, timeout_ms: int, spin_us: int = 0) -> int:
        """Run until the slow path has something to do (ps_dp_serve): like poll, and on while frames keep coming;
        return after the first run that queued upcalls or connection events (or, with set_hold(), once the hold
        has passed or the ports fell idle), when a wake fd is readable, or once `timeout_ms` (-1: forever) has
        passed. Idle ports are looked at for `spin_us` before sleeping."""
        start = time.monotonic()
        deadline = math.inf if timeout_ms < 0 else start + timeout_ms / 1000
        last_frame, next_wake_check = start, start + SERVE_WAKE_CHECK_S
        hold_until = math.inf               # set by the first run that queued work for the slow path
        events_start = self.conns.n_events()
        total = 0
        while True:
            woken = False
            if not self._rx_ready():
                if hold_until != math.inf:
                    return total            # holding is for a port that keeps sending, not to wait
                now = time.monotonic()
                if now < last_frame + spin_us / 1e6:
                    woken = self._wait_readable(0, with_ports=True)
                else:
                    left = -1 if deadline == math.inf else max(0, math.ceil((deadline - now) * 1000))
                    woken = self._wait_readable(left, with_ports=True)
            n = self.run(keep_upcalls=hold_until != math.inf)
            total += n
            now = time.monotonic()
            if n:
                last_frame = now
            if hold_until == math.inf and (self._upcalls or self.conns.n_events() > events_start):
                hold_until = now + self.hold_us / 1e6
            if woken or now >= hold_until or now >= deadline:
                return total
            if self._capture.pressing:
                return total                # copies are dropped once the buffer is full: read them first
            if now >= next_wake_check:
                next_wake_check = now + SERVE_WAKE_CHECK_S
                if self._wait_readable(0, with_ports=False):
                    return total

    def _rx_ready(self) -> bool:
        """Whether a ring or a memory port holds frames: the kinds whose readiness is known without a system
        call."""
        return any(p.io.rx_ready() for p in self._rx_order)

    def _wait_readable(self, timeout_ms: int, with_ports: bool) -> bool:
        """Wait up to `timeout_ms` for a port (if `with_ports`) or a wake fd; return whether a wake fd is
        readable."""
        poller = self._pollers.get(with_ports)
        if poller is None:
            poller = self._pollers[with_ports] = self._new_poller(with_ports)
        if poller is False:
            if timeout_ms > 0:
                time.sleep(timeout_ms / 1000)
            return False
        try:
            ready = poller.poll(timeout_ms)
        except InterruptedError:
            return False
        wake = self._wake_fds
        for fd, events in ready:
            if events & select.POLLERR and fd not in wake:
                port = self._port_of_fd(fd)
                if not port.io.clear_error():
                    # As wait_readable: an error nothing clears (a TAP fd whose device is gone) stops the port's
                    # receiving until the slow path deletes it, instead of waking the loop for ever.
                    port.receiving = False
                    port.rx_errors += 1
                    self._rx_order = [p for p in self._port_order if p.receiving]
                    self._pollers.clear()
        return any(fd in wake for fd, _ in ready)

    def _port_of_fd(self, fd: int) -> Port:
        return next(p for p in self._port_order if p.io.fileno() == fd)

    def _new_poller(self, with_ports: bool):
        """A poll object for the ports' fds (if `with_ports`) and the wake fds, or False if there are none. serve()
        waits once per round, so the object is kept until a port or wake fd comes or goes."""
        fds = [p.io.fileno() for p in self._rx_order if p.io.fileno() >= 0] if with_ports else []
        fds.extend(self._wake_fds)
        if not fds:
            return False
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        return poller

    def run(self, now_ms: int = -1, keep_upcalls: bool = False) -> int:
        """One round over all ports; returns the number of frames taken.  The previous run's upcalls are
        discarded, unless `keep_upcalls` (ps_dp_run_more: serve() holding them)."""
        if now_ms == -1:
            now_ms = _now()
        if not keep_upcalls:
            self._upcalls = []
            self._port_upcalls = {}
        parse_errors = self._parse_errors
        lookup = self.flow_table.lookup_flow
        sink = self._sink
        sink.now_ms = now_ms
        emit = sink.emit
        n = 0
        for port in self._rx_order:
            frames = port.io.recv(consts.BATCH)
            if not frames:
                continue
            in_port = port.port_no
            max_frame = port.max_frame
            sink.in_port = in_port
            rx_bytes = 0
            if self.taps.watch_in >> in_port & 1:       # copied as they came, before any is processed
                for frame, vnet in frames:
                    self._tap_received(in_port, frame, vnet)
            for frame, vnet in frames:
                size = len(frame)
                rx_bytes += size
                error, key, _l3, _l4 = parse_frame(frame, in_port, max_frame, vnet[1] & GSO_TYPE_MASK != 0)
                if error:
                    port.rx_errors += 1
                    parse_errors[error] += 1
                    continue
                flow = lookup(key, size, now_ms)
                if flow is None:
                    self._upcall(in_port, consts.UPCALL_MISS, 0, key, vnet, frame)
                elif flow.output_port >= 0:
                    # One OUTPUT, most flows: what the executor would do, the frame leaves as it came.
                    emit(flow.output_port, frame, vnet)
                else:
                    sink.key = key
                    execute_actions(frame, vnet, in_port, flow.actions, sink)
            port.rx_packets += len(frames)
            port.rx_bytes += rx_bytes
            n += len(frames)
        self._stats["rx_packets"] += n
        for port in self._port_order:
            if port.tx_queue:
                self._flush(port)
        return n

    def _send_captured(self, port: Port, frame, vnet) -> None:
        """C's send_captured: the captures on what `port` sends see the frame, then it is queued."""
        if self.taps.watch_out >> port.port_no & 1:
            self._capture.copy(self.taps, consts.TAP_OUT, port.port_no, frame)
        port.tx_queue.append((frame, vnet))

    def _tap_received(self, in_port: int, frame, vnet) -> None:
        """C's tap_received: the captures on what `in_port` receives, then its mirror's copies."""
        self._capture.copy(self.taps, consts.TAP_IN, in_port, frame)
        for target in _bits(self.taps.mirror_in.get(in_port, 0)):
            if target in self._ports:
                self._send_captured(self._ports[target], frame, vnet)

    def upcalls(self, start: int = 0) -> list[Upcall]:
        """This run's upcalls (and those of execute() since) from number `start` on; reading does not consume
        them."""
        return self._upcalls[start:]

    def execute(self, in_port: int, frame, vnet, actions, now_ms: int = -1) -> None:
        """Apply actions to one frame from the slow path at `now_ms` (-1: the monotonic clock; connections see it)
        and transmit at once.

        Ambiguity: an UPCALL action here needs a key; it is the frame's parse key (even if parsing failed:
        then the partial key), as a run would have given it. Only a list longer than MAX_ACTIONS is refused
        (EINVAL); unknown types are skipped and outputs to ports >= 64 count bad_port, as in C.
        """
        if isinstance(in_port, bool) or not isinstance(in_port, int) or not 0 <= in_port <= 0xFFFF:
            raise ValueError(f"in_port {in_port!r} is not a 16-bit unsigned integer")
        if len(actions) > consts.MAX_ACTIONS:
            raise OSError(errno.EINVAL, f"more than {consts.MAX_ACTIONS} actions")
        if len(vnet) != consts.VNET_HDR_SIZE:
            raise ValueError(f"a vnet header is {consts.VNET_HDR_SIZE} bytes, not {len(vnet)}")
        frame = bytes(frame)
        sink = self._sink
        sink.in_port = in_port
        sink.key = parse_frame(frame, in_port, 0, False)[1]
        sink.now_ms = _now() if now_ms == -1 else now_ms
        execute_actions(frame, bytes(vnet), in_port, actions, sink)
        for port in self._port_order:
            if port.tx_queue:
                self._flush(port)

    # -- flows ---------------------------------------------------------------------------------------------------

    def flow_put(self, key, mask, priority, actions, idle_timeout_ms=0, cookie=0, now_ms=-1) -> int:
        return self.flow_table.put(key, mask, priority, actions, idle_timeout_ms, cookie, now_ms)

    def flow_del(self, key, mask, priority) -> bool:
        return self.flow_table.delete(key, mask, priority)

    def flow_del_loose(self, key, mask) -> int:
        return self.flow_table.delete_loose(key, mask)

    def flow_flush(self) -> None:
        self.flow_table.flush()

    def flow_lookup(self, key, size, now_ms=-1):
        return self.flow_table.lookup(key, size, now_ms)

    def flows(self):
        return self.flow_table.dump()

    def expire(self, now_ms: int = -1, max_flows: int = 1024) -> list[int]:
        return self.flow_table.expire(now_ms, max_flows)

    # -- routing tables (docs/DATAPATH.md "Routing") -------------------------------------------------------------

    def route_add(self, prefix, plen, nh_id) -> None:
        self.routes.lpm.add(prefix, plen, nh_id)

    def route_del(self, prefix, plen) -> bool:
        return self.routes.lpm.delete(prefix, plen)

    def route_lookup(self, addr) -> int:
        return self.routes.lpm.lookup(addr)

    def nexthop_set(self, nh_id, kind, vlan, gateway=b"", src_mac=b"") -> None:
        self.routes.nexthop_set(nh_id, kind, vlan, gateway, src_mac)

    def nexthop_del(self, nh_id) -> bool:
        return self.routes.nexthop_del(nh_id)

    def neigh_set(self, vlan, addr, mac, port, out_tci=0) -> None:
        self.routes.neigh_set(vlan, addr, mac, port, out_tci)

    def neigh_del(self, vlan, addr) -> bool:
        return self.routes.neigh_del(vlan, addr)

    def neigh_get(self, vlan, addr):
        """(mac, port, out_tci), or None if the neighbor is unknown."""
        return self.routes.neigh_get(vlan, addr)

    # -- connections (docs/DATAPATH.md "Connection table") -------------------------------------------------------

    # -- taps: mirrors and captures (taps.py) ---------------------------------------------------------------

    def mirror_set(self, port_no: int, to_on_in=(), to_on_out=()) -> None:
        self.taps.mirror_set(port_no, to_on_in, to_on_out)

    def capture_add(self, slot: int, port_no: int, directions: int, snaplen: int = consts.CAPTURE_MAX_SNAPLEN,
                    program=()) -> None:
        self.taps.capture_add(slot, port_no, directions, snaplen, program)
        self._capture.reset_slot(slot)

    def capture_del(self, slot: int) -> bool:
        return self.taps.capture_del(slot)

    def capture_take(self) -> list[CaptureRecord]:
        return self._capture.take()

    def capture_counts(self, slot: int) -> tuple[int, int]:
        if not 0 <= slot < consts.MAX_CAPTURES:
            raise ValueError(f"capture slot {slot} is not 0..{consts.MAX_CAPTURES - 1}")
        return self._capture.captured[slot], self._capture.dropped[slot]

    def conn_config(self, max_conns, timeouts_ms=None) -> None:
        """The table's bound (None: keep it) and idle timeouts ({state: ms}; states left out keep theirs)."""
        max_conns = self.conns.max_conns if max_conns is None else conn_max(max_conns)
        timeouts = None
        if timeouts_ms is not None:
            timeouts = dict(self.conns.timeouts_ms)
            timeouts.update(conn_timeouts(timeouts_ms))
        self.conns.config(max_conns, timeouts)

    def conn_add(self, conn: Conn, now_ms=None) -> None:
        self.conns.add(conn, _now() if now_ms in (None, -1) else now_ms)

    def conn_del(self, client: ConnTuple) -> bool:
        return self.conns.delete(client)

    def conn_get(self, tuple_: ConnTuple, by_reply=False) -> Conn | None:
        return self.conns.get(tuple_, by_reply)

    def conn_dump(self) -> list[Conn]:
        return self.conns.dump()

    def conn_expire(self, now_ms=None) -> int:
        return self.conns.expire(_now() if now_ms in (None, -1) else now_ms)

    def conn_events(self) -> list[ConnEvent]:
        return self.conns.events()

    def conn_stats(self) -> dict:
        return self.conns.stats()

    # -- hold and splice (docs/DATAPATH.md "Hold and splice") ----------------------------------------------------

    def conn_hold(self, client: ConnTuple, hold: bool) -> None:
        """Sets or clears CONN_F_HOLD of a nat/fullnat TCP connection: OSError ENOENT, EINVAL."""
        self.conns.hold(client, hold)

    def conn_splice(self, client: ConnTuple, to_backend: Splice, to_client: Splice) -> None:
        """Joins the halves of a nat/fullnat TCP connection with these deltas and clears its HOLD: OSError ENOENT,
        EINVAL (not nat/fullnat TCP, or a splice that sets an address or port), ENOSPC (the splice table is full)."""
        self.conns.splice(client, to_backend, to_client)

    def conn_get_splice(self, client: ConnTuple) -> tuple[Splice, Splice] | None:
        """(to_backend, to_client) of a spliced connection, None if it is not spliced or there is none."""
        return self.conns.get_splice(client)

    def splice_config(self, max_splices: int) -> None:
        """The splice table's bound: OSError EINVAL (not 1..CT_MAX_CONNS), EBUSY (below the splices in use)."""
        self.conns.splice_config(splice_max(max_splices))

    # -- Maglev rings (docs/DATAPATH.md "Maglev rings") ----------------------------------------------------------

    def ring_config(self, vip_id: int, size: int) -> None:
        self.rings.config(vip_id, size)

    def ring_backend(self, vip_id: int, index: int, backend: RingBackend) -> None:
        self.rings.backend_set(vip_id, index, backend)

    def ring_write(self, vip_id: int, changes) -> None:
        self.rings.write(vip_id, changes)

    def ring_read(self, vip_id: int) -> list[int] | None:
        return self.rings.read(vip_id)

    def ring_stats(self) -> dict:
        return self.rings.stats()

    # -- VIP guards (docs/DATAPATH.md "VIP guards") -------------------------------------------------------------

    def vip_guard(self, vip_id: int, max_embryonic: int = 0, upcall_rate: int = 0, upcall_burst: int = 0,
                  upcall_threshold: int = 0) -> None:
        self.conns.guards.set(vip_id, max_embryonic, upcall_rate, upcall_burst, upcall_threshold)

    def vip_guard_stats(self, vip_id: int) -> dict:
        return self.conns.guards.stats(vip_id)

    def stats(self) -> dict:
        stats = dict(self._stats)
        stats["parse_errors"] = dict(zip(_PE_NAMES[1:], self._parse_errors[1:]))
        stats.update(self.flow_table.stats())
        return stats

    def close(self) -> None:
        for port in self._port_order:
            port.io.close()
        self._ports.clear()
        self._port_order = []
        self._rx_order = []
        self._pollers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals -----------------------------------------------------------------------------------------------

    def _port(self, port_no: int) -> Port:
        port = self._ports.get(port_no)
        if port is None:
            raise OSError(errno.ENOENT, f"port {port_no} is not attached")
        return port

    def _memory_io(self, port_no: int) -> MemoryIO:
        io = self._port(port_no).io
        if not isinstance(io, MemoryIO):
            raise OSError(errno.EINVAL, f"port {port_no} is not a memory port")
        return io

    def _upcall(self, in_port, reason, userdata, key, vnet, data) -> None:
        # One input port fills at most 1/UPCALL_PORT_SHARES of the queue (never less than a batch), so that its
        # flood of misses leaves room for the other ports' (frames the switch originates have no share).
        share = max(consts.BATCH, self.max_upcalls // consts.UPCALL_PORT_SHARES)
        from_port = in_port < consts.MAX_PORTS
        if len(self._upcalls) >= self.max_upcalls or (from_port and self._port_upcalls.get(in_port, 0) >= share):
            self._stats["upcall_dropped"] += 1
            return
        if from_port:
            self._port_upcalls[in_port] = self._port_upcalls.get(in_port, 0) + 1
        self._upcalls.append(Upcall(in_port, reason, userdata, key, bytes(vnet), bytes(data)))
        self._stats["upcalls"] += 1

    def _flush(self, port: Port) -> None:
        sent, size = port.io.transmit(port.tx_queue)
        port.tx_queue.clear()
        port.tx_packets += sent
        port.tx_bytes += size
        self._stats["tx_packets"] += sent


def _bits(bitmap: int):
    """The port numbers in a bitmap, lowest first (C's ctz loop)."""
    while bitmap:
        low = bitmap & -bitmap
        yield low.bit_length() - 1
        bitmap ^= low
