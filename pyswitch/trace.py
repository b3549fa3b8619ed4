"""`pyswitch trace PORT FRAME-SPEC`: what the switch would do with a frame, without sending it or changing a table.

The datapath has no dry run, and its lookup counts a hit (packets, bytes, last use, LRU), so the trace does not
call it.  Instead, on the running switch, between two loop steps:

1. the frame is built from the spec (pyswitch/framespec.py) and parsed by the twin's parser (refpath/parse.py,
   byte for byte the C parser's key);
2. the flow it would hit is found in a dump of the flow table, by the table's rule: the highest priority wins,
   equal priorities go by subtable age, which the dump's installation order stands for (a dump lists every
   flow, so this can only differ when two overlapping flows of one priority and different masks exist and the
   older subtable's first flow was removed: pyswitch installs no such pair);
3. the flow's actions run on a copy of the frame in the twin's executor (refpath/actions.py), whose sink reads
   the live routing tables without writing them: ROUTE's decision is the twin's own `RouteTables.decide` over
   the datapath's `route_lookup` and `neigh_get`, LB's is `conn_get`; a miss is decided as the L2 stage would
   (classify, look the destination up; nothing learned), and a new VIP connection's backend by a copy of the
   VIP's scheduler, so its turn is not taken.

What a trace cannot know is listed in docs/OBSERVABILITY_TRACE.md "Limits".
"""
from __future__ import annotations

import copy
import ipaddress
from collections import defaultdict

from . import consts
from .datapath_types import ConnTuple
from .flow_explain import Names, explain_actions, explain_match
from .flowkey import FlowKey, mac_str
from .framespec import FrameSpecError, build as build_frame
from .pipeline.l2 import L2_PRIORITY, is_group
from .pipeline.l3 import USERDATA_ARP
from .pipeline.vlan import classify, flood_actions, output_actions
from .refpath.actions import Sink, execute
from .refpath.conntrack import ConnTable
from .refpath.flowtable import now_ms as flow_now_ms
from .refpath.ring import Rings
from .refpath.nat import ipv4_offset
from .refpath.parse import parse_frame
from .refpath.route import FORWARD, NextHop, Neighbor, RouteTables

ZERO_VNET = bytes(consts.VNET_HDR_SIZE)
ROUTE_UPCALLS = {
    consts.UPCALL_NO_ROUTE: "no route to {dst}: the slow path answers ICMP net unreachable",
    consts.UPCALL_LOCAL: "{dst} is the switch's own: the slow path answers it (echo reply, port unreachable)",
    consts.UPCALL_TTL: "the TTL runs out: the slow path answers ICMP time exceeded",
}
CONN_STATES = {v: k[3:].lower() for k, v in vars(consts).items() if k.startswith("CS_") and k != "CS_COUNT"}


def first_match(flows, key: bytes):
    """The flow a lookup of `key` would hit in `flows` (a dump, in installation order), or None."""
    key_int = int.from_bytes(key, "big")
    group_age: dict[tuple[bytes, int], int] = {}
    best = best_rank = None
    for i, flow in enumerate(flows):
        age = group_age.setdefault((flow.mask, flow.priority), i)
        if key_int & int.from_bytes(flow.mask, "big") != int.from_bytes(flow.key, "big"):
            continue
        rank = (-flow.priority, age)
        if best is None or rank < best_rank:
            best, best_rank = flow, rank
    return best


class _RouteView(RouteTables):
    """What RouteTables.decide reads (lpm, nexthops, neighbors), answered from the running datapath's read-only
    calls and the L3 stage's record of the next hops it wrote: RouteTables' decide, route and rewrite work on it
    (its own tables are never made)."""

    def __init__(self, dp, l3):         # not RouteTables.__init__: the tables are the datapath's
        self.lpm = self
        self.nexthops = self
        self.neighbors = _Neighbors(dp)
        self._dp, self._l3 = dp, l3

    def lookup(self, addr: bytes) -> int:
        return self._dp.route_lookup(bytes(addr[:4]))

    def get(self, nh_id: int):
        info = self._l3._nh_info.get(nh_id) if self._l3 is not None else None
        if info is None:
            return None
        kind, vlan, gateway = info
        svi = self._l3.svis.get(vlan)
        return NextHop(kind, vlan, bytes(gateway).ljust(16, b"\0"), svi.mac if svi else bytes(6))


