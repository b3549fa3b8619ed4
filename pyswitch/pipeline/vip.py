"""The load-balancing stage: virtual IPs in front of pools of backends.

The stage decides; the datapath's connection table carries.  At start it writes, on every routed port,
flows above the L3 stage's (priority 300):

    client -> VIP:port          LB(vip id)      known connection: rewrite per mode, route; else upcall
    backend:port -> anyone      LB_REPLY        (nat, fullnat) a connection's reply: rewritten back
    ICMP from a backend         upcall          (nat, fullnat) errors are translated, the rest routed

and makes each VIP one of the switch's own addresses (a /32 to the LOCAL next hop; ARP answered when the
VIP is inside a VLAN's subnet), so ping to a VIP is answered and a port nobody serves is refused.

A connection's first packet comes up as CONN_MISS.  The stage asks the service for a backend (scheduler,
persistence), installs the connection (a client and a reply tuple, see docs/DATAPATH.md "Connection
table") and hands the packet back to the LB action, which now finds it.  The datapath reports connections
that leave the table (expired, evicted) and SYN -> SYN/ACK times as events; the stage keeps each
backend's active_conns and response time from them.

A maglev VIP without persistence, in any mode but fullnat (whose source ports only the slow path
allocates), is scheduled in the datapath instead: the stage writes the service's Maglev table into a ring
there (docs/DATAPATH.md "Maglev rings") and, whenever a backend's state or weight changes, only the slots
that changed.  Its first packets no longer come up; the datapath adds the connection and reports it with a
CE_NEW event (TCP: once past its handshake, so a SYN flood stays in C).  What the ring cannot decide (an
empty ring, a TCP packet that opens nothing) still comes up.  Each VIP's flood limits (max_embryonic,
flood_threshold, upcall_rate) are written to the datapath's VIP guards at start (_install_guard).
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import struct
import time

from .. import actions as act
from .. import consts
from ..datapath_types import Conn, ConnTuple, RingBackend
from ..events import EventLog
from ..flowkey import FlowKey
from ..lb import maglev
from ..lb.health import HealthChecker, HealthTarget
from ..lb.service import VirtualService
from ..lb.snat import PortsExhausted, SnatPorts
from ..l7.engine import L7Engine
from ..l7.service import L7Service, pool_config
from ..l7.session import VIP_WSCALE
from ..refpath.csum import csum
from . import packets as pk
from .vlan import ingress_tci

log = logging.getLogger("pyswitch.lb")

VIP_PRIORITY = 300              # above the L3 stage's ROUTE flows (200)
COOKIE_VIP = 3 << 60
USERDATA_BACKEND_ICMP = 2       # UPCALL userdata: ICMP from a backend (after l3.USERDATA_ARP = 1)
IP_PROTO = {"tcp": 6, "udp": 17}
MODES = {"nat": consts.CONN_NAT, "fullnat": consts.CONN_FULLNAT, "dsr": consts.CONN_DSR}
STATE_NAMES = {consts.CS_SYN: "syn", consts.CS_ESTABLISHED: "established", consts.CS_FIN_WAIT: "fin_wait",
               consts.CS_CLOSE: "close", consts.CS_UDP: "udp"}
CLOSING = (consts.CS_FIN_WAIT, consts.CS_CLOSE)     # connections that no longer count as active (IPVS)
ICMP_ERRORS = (3, 4, 11, 12)    # unreachable, source quench, time exceeded, parameter problem
MAX_SHOWN_CONNS = 10000         # `show conns` lists at most this many
UPCALL_BURST_S = 0.1            # a VIP's upcall bucket holds this many seconds of its upcall_rate (at least 10)

MATCH_VIP = FlowKey.mask_of("in_port", "vlan_tci", "eth_dst", "eth_type", "nw_proto", "nw_dst", "tp_dst",
                            vlan_vid_only=True)
MATCH_REPLY = FlowKey.mask_of("in_port", "vlan_tci", "eth_dst", "eth_type", "nw_proto", "nw_src", "tp_src",
                              vlan_vid_only=True)
MATCH_BACKEND_ICMP = FlowKey.mask_of("in_port", "vlan_tci", "eth_dst", "eth_type", "nw_proto", "nw_src",
                                     vlan_vid_only=True)


def _now_ms(now: float) -> int:
    return int(now * 1000)


def _endpoint(addr: bytes, port: int) -> str:
    return f"{ipaddress.IPv4Address(addr)}:{port}"


class VipStage:
    def __init__(self, config, ports: dict, datapath, l3_stage):
        self.ports = ports
        self.dp = datapath
        self.l3 = l3_stage
        self.services = [VirtualService(i + 1, v) for i, v in enumerate(config.vips)]
        self._next_id = len(self.services) + 1     # a VIP added live gets a new id, never a removed one's
        self.l7 = L7Engine(datapath, l3_stage, _parser_of(datapath), lambda: int(time.monotonic() * 1000))
        for vip in [s for s in self.services if s.config.l7 is not None]:
            self.services.extend(self._make_l7(vip))
        self.by_id = {s.id: s for s in self.services}
        self.by_name = {s.name: s for s in self.services}
        self.by_address: dict[bytes, list[VirtualService]] = {}
        for s in self.services:
            self.by_address.setdefault(s.address, []).append(s)
        self.snat = SnatPorts()
        self._snat_of: dict[ConnTuple, tuple] = {}     # fullnat client tuple -> (proto, snat, backend, bport, port)
        self.counters = {"conn_new": 0, "conn_refused": 0, "conn_gone": 0, "rst_sent": 0,
                         "port_unreachable_sent": 0, "unserved": 0, "no_conn": 0, "icmp_translated": 0,
                         "icmp_untranslated": 0, "snat_exhausted": 0, "sync_refused": 0}
        s = config.switch
        self._timeouts = {consts.CS_SYN: s.conn_syn_s, consts.CS_ESTABLISHED: s.conn_established_s,
                          consts.CS_FIN_WAIT: s.conn_fin_wait_s, consts.CS_CLOSE: s.conn_close_s,
                          consts.CS_UDP: s.conn_udp_s}
        self._max_conns = s.max_conns
        self.health = HealthChecker(self.l3.send_packet, self._health_changed, self._health_rtt)
        self._health_up: dict[tuple[int, int], bool] = {}     # (vip id, backend index) -> last verdict
        self._drained: set[tuple[int, int]] = set()            # set to drain by the operator
        self._removed: set[tuple[int, int]] = set()            # left the config (reload): drained, not probed
        self._installed = False                                # the stage's one-time part is in the datapath
        self._rings: dict[int, list[int]] = {}                 # vip id -> its ring as last written to the datapath
        self.serving = True         # False on an HA standby: it holds the VIPs' state but probes nothing
        self.conn_listeners: list = []  # (conn: Conn | None, gone: ConnTuple | None): an HA master's sync
        self.affinity_listeners: list = []  # (service, client IP, backend index, seconds left): likewise
        self.event_log = EventLog()         # the switch's own replaces it (pyswitch/switch.py)

    def _make_l7(self, vip: VirtualService) -> list[VirtualService]:
        """An L7 VIP's pools, each a service of its own (pyswitch/l7/service.py), given to the engine."""
        pools = {}
        for pool in vip.config.l7.pools:
            service = VirtualService(self._next_id, pool_config(vip.config, pool))
            service.l7_pool = True
            self._next_id += 1
            pools[pool.name] = service
        self.l7.add_service(L7Service(vip, pools, VIP_WSCALE))
        return list(pools.values())

    @property
    def enabled(self) -> bool:
        return bool(self.services)

    # -- writing the flows ------------------------------------------------------------------------

    def install(self) -> None:
        if not self.services:
            return
        self._install_once()
        for s in self.services:
            self._install_service(s)

    def _install_once(self) -> None:
        """What every VIP needs, written with the first one (at start, or when a reload adds the first)."""
        self._installed = True
        self.dp.conn_config(self._max_conns, {k: int(v * 1000) for k, v in self._timeouts.items()})
        self.l3.local_handlers.append(self.health.handle)
        self.l3.local_handlers.append(self.local)

    def _install_service(self, service: VirtualService) -> None:
        self._install_guard(service)
        if service.address not in self.l3.local_addresses:
            self.l3.add_local_address(service.address)
        for port_no, port, svi in self._routed_ports():
            self._install_port_flows(port_no, port, svi, [service])
        if schedules_in_datapath(service):
            self.dp.ring_config(service.id, service.scheduler.table_size)
            self._rings[service.id] = [maglev.EMPTY] * service.scheduler.table_size
            self._write_ring(service)

    def _install_guard(self, service: VirtualService) -> None:
        """The VIP's flood limits (docs/RELIABILITY.md, "SYN floods"): at most max_embryonic half-open connections,
        a new one taking the place of the VIP's oldest, and, while it holds flood_threshold of them or more (a
        flood: real clients finish their handshakes in a round trip), at most upcall_rate new-connection upcalls
        a second, so that a SYN flood at one VIP neither fills the table nor starves the slow path for the
        others, and busy VIPs without a flood are never throttled."""
        if service.id >= consts.VIP_GUARD_MAX_VIPS:
            log.warning("vip %s: id %d has no flood guard (ids below %d do)", service.name, service.id,
                        consts.VIP_GUARD_MAX_VIPS)
            return
        rate = service.config.upcall_rate
        burst = max(10, int(rate * UPCALL_BURST_S)) if rate else 0
        self.dp.vip_guard(service.id, service.config.max_embryonic, rate, burst, service.config.flood_threshold)

    def guard_stats(self, service: VirtualService) -> dict:
        """The VIP's embryonic connections now and what its guard evicted, refused and limited."""
        if service.id >= consts.VIP_GUARD_MAX_VIPS:
            return {}
        return self.dp.vip_guard_stats(service.id)

    def _write_ring(self, service: VirtualService) -> None:
        """Brings the datapath's ring of `service` up to its Maglev table: every backend's entry first (a
        reused ring index may name another backend now), then only the slots that differ."""
        written = self._rings.get(service.id)
        if written is None:
            return
        table = service.scheduler
        for index, b in enumerate(service.backends):
            address = b.packed
            if service.config.mode == "tunnel":
                mode = consts.CONN_GRE if service.config.encap == "gre" else consts.CONN_IPIP
                tunnel_src = self.l3.source_address_toward(address)
            else:
                mode, tunnel_src = MODES[service.config.mode], bytes(4)
            self.dp.ring_backend(service.id, table.ids[b.key],
                                 RingBackend(address, b.port, mode, index + 1, tunnel_src))
        changes = maglev.diff(written, table.ring)
        if changes:
            self.dp.ring_write(service.id, changes)
            self._rings[service.id] = list(table.ring)
            service.counters["ring_slots_written"] += len(changes)

    def _backends_changed(self, service: VirtualService) -> None:
        service.changed()
        self._write_ring(service)

    def start_health_checks(self, now: float) -> None:
        for s in self.services:
            for index in range(len(s.backends)):
                self._watch_backend(s, index, now)

    def _watch_backend(self, service: VirtualService, index: int, now: float) -> None:
        self._health_up[(service.id, index)] = True
        if service.config.health.type == "none":
            return
        b = service.backends[index]
        address = b.packed
        self.health.add(HealthTarget(key=(service.id, index), address=address, port=b.port,
                                     source=self.l3.source_address_toward(address),
                                     spec=service.config.health), now)

    def _install_port_flows(self, port_no: int, port, svi, services) -> None:
        tci = ingress_tci(port, svi.vlan)
        base = dict(in_port=port_no, vlan_tci=tci, eth_dst=svi.mac, eth_type=consts.ETH_TYPE_IPV4)
        for s in services:
            if not s.l7_pool:       # a pool's clients come through its L7 VIP's flow
                key = FlowKey(nw_proto=s.proto, nw_dst=s.address + bytes(12), tp_dst=s.port, **base)
                self.dp.flow_put(key.pack(), MATCH_VIP, VIP_PRIORITY, [act.lb(s.id)], cookie=COOKIE_VIP | s.id)
            for b in s.backends:
                self._install_backend_flows(s, b, base)

    def _install_backend_flows(self, s: VirtualService, b, base: dict) -> None:
        """nat and fullnat: a backend's replies are rewritten back, its ICMP errors come up to be translated."""
        if s.config.mode not in ("nat", "fullnat"):
            return
        addr = b.packed + bytes(12)
        reply = FlowKey(nw_proto=s.proto, nw_src=addr, tp_src=b.port, **base)
        self.dp.flow_put(reply.pack(), MATCH_REPLY, VIP_PRIORITY, [act.lb_reply()], cookie=COOKIE_VIP | s.id)
        icmp = FlowKey(nw_proto=pk.IP_PROTO_ICMP, nw_src=addr, **base)
        self.dp.flow_put(icmp.pack(), MATCH_BACKEND_ICMP, VIP_PRIORITY, [act.upcall(USERDATA_BACKEND_ICMP)],
                         cookie=COOKIE_VIP | s.id)

    def _routed_ports(self):
        """(port_no, port, svi) of every port that carries a routed VLAN, with the flow fields they share."""
        for port_no, port in self.ports.items():
            for svi in self.l3.svis.values():
                if port.carries(svi.vlan):
                    yield port_no, port, svi

    # -- upcalls ----------------------------------------------------------------------------------

    def handle(self, upcall, now: float) -> bool:
        if upcall.reason == consts.UPCALL_CONN_MISS:
            if upcall.userdata in self.l7.services:
                self.l7.handle(upcall, now)
            else:
                self._new_connection(upcall, now)
            return True
        if upcall.reason == consts.UPCALL_L7:
            self.l7.handle(upcall, now)
            return True
        if upcall.reason == consts.UPCALL_NO_NEIGH:
            return self._no_neighbor(upcall, now)
        if upcall.reason == consts.UPCALL_ACTION and upcall.userdata == USERDATA_BACKEND_ICMP:
            eth_type, ip_packet = pk.strip_ethernet(upcall.data)
            if not (eth_type == consts.ETH_TYPE_IPV4 and self._translate_icmp_error(ip_packet)):
                self.dp.execute(upcall.in_port, upcall.data, upcall.vnet, [act.Action(consts.ACT_ROUTE)])
            return True
        return False

    def _no_neighbor(self, upcall, now: float) -> bool:
        """A packet of a connection waits for ARP: the datapath routed it toward the address it will have
        after the rewrite (the backend; the client for a full-NAT reply), so that is the one to resolve,
        and the packet goes again through the same LB action."""
        key = FlowKey.unpack(upcall.key)
        if key.nw_proto not in (pk.IP_PROTO_TCP, pk.IP_PROTO_UDP) or key.eth_type != consts.ETH_TYPE_IPV4:
            return False
        packet = ConnTuple(key.nw_proto, key.nw_src[:4], key.nw_dst[:4], key.tp_src, key.tp_dst)
        conn = self.dp.conn_get(packet) if packet.dst in self.by_address else None
        if conn is not None:
            toward = conn.reply.src if conn.reply is not None else conn.backend
            self.l3.resolve(upcall, now, toward, [act.lb(conn.vip_id)])
            return True
        conn = self.dp.conn_get(packet, by_reply=True)
        if conn is None:
            return False
        self.l3.resolve(upcall, now, conn.client.src, [act.lb_reply()])
        return True

    def _new_connection(self, upcall, now: float) -> None:
        service = self.by_id.get(upcall.userdata)
        key = FlowKey.unpack(upcall.key)
        eth_type, ip_packet = pk.strip_ethernet(upcall.data)
        if service is None or eth_type != consts.ETH_TYPE_IPV4 or key.nw_proto != service.proto \
                or key.nw_frag & consts.FRAG_LATER:
            self.counters["no_conn"] += 1
            return
        client = ConnTuple(key.nw_proto, key.nw_src[:4], key.nw_dst[:4], key.tp_src, key.tp_dst)
        if service.proto == pk.IP_PROTO_TCP and not self._opens_connection(key.tcp_flags):
            # Not the start of a connection we know: a connection that expired, was reset or belonged to
            # another instance.  Like a host with no such socket, answer with a reset (never to a reset).
            self.counters["no_conn"] += 1
            if not key.tcp_flags & pk.TCP_RST:
                self._refuse(ip_packet)
            return
        backend = service.choose(client.src, now)
        if backend is None:
            self._refuse(ip_packet)
            return
        if service.config.persistence_s > 0:
            for listener in self.affinity_listeners:
                listener(service, client.src, service.backend_id(backend) - 1, service.config.persistence_s)
        conn = self._connection(service, backend, client)
        if conn is None:
            return
        try:
            self.dp.conn_add(conn, _now_ms(now))
        except OSError as exc:
            if exc.errno != errno.EEXIST:       # EEXIST: two packets of one new connection in one batch
                self.counters["conn_refused"] += 1
                self._release_snat(client)
                return
        else:
            backend.conn_opened()
            service.counters["connections"] += 1
            self.counters["conn_new"] += 1
            self._tell(conn, None)
        self.dp.execute(upcall.in_port, upcall.data, upcall.vnet, service.lb_actions)

    def _tell(self, conn: Conn | None, gone: ConnTuple | None) -> None:
        for listener in self.conn_listeners:
            listener(conn, gone)

    def _tell_current(self, client: ConnTuple) -> None:
        if self.conn_listeners:
            conn = self.dp.conn_get(client)
            if conn is not None:
                self._tell(conn, None)

    @staticmethod
    def _opens_connection(flags: int) -> bool:
        return bool(flags & pk.TCP_SYN) and not flags & (pk.TCP_ACK | pk.TCP_RST | pk.TCP_FIN)

    def _connection(self, service: VirtualService, backend, client: ConnTuple) -> Conn | None:
        mode = service.config.mode
        address = backend.packed
        backend_id = service.backend_id(backend)
        common = dict(client=client, vip_id=service.id, backend_id=backend_id)
        if mode == "nat":
            reply = ConnTuple(client.proto, address, client.src, backend.port, client.sport)
            return Conn(reply=reply, backend=address, tunnel_src=bytes(4), mode=consts.CONN_NAT,
                        state=self._initial_state(client), **common)
        if mode == "fullnat":
            snat = self.l3.source_address_toward(address)
            try:
                port = self.snat.allocate(client.proto, snat, address, backend.port)
            except PortsExhausted:
                self.counters["snat_exhausted"] += 1
                return None
            self._snat_of[client] = (client.proto, snat, address, backend.port, port)
            reply = ConnTuple(client.proto, address, snat, backend.port, port)
            return Conn(reply=reply, backend=address, tunnel_src=bytes(4), mode=consts.CONN_FULLNAT,
                        state=self._initial_state(client), **common)
        if mode == "dsr":
            return Conn(reply=None, backend=address, tunnel_src=bytes(4), mode=consts.CONN_DSR,
                        state=self._initial_state(client), **common)
        encap = consts.CONN_GRE if service.config.encap == "gre" else consts.CONN_IPIP
        return Conn(reply=None, backend=address, tunnel_src=self.l3.source_address_toward(address),
                    mode=encap, state=self._initial_state(client), **common)

    @staticmethod
    def _initial_state(client: ConnTuple) -> int:
        return consts.CS_SYN if client.proto == pk.IP_PROTO_TCP else consts.CS_UDP

    def _release_snat(self, client: ConnTuple) -> None:
        held = self._snat_of.pop(client, None)
        if held is not None:
            self.snat.release(*held)

    # -- answers the switch gives in a VIP's name -------------------------------------------------

    def _refuse(self, ip_packet: bytes) -> None:
        """A TCP reset (RFC 9293 3.10.7.1) or an ICMP port unreachable for a packet nobody will serve."""
        ihl, proto, src, dst = pk.ip_header_fields(ip_packet)
        if proto == pk.IP_PROTO_TCP:
            sport, dport, seq, ack, flags, _window, payload = pk.tcp_fields(ip_packet[ihl:])
            if flags & pk.TCP_RST:
                return
            if flags & pk.TCP_ACK:
                segment = pk.tcp(dst, src, dport, sport, ack, 0, pk.TCP_RST, window=0)
            else:
                length = len(payload) + (1 if flags & pk.TCP_SYN else 0) + (1 if flags & pk.TCP_FIN else 0)
                segment = pk.tcp(dst, src, dport, sport, 0, (seq + length) & 0xFFFFFFFF,
                                 pk.TCP_RST | pk.TCP_ACK, window=0)
            self.l3.send_ip(src, pk.IP_PROTO_TCP, segment, source=dst)
            self.counters["rst_sent"] += 1
        elif proto == pk.IP_PROTO_UDP:
            self.l3.send_ip(src, pk.IP_PROTO_ICMP, pk.icmp_error(pk.ICMP_UNREACHABLE, 3, ip_packet), source=dst)
            self.counters["port_unreachable_sent"] += 1

    def local(self, ip_packet: bytes, now: float) -> bool:
        """A packet for one of the switch's addresses that the L3 stage offers first: TCP/UDP to a VIP
        port nobody serves is refused; ICMP errors about a connection are translated."""
        ihl, proto, src, dst = pk.ip_header_fields(ip_packet)
        if proto == pk.IP_PROTO_ICMP:
            return self._translate_icmp_error(ip_packet)
        if dst not in self.by_address or proto not in (pk.IP_PROTO_TCP, pk.IP_PROTO_UDP):
            return False
        self.counters["unserved"] += 1
        self._refuse(ip_packet)
        return True

    def _translate_icmp_error(self, ip_packet: bytes) -> bool:
        """An ICMP error quoting a packet of a connection, sent to the side that did not see that packet's
        addresses: the quote and the outer addresses are rewritten to what that side knows."""
        ihl, _proto, src, dst = pk.ip_header_fields(ip_packet)
        icmp = ip_packet[ihl:]
        if len(icmp) < 8 + 20 + 8 or icmp[0] not in ICMP_ERRORS:
            return False
        quoted = icmp[8:]
        qihl, qproto, qsrc, qdst = pk.ip_header_fields(quoted)
        if qproto not in (pk.IP_PROTO_TCP, pk.IP_PROTO_UDP) or len(quoted) < qihl + 4:
            return False
        qsport, qdport = struct.unpack_from("!HH", quoted, qihl)
        # The quote is a packet toward the error's sender's side; the connection is found by its reverse.
        reverse = ConnTuple(qproto, qdst, qsrc, qdport, qsport)
        conn = self.dp.conn_get(reverse, by_reply=True)
        if conn is not None:        # about a packet toward the backend: tell the client
            c = conn.client
            new_quote = _rewrite_quote(quoted, c.src, c.dst, c.sport, c.dport)
            outer_src, outer_dst = c.dst, c.src
        else:
            conn = self.dp.conn_get(reverse, by_reply=False)
            if conn is None or conn.reply is None:
                self.counters["icmp_untranslated"] += 1
                return False
            r = conn.reply          # about a reply toward the client: tell the backend
            new_quote = _rewrite_quote(quoted, r.dst, r.src, r.dport, r.sport)
            outer_src = r.dst if conn.mode == consts.CONN_FULLNAT else src
            outer_dst = r.src
        message = pk.icmp(icmp[0], icmp[1], icmp[4:8] + new_quote)
        self.l3.send_ip(outer_dst, pk.IP_PROTO_ICMP, message, source=outer_src)
        self.counters["icmp_translated"] += 1
        return True

    # -- timers and events ------------------------------------------------------------------------

    def events(self) -> None:
        """Connections that left the table and SYN -> SYN/ACK times, as the datapath reports them."""
        for event in self.dp.conn_events():
            service = self.by_id.get(event.vip_id)
            if service is None or not 1 <= event.backend_id <= len(service.backends):
                continue
            backend = service.backends[event.backend_id - 1]
            if event.kind == consts.CE_GONE:
                if event.state not in CLOSING:
                    backend.conn_closed()
                if service.l7_pool:
                    self.l7.conn_gone(event.client)
                self._release_snat(event.client)
                self.counters["conn_gone"] += 1
                self._tell(None, event.client)
            elif event.kind == consts.CE_STATE:
                if event.state in CLOSING:
                    backend.conn_closed()
                else:
                    backend.conn_reopened()
                self._tell_current(event.client)
            elif event.kind == consts.CE_RTT:
                backend.observe_rtt(event.rtt_us / 1000.0, "conn")
            elif event.kind == consts.CE_NEW:    # scheduled by the datapath's ring
                backend.conn_opened()
                service.counters["connections"] += 1
                self.counters["conn_new"] += 1
                self._tell_current(event.client)

    def timers(self, now: float) -> None:
        if not self.services:
            return
        if self.serving:
            self.health.timers(now)
        self.l7.timers(now)
        self.dp.conn_expire(_now_ms(now))
        self.events()
        for s in self.services:
            s.expire_affinity(now)

    # -- backend states: health checks and the operator ------------------------------------------

    def _health_changed(self, key: tuple[int, int], up: bool, reason: str) -> None:
        service = self.by_id[key[0]]
        backend = service.backends[key[1]]
        self._health_up[key] = up
        self._apply_state(service, key[1], f"health check: {reason}")
        if not up and service.config.health.on_down == "reset":
            removed = self.reset_backend_connections(service, backend)
            log.warning("vip %s: reset %d connections of %s:%d", service.name, removed, backend.address,
                        backend.port)

    def _health_rtt(self, key: tuple[int, int], ms: float) -> None:
        self.by_id[key[0]].backends[key[1]].observe_rtt(ms, "probe")

    def _apply_state(self, service: VirtualService, index: int, reason: str) -> None:
        key = (service.id, index)
        backend = service.backends[index]
        if key in self._removed:
            state = "removed"
        elif key in self._drained:
            state = "drain"
        else:
            state = "up" if self._health_up.get(key, True) else "down"
        if state != backend.state:
            self.event_log.emit(f"backend_{state}", vip=service.name,
                                backend=f"{backend.address}:{backend.port}", previous=backend.state, reason=reason)
            backend.state = state
            if state != "up":
                service.forget_backend(backend)
            self._backends_changed(service)

    def backend_command(self, vip: str, endpoint: str, change: str) -> dict:
        """`pyswitch backend VIP ADDRESS:PORT up|down|drain|weight=N`: new connections follow the change at
        once; connections already open keep their backend."""
        service = self.by_name.get(vip)
        if service is None:
            raise ValueError(f"backend: no VIP named {vip!r} (have {', '.join(self.by_name) or 'none'})")
        address, _, port_text = endpoint.rpartition(":")
        backend = service.backend(address, int(port_text)) if port_text.isdigit() else None
        if backend is None:
            raise ValueError(f"backend: VIP {vip} has no backend {endpoint!r} "
                             f"(has {', '.join(f'{b.address}:{b.port}' for b in service.backends)})")
        index = service.backends.index(backend)
        key = (service.id, index)
        if change == "drain":
            self._drained.add(key)
        elif change == "up":
            self._drained.discard(key)
            self._health_up[key] = True
        elif change == "down":
            self._drained.discard(key)
            self._health_up[key] = False
        elif change.startswith("weight="):
            text = change[len("weight="):]
            if not text.isdigit() or int(text) > 65535:
                raise ValueError(f"backend: weight must be an integer from 0 to 65535, got {text!r}")
            backend.weight = int(text)
            self._backends_changed(service)
        else:
            raise ValueError(f"backend: unknown change {change!r} (up, down, drain, weight=N)")
        self._apply_state(service, index, f"operator: {change}")
        log.info("vip %s: backend %s:%d %s", service.name, backend.address, backend.port, change)
        return service.show()

    # -- operator changes -------------------------------------------------------------------------

    def reset_backend_connections(self, service: VirtualService, backend) -> int:
        """Removes a backend's connections (on_down = "reset").  The client's next packet finds none and is
        answered with a RST that carries the sequence number the client expects; a RST sent now could
        not (the datapath does not follow sequence numbers), and Linux ignores one out of window."""
        backend_id = service.backends.index(backend) + 1
        removed = 0
        for conn in self.dp.conn_dump():
            if conn.vip_id != service.id or conn.backend_id != backend_id:
                continue
            if self.dp.conn_del(conn.client):
                removed += 1
                if conn.state not in CLOSING:
                    backend.conn_closed()
                self._release_snat(conn.client)
                self._tell(None, conn.client)
        return removed

    # -- live changes: a reloaded config (pyswitch/reload.py) -------------------------------------

    def add_service(self, config, now: float) -> VirtualService:
        """A VIP the reloaded config adds: its flows on every routed port, its address, ring and health
        checks, exactly as at start; nothing else changes."""
        service = VirtualService(self._next_id, config)
        self._next_id += 1
        self.services.append(service)
        self.by_id[service.id] = service
        self.by_name[service.name] = service
        self.by_address.setdefault(service.address, []).append(service)
        if not self._installed:
            self._install_once()
        self._install_service(service)
        for index in range(len(service.backends)):
            self._watch_backend(service, index, now)
        return service

    def remove_service(self, name: str) -> int:
        """A VIP the reloaded config no longer has: its flows, health checks and connections go (a client's
        next packet finds no VIP), its address stops being the switch's unless another VIP holds it.
        Returns how many connections were closed."""
        service = self.by_name.pop(name)
        self.services.remove(service)
        del self.by_id[service.id]
        sharing = self.by_address[service.address]
        sharing.remove(service)
        if not sharing:
            del self.by_address[service.address]
            if not any(service.address == svi.ip for svi in self.l3.svis.values()):
                self.l3.local_addresses.discard(service.address)
                self.dp.route_del(service.address, 32)
        for flow in self.dp.flows():
            if flow.cookie == COOKIE_VIP | service.id:
                self.dp.flow_del(flow.key, flow.mask, flow.priority)
        for index in range(len(service.backends)):
            self.health.remove((service.id, index))
            self._health_up.pop((service.id, index), None)
            self._drained.discard((service.id, index))
            self._removed.discard((service.id, index))
        self._rings.pop(service.id, None)
        closed = 0
        for backend in service.backends:
            closed += self.reset_backend_connections(service, backend)
        return closed

    def add_backend(self, service: VirtualService, config, now: float) -> None:
        """A backend the reloaded config adds to a VIP, or gives back after removing it."""
        backend = service.backend(str(config.address), config.port)
        if backend is None:
            backend = service.add_backend(config)
            base_of = {}
            for port_no, port, svi in self._routed_ports():
                base_of[(port_no, svi.vlan)] = dict(in_port=port_no, vlan_tci=ingress_tci(port, svi.vlan),
                                                    eth_dst=svi.mac, eth_type=consts.ETH_TYPE_IPV4)
            for base in base_of.values():
                self._install_backend_flows(service, backend, base)
        else:
            backend.weight = config.weight
        index = service.backends.index(backend)
        self._removed.discard((service.id, index))
        self._drained.discard((service.id, index))
        self._watch_backend(service, index, now)
        self._apply_state(service, index, "reload: added")
        self._backends_changed(service)

    def remove_backend(self, service: VirtualService, backend) -> None:
        """A backend the reloaded config no longer has: no new connection goes to it and it is no longer
        probed; the connections it has run on to their end (as IPVS keeps a deleted real server's), so its
        reply flows stay.  It keeps its place in the list: connections and events name backends by it."""
        index = service.backends.index(backend)
        self._removed.add((service.id, index))
        self.health.remove((service.id, index))
        self._apply_state(service, index, "reload: removed")

    def set_weight(self, service: VirtualService, backend, weight: int) -> None:
        backend.weight = weight
        self._backends_changed(service)

    def set_timeouts(self, settings) -> None:
        """New connection timeouts from a reloaded [switch]: they apply to every connection's next packet."""
        self._timeouts = {consts.CS_SYN: settings.conn_syn_s, consts.CS_ESTABLISHED: settings.conn_established_s,
                          consts.CS_FIN_WAIT: settings.conn_fin_wait_s, consts.CS_CLOSE: settings.conn_close_s,
                          consts.CS_UDP: settings.conn_udp_s}
        if self._installed:
            self.dp.conn_config(None, {k: int(v * 1000) for k, v in self._timeouts.items()})

    # -- connections synced from an HA peer ------------------------------------------------------

    def apply_synced(self, conn: Conn, now: float) -> bool:
        """Installs (or refreshes) a connection the HA master reported, as if it had been scheduled here:
        its backend counts it, a full-NAT port is marked taken.  Returns False if the table refused it."""
        service = self.by_id.get(conn.vip_id)
        if service is None or not 1 <= conn.backend_id <= len(service.backends):
            self.counters["sync_refused"] += 1
            return False
        backend = service.backends[conn.backend_id - 1]
        old = self.dp.conn_get(conn.client)
        if old is not None:
            self.dp.conn_del(conn.client)
        try:
            self.dp.conn_add(conn, _now_ms(now))
        except OSError:
            self.counters["sync_refused"] += 1
            if old is not None and old.state not in CLOSING:
                backend.conn_closed()
            return False
        was_open = old is not None and old.state not in CLOSING
        is_open = conn.state not in CLOSING
        if old is None:
            backend.conn_opened()
            if not is_open:
                backend.conn_closed()
        elif is_open and not was_open:
            backend.conn_reopened()
        elif was_open and not is_open:
            backend.conn_closed()
        if conn.mode == consts.CONN_FULLNAT and conn.reply is not None and conn.client not in self._snat_of:
            held = (conn.client.proto, conn.reply.dst, conn.reply.src, conn.reply.sport, conn.reply.dport)
            self.snat.reserve(*held)
            self._snat_of[conn.client] = held
        return True

    def drop_synced(self, client: ConnTuple) -> bool:
        """Removes a connection the HA master reported gone."""
        conn = self.dp.conn_get(client)
        if conn is None or not self.dp.conn_del(client):
            return False
        service = self.by_id.get(conn.vip_id)
        if service is not None and 1 <= conn.backend_id <= len(service.backends) and conn.state not in CLOSING:
            service.backends[conn.backend_id - 1].conn_closed()
        self._release_snat(client)
        return True

    # -- show -------------------------------------------------------------------------------------

    def show_vips(self) -> list[dict]:
        rows = [dict(s.show(), max_embryonic=s.config.max_embryonic, flood_threshold=s.config.flood_threshold,
                     upcall_rate=s.config.upcall_rate, guard=self.guard_stats(s)) for s in self.services]
        for row, s in zip(rows, self.services):
            if s.id in self.l7.services:
                row["l7"] = self.l7.services[s.id].show()
        return rows

    def show_conns(self, now: float) -> list[dict]:
        now_ms = _now_ms(now)
        rows = []
        for conn in self.dp.conn_dump()[:MAX_SHOWN_CONNS]:
            service = self.by_id.get(conn.vip_id)
            backend = service.backends[conn.backend_id - 1] if service else None
            c = conn.client
            row = {"vip": service.name if service else conn.vip_id,
                   "client": _endpoint(c.src, c.sport),
                   "backend": f"{backend.address}:{backend.port}" if backend else None,
                   "state": STATE_NAMES.get(conn.state, str(conn.state)),
                   "age_s": round(max(0, now_ms - conn.created_ms) / 1000, 1),
                   "packets": conn.packets, "bytes": conn.bytes}
            if service is not None and service.l7_pool:
                bound = self.l7.bound.get(c)
                if bound is None:
                    continue        # held: shown below with its session
                row.update(vip=bound.vip, pool=bound.pool, rule=bound.rule or "default")
            rows.append(row)
        rows.extend(self.l7.show_sessions(now))
        rows.sort(key=lambda r: (str(r["vip"]), r["client"]))
        return rows

    def stats(self) -> dict:
        out = {f"lb_{k}": v for k, v in self.counters.items()}
        out["lb_snat_ports_in_use"] = self.snat.in_use()
        for key, value in self.dp.conn_stats().items():
            out[f"conn_{key}"] = value
        for key, value in self.dp.ring_stats().items():
            out[f"ring_{key}"] = value
        totals: dict[str, int] = {}
        for s in self.services:
            for key, value in self.guard_stats(s).items():
                totals[key] = totals.get(key, 0) + value
        for key, value in totals.items():      # every VIP's together; `show vips` has each one's
            out[f"guard_{key}"] = value
        if self.l7.services:
            out.update(self.l7.stats())
        return out


def schedules_in_datapath(service: VirtualService) -> bool:
    """Whether the datapath schedules `service`'s new connections from a Maglev ring: only maglev keeps its
    whole decision in a table; persistence needs the slow path's affinity memory, fullnat its port
    allocator."""
    return (service.config.scheduler == "maglev" and service.config.persistence_s == 0
            and service.config.mode in ("nat", "dsr", "tunnel") and not service.l7_pool
            and service.id < consts.RING_MAX_VIPS)


def _parser_of(datapath):
    """The request readers that go with the datapath: C with the C datapath, the twin with the twin's."""
    from .. import fastpath, refpath
    return refpath if isinstance(datapath, refpath.Datapath) else fastpath


def _rewrite_quote(quoted: bytes, src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    """The quoted IPv4 header with new addresses and ports; its header checksum recomputed.  The quoted
    transport checksum is left alone: receivers match the quote by addresses and ports only."""
    ihl = (quoted[0] & 0x0F) * 4
    header = bytearray(quoted[:ihl])
    header[12:16], header[16:20] = src, dst
    header[10:12] = b"\x00\x00"
    header[10:12] = struct.pack("!H", csum(bytes(header)))
    return bytes(header) + struct.pack("!HH", sport, dport) + quoted[ihl + 4:]