class _Neighbors:
    def __init__(self, dp):
        self._dp = dp

    def get(self, vlan_addr):
        vlan, addr = vlan_addr
        found = self._dp.neigh_get(vlan, addr)
        return None if found is None else Neighbor(*found)


class _TraceSink(Sink):
    """The executor's sink for a trace: outputs are collected, ROUTE and LB are decided from the live tables
    read-only, anything the slow path would get is said in words."""

    def __init__(self, tracer: "Tracer", key: FlowKey):
        self.tracer = tracer
        self.key = key
        self.outputs: list[tuple[int, bytes]] = []
        self.steps: list[str] = []
        self.to_slow_path = False
        self.then_l2 = False            # a broadcast ARP: the L3 stage hands it on to L2 as well
        self.load_balanced_to = None    # an existing VIP connection's backend: the fast path rewrites toward it

    def emit(self, port, frame, vnet):
        self.outputs.append((port, bytes(frame)))

    def upcall(self, frame, vnet, userdata):
        self.to_slow_path = True
        self.steps.append(self.tracer.upcall_words(userdata, self.key))
        self.then_l2 = self.then_l2 or (userdata == USERDATA_ARP and is_group(self.key.eth_dst))

    def route(self, work, v, via):
        l3 = ipv4_offset(work)
        if not l3:
            self.steps.append("ROUTE drops it: not IPv4")
            return False
        src, dst = bytes(work[l3 + 12:l3 + 16]), bytes(work[l3 + 16:l3 + 20])
        verdict, what, userdata, hop = self.tracer.route_decide(src, dst, via, work[l3 + 8])
        if verdict == FORWARD:
            nh, neigh = hop
            hop_words = f"gateway {_ip(nh.gateway)}" if nh.kind == consts.NH_GATEWAY else "a connected host"
            self.steps.append(f"ROUTE: {_ip(dst)} to {hop_words} on VLAN {nh.vlan}, neighbor {mac_str(neigh.mac)} on "
                              f"{self.tracer.names.port(neigh.port)}; TTL - 1, new MACs")
            RouteTables.rewrite(work, v, hop, defaultdict(int))
            self.emit(what, work, v.pack())
            return True
        self.to_slow_path = verdict != "drop"
        self.steps.append(self.tracer.route_upcall_words(verdict, what, userdata, dst))
        return False

    def lb(self, work, v, act):
        words, backend = self.tracer.lb_words(act, self.key)
        self.steps.append(words)
        if backend is None:
            self.to_slow_path = True
            return False
        self.load_balanced_to = backend
        forwarded = self.tracer.lb_forward(act, self.key, work, v)
        if forwarded is None:
            return False
        port, words = forwarded
        self.steps.append(words)
        self.emit(port, work, v.pack())
        return True

    def drop(self, reason):
        self.steps.append(f"dropped ({reason}: not a tunnel packet)")


class Tracer:
    """Traces frames through one running switch (its datapath, L2, L3 and VIP stages), changing nothing."""

    def __init__(self, switch):
        self.sw = switch

    @property
    def names(self) -> Names:
        services = list(getattr(self.sw.vips, "services", None) or [])
        svis = getattr(self.sw.l3, "svis", None) or {}
        return Names(ports={no: pc.name for no, pc in self.sw.port_configs.items()},
                     vips={s.id: s.name for s in services},
                     configs=dict(self.sw.port_configs),
                     # L7 pools are services too, at the VIP's address: the VIP's own name is the first one's
                     vip_addresses={s.address: s.name for s in reversed(services) if not getattr(s, "l7_pool", None)},
                     own_macs={svi.mac: vlan for vlan, svi in svis.items()})

    def trace(self, port_name, spec) -> dict:
        in_port = self._port_no(port_name)
        try:
            frame = build_frame(spec)
        except FrameSpecError as exc:
            raise ValueError(f"trace: frame spec: {exc}") from None
        return self.trace_frame(in_port, frame)

    def trace_frame(self, in_port: int, frame: bytes) -> dict:
        names = self.names
        result = {"port": names.port(in_port), "frame": frame.hex(), "flow": None, "steps": [], "outputs": []}
        error, raw_key, _l3, _l4 = parse_frame(frame, in_port, 0, False)
        key = FlowKey.unpack(raw_key)
        result["packet"] = key.describe()
        if error:
            name = consts.PARSE_ERROR_NAMES[error]
            result["steps"].append(f"the parser drops it ({name}), counted in parse_errors.{name}")
            result["verdict"] = "drop"
            return result
        sink = _TraceSink(self, key)
        flow = first_match(self.sw.dp.flows(), raw_key)
        if flow is not None:
            result["flow"] = {"priority": flow.priority, "match": FlowKey.unpack(flow.key).describe(flow.mask),
                              "actions": explain_actions(flow.actions, names), "cookie": f"0x{flow.cookie:x}",
                              "explain": explain_match(flow.key, flow.mask, names)}
            sink.steps.append(f"fast path: hits the flow of priority {flow.priority} "
                              f"({explain_match(flow.key, flow.mask, names)}): "
                              f"{explain_actions(flow.actions, names)}")
            execute(frame, ZERO_VNET, in_port, flow.actions, sink)
            flooded = any(a.type == consts.ACT_FLOOD for a in flow.actions)
        else:
            # A miss is always the L2 stage's (the other stages take only upcalls their flows ask for): what
            # it does not send anywhere is dropped, not answered.
            sink.steps.append("fast path: no flow matches: a miss goes up to the slow path")
            sink.then_l2 = True
            flooded = False
        if sink.then_l2:
            actions = self._l2_decision(in_port, key, sink.steps)
            execute(frame, ZERO_VNET, in_port, actions, sink)
            flooded = flooded or any(a.type == consts.ACT_FLOOD for a in actions)
        result["steps"] = sink.steps
        result["outputs"] = [self._output(port, out) for port, out in sink.outputs]
        result["verdict"] = self._verdict(result["outputs"], flooded, sink)
        return result

    # -- the slow path's decisions, read only ----------------------------------------------------------------

    def _l2_decision(self, in_port: int, key: FlowKey, steps: list) -> list:
        """What L2Stage.handle would do with a miss: the actions it would execute, its learning in words."""
        ports, macs = self.sw.port_configs, self.sw.macs
        port = ports[in_port]
        vlan = classify(port, key.vlan_tci)
        if vlan is None:
            steps.append(f"L2: {port.name} does not carry this frame's VLAN: dropped (l2_drop_vlan_not_allowed), "
                         f"a drop flow is installed")
            return []
        if is_group(key.eth_src) or key.eth_src == bytes(6):
            steps.append(f"L2: source {mac_str(key.eth_src)} is not a host's: dropped (l2_drop_bad_source)")
            return []
        known = macs.lookup(vlan, key.eth_src)
        if known is None:
            steps.append(f"L2: would learn {mac_str(key.eth_src)} in VLAN {vlan} on {port.name}")
        elif known.port_no != in_port:
            steps.append(f"L2: {mac_str(key.eth_src)} would move from {self.names.port(known.port_no)} to "
                         f"{port.name} (the flows toward it are removed)")
        else:
            steps.append(f"L2: {mac_str(key.eth_src)} is known on {port.name} in VLAN {vlan}")
        tagged = bool(key.vlan_tci & consts.VLAN_PRESENT)
        idle_s = self.sw.l2.flow_idle_ms / 1000
        if is_group(key.eth_dst):
            steps.append(f"L2: {mac_str(key.eth_dst)} is broadcast/multicast: flood VLAN {vlan}, and a flow "
                         f"(priority {L2_PRIORITY}, idle {idle_s:g} s) keeps the next such frame in the fast path")
            return flood_actions(ports, in_port, vlan, tagged)
        entry = macs.lookup(vlan, key.eth_dst)
        if entry is None:
            steps.append(f"L2: {mac_str(key.eth_dst)} is unknown in VLAN {vlan}: flood, without a flow "
                         f"(the next frame asks again)")
            return flood_actions(ports, in_port, vlan, tagged)
        if entry.port_no == in_port:
            steps.append(f"L2: {mac_str(key.eth_dst)} is behind {port.name}, where the frame came from: dropped "
                         f"(l2_drop_same_port), a drop flow is installed")
            return []
        steps.append(f"L2: {mac_str(key.eth_dst)} is on {self.names.port(entry.port_no)} in VLAN {vlan}: "
                     f"forward, and a flow (priority {L2_PRIORITY}, idle {idle_s:g} s) keeps the rest in the fast path")
        return output_actions(ports[entry.port_no], entry.port_no, vlan, tagged)

    def route_decide(self, src: bytes, dst: bytes, via, ttl: int):
        return _RouteView(self.sw.dp, self.sw.l3).decide(src, dst, via, ttl, defaultdict(int))

    def route_upcall_words(self, verdict, reason: int, userdata: int, dst: bytes) -> str:
        if verdict == "drop":
            return f"ROUTE drops it (martian source, group destination or blackhole route to {_ip(dst)})"
        if reason == consts.UPCALL_NO_NEIGH:
            info = self.sw.l3._nh_info.get(userdata) if self.sw.l3 is not None else None
            hop = _ip(info[2]) if info and info[2] else _ip(dst)
            vlan = info[1] if info else "?"
            return (f"ROUTE: next hop {hop} on VLAN {vlan} is not resolved: the slow path ARPs for it and the "
                    f"packet waits (arp_queue), or gets ICMP host unreachable if no answer comes")
        return "ROUTE: " + ROUTE_UPCALLS.get(reason, "to the slow path (reason {reason})").format(dst=_ip(dst),
                                                                                                reason=reason)

    def upcall_words(self, userdata: int, key: FlowKey) -> str:
        if userdata == USERDATA_ARP:
            words = "to the slow path: the L3 stage answers ARP for the switch's addresses and learns the sender"
            if is_group(key.eth_dst):
                words += "; a broadcast ARP also goes on to L2"
            return words
        return "to the slow path: " + {2: "the VIP stage translates a backend's ICMP error",
                                       3: "the HA stage reads a VRRP advert",
                                       4: "the HA stage reads the peer's connection sync"}.get(
            userdata, f"an upcall with userdata {userdata}")

    def lb_words(self, act, key: FlowKey) -> tuple[str, str | None]:
        """LB / LB_REPLY in words, and the address the fast path sends it toward when a connection holds it
        (None: it goes up to the slow path, or is routed as is)."""
        dp, names = self.sw.dp, self.names
        if key.eth_type != consts.ETH_TYPE_IPV4 or key.nw_proto not in (6, 17):
            return "LB: not TCP or UDP over IPv4: routed as is (ping to the VIP is answered by the switch)", None
        tuple_ = ConnTuple(key.nw_proto, key.nw_src[:4], key.nw_dst[:4], key.tp_src, key.tp_dst)
        if act.type == consts.ACT_LB_REPLY:
            conn = dp.conn_get(tuple_, by_reply=True)
            if conn is None:
                return "LB_REPLY: no connection has this reply tuple: routed as is", None
            client = f"{_ip(conn.client.src)}:{conn.client.sport}"
            return (f"LB_REPLY: a reply on {names.vip(conn.vip_id)}'s connection from {client}: addresses put "
                    f"back, routed to the client in the fast path", client)
        vip = names.vip(act.arg32)
        conn = dp.conn_get(tuple_)
        if conn is not None:
            toward = _ip(conn.reply.src if conn.reply is not None else conn.backend)
            return (f"LB ({vip}): existing connection ({CONN_STATES.get(conn.state, conn.state)}) to backend "
                    f"{toward}: rewritten by its mode and sent toward it in the fast path", toward)
        service = self.sw.vips.by_id.get(act.arg32) if self.sw.vips else None
        if service is None:
            return f"LB ({vip}): no connection, and no such VIP in the slow path", None
        if key.nw_proto == 6 and not (key.tcp_flags & 0x02 and not key.tcp_flags & 0x15):
            return f"LB ({vip}): no connection and not a SYN: the slow path answers with a reset (lb_no_conn)", None
        backend = self._would_choose(service, tuple_.src)
        if backend is None:
            return f"LB ({vip}): new connection, but no backend takes new ones: refused (RST / unreachable)", None
        return (f"LB ({vip}): new connection: the slow path (or, for maglev, the datapath's ring) picks backend "
                f"{backend.address}:{backend.port} by {service.scheduler.name or 'its scheduler'}, then the fast "
                f"path rewrites and routes it", None)

    def lb_forward(self, act, key: FlowKey, work: bytearray, v):
        """An existing connection's packet rewritten and routed as the fast path would (in `work`), by the twin's
        LB over a table holding a copy of that one connection and the live routes: (output port, words), or None
        when the connection is held or spliced by the L7 engine (whose deltas the trace does not read) or its
        route is not resolved."""
        tuple_ = ConnTuple(key.nw_proto, key.nw_src[:4], key.nw_dst[:4], key.tp_src, key.tp_dst)
        conn = self.sw.dp.conn_get(tuple_, by_reply=act.type == consts.ACT_LB_REPLY)
        if conn is None or conn.flags & (consts.CONN_F_HOLD | consts.CONN_F_SPLICED):
            return None
        table, now_ms = ConnTable(), flow_now_ms()
        table.add(conn, now_ms)
        verdict, port, _ = table.lb(work, v, act, Rings(), _RouteView(self.sw.dp, self.sw.l3), defaultdict(int),
                                    now_ms)
        if verdict != FORWARD:
            return None
        l3 = ipv4_offset(work)
        src, dst = _ip(work[l3 + 12:l3 + 16]), _ip(work[l3 + 16:l3 + 20])
        return port, f"LB: rewritten to {src} -> {dst} and routed out of {self.names.port(port)}"

    @staticmethod
    def _would_choose(service, client_ip: bytes):
        """The backend service.choose would return now, from copies: the scheduler's turn and the affinity
        table stay as they are.  Backends are shared, not copied: the copy must hand back the real ones."""
        held = getattr(service, "_affinity", {}).get(client_ip)
        if held is not None and service.config.persistence_s > 0 and held[0].accepts_new:
            return held[0]
        memo = {id(b): b for b in service.backends}
        return copy.deepcopy(service.scheduler, memo).pick(service.backends, client_ip)

    # -- results ---------------------------------------------------------------------------------------------

    def _output(self, port: int, frame: bytes) -> dict:
        key = FlowKey.unpack(parse_frame(frame, port, 0, False)[1])
        vlan = key.vlan_tci & 0x0FFF if key.vlan_tci & consts.VLAN_PRESENT else None
        return {"port": self.names.port(port), "eth_src": mac_str(key.eth_src), "eth_dst": mac_str(key.eth_dst),
                "vlan": vlan, "packet": key.describe(), "frame": frame.hex()}

    @staticmethod
    def _verdict(outputs: list, flooded: bool, sink: _TraceSink) -> str:
        """One line: where the frame goes ("output to p2", "flood to p2,p3", "load-balanced toward ..."), else
        "slow path" or "drop"."""
        ports = ",".join(o["port"] for o in outputs)
        if outputs and sink.load_balanced_to is not None:
            return f"load-balanced toward {sink.load_balanced_to}: output to {ports}"
        if outputs:
            return f"{'flood' if flooded else 'output'} to {ports}"
        if sink.load_balanced_to is not None:
            return f"load-balanced toward {sink.load_balanced_to} (fast path)"
        return "slow path" if sink.to_slow_path else "drop"

    def _port_no(self, port_name) -> int:
        for no, pc in self.sw.port_configs.items():
            if pc.name == port_name:
                return no
        known = ", ".join(pc.name for pc in self.sw.port_configs.values())
        raise ValueError(f"trace: port: no port named {port_name!r} (ports: {known})")


def _ip(addr: bytes) -> str:
    return str(ipaddress.IPv4Address(bytes(addr[:4])))
