"""L2 learning with VLANs: the slow-path stage that decides what a missed frame does.

For each upcall it classifies the frame into a VLAN (access port: the port's
VLAN; trunk: the tag, which must be allowed), learns the source MAC, picks the
output (the learned port, or every other port of the VLAN for broadcast,
multicast and unknown unicast), sends the frame, and installs a flow matching
(in_port, VLAN tag, source MAC, destination MAC) so the rest of the
conversation stays in the fast path.  The source MAC is in the match so that a
new host behind a known port still comes up once to be learned.

Unknown unicast is flooded without a flow: the next frame comes up again and
gets a proper flow as soon as the destination has been learned.
"""
from __future__ import annotations

import logging

from .. import consts
from ..datapath_types import FlowTableError
from ..events import EventLog, Throttle
from ..flowkey import FlowKey, mac_str
from .mac_table import MacTable
from .vlan import classify, flood_actions, output_actions

log = logging.getLogger("pyswitch.l2")

L2_PRIORITY = 100           # learned and flood flows; later stages sit above
COOKIE_L2 = 1 << 60         # cookie tag of flows this stage installs: | vlan << 48 | source MAC
_MAC_MASK = (1 << 48) - 1
# A MAC flapping between two ports (a loop) moves on every frame: its events are throttled to this many a
# second, a burst of twice as many; the rest are counted (mac_move_events_suppressed).
MOVE_EVENTS_PER_S = 10

L2_MATCH = FlowKey.mask_of("in_port", "vlan_tci", "eth_src", "eth_dst", vlan_vid_only=True)
MATCH_DST = FlowKey.mask_of("eth_dst")
MATCH_SRC = FlowKey.mask_of("eth_src")
MATCH_IN_VLAN = FlowKey.mask_of("in_port", "vlan_tci", vlan_vid_only=True)


def is_group(mac: bytes) -> bool:
    """Broadcast and multicast addresses have the I/G bit set."""
    return bool(mac[0] & 1)


class L2Stage:
    def __init__(self, ports: dict, mac_table: MacTable, datapath, flow_idle_ms: int):
        self.ports = ports                  # port_no -> PortConfig
        self.macs = mac_table
        self.dp = datapath
        self.flow_idle_ms = flow_idle_ms
        self.drops = {"vlan_not_allowed": 0, "bad_source": 0, "same_port": 0}
        self.flooded = 0
        self.forwarded = 0
        self.flow_refused = 0               # flows the datapath had no room for (the frame still went)
        self.move_listeners = []            # called as listener(vlan, mac, new_port_no) on a MAC move
        self.event_log = EventLog()         # the switch's own replaces it (pyswitch/switch.py)
        self.move_events = Throttle(MOVE_EVENTS_PER_S, 2 * MOVE_EVENTS_PER_S)

    # -- the per-upcall decision ------------------------------------------------

    def handle(self, upcall, now: float) -> None:
        key = FlowKey.unpack(upcall.key)
        port = self.ports.get(upcall.in_port)
        if port is None:
            return
        vlan = classify(port, key.vlan_tci)
        if vlan is None:
            self.drops["vlan_not_allowed"] += 1
            self._install(upcall.key, MATCH_IN_VLAN, [], cookie=COOKIE_L2, now=now)
            return
        if is_group(key.eth_src) or key.eth_src == bytes(6):
            self.drops["bad_source"] += 1
            return

        moved_from = self.macs.learn(vlan, key.eth_src, upcall.in_port, now)
        if moved_from is not None:
            # The event is the log line too ("event mac_move mac=... from_port=..."), throttled as a loop needs.
            self.move_events.emit(self.event_log, now, "mac_move", mac=mac_str(key.eth_src), vlan=vlan,
                                  from_port=self._port_name(moved_from), to_port=port.name)
            self._forget_flows_to(key.eth_src)
            for listener in self.move_listeners:
                listener(vlan, key.eth_src, upcall.in_port)

        ingress_tagged = bool(key.vlan_tci & consts.VLAN_PRESENT)
        cookie = COOKIE_L2 | vlan << 48 | int.from_bytes(key.eth_src, "big")
        if is_group(key.eth_dst):
            actions = flood_actions(self.ports, upcall.in_port, vlan, ingress_tagged)
            self.flooded += 1
            self.dp.execute(upcall.in_port, upcall.data, upcall.vnet, actions)
            self._install(upcall.key, L2_MATCH, actions, cookie, now)
            return

        entry = self.macs.lookup(vlan, key.eth_dst)
        if entry is None:
            self.flooded += 1
            actions = flood_actions(self.ports, upcall.in_port, vlan, ingress_tagged)
            self.dp.execute(upcall.in_port, upcall.data, upcall.vnet, actions)
            return
        if entry.port_no == upcall.in_port:
            # The destination sits behind the port the frame came from (a hub or a
            # neighbouring switch delivered it already): a switch never sends it back.
            self.drops["same_port"] += 1
            self._install(upcall.key, L2_MATCH, [], cookie, now)
            return
        actions = output_actions(self.ports[entry.port_no], entry.port_no, vlan, ingress_tagged)
        self.forwarded += 1
        self.dp.execute(upcall.in_port, upcall.data, upcall.vnet, actions)
        self._install(upcall.key, L2_MATCH, actions, cookie, now)

    def _install(self, key: bytes, mask: bytes, actions: list, cookie: int, now: float) -> None:
        try:
            self.dp.flow_put(key, mask, L2_PRIORITY, actions, idle_timeout_ms=self.flow_idle_ms, cookie=cookie)
        except FlowTableError:
            # A table full of permanent flows (or of subtables): the frame was handled, and the next one
            # comes up again.  Counted here and in the table's `refused`.
            self.flow_refused += 1

    # -- keeping the MAC table and the flows consistent ---------------------------

    def _forget_flows_to(self, mac: bytes) -> None:
        self.dp.flow_del_loose(FlowKey(eth_dst=mac).pack(), MATCH_DST)

    def forget_port(self, port_no: int) -> None:
        """The port's interface is gone: whoever was behind it may come back elsewhere, or another host may
        come back behind it, so its MACs are forgotten with the flows that sent to them (flooded, then
        learned again)."""
        for vlan, mac in self.macs.forget_port(port_no):
            log.info("MAC %s in VLAN %d forgotten with port %s", mac_str(mac), vlan, self._port_name(port_no))
            self._forget_flows_to(mac)

    def refresh_from_flows(self, flows) -> None:
        """A MAC whose traffic stays in the fast path never comes up again, so its
        entry is kept alive by its flows' last-used times instead."""
        for flow in flows:
            if flow.cookie & (0xF << 60) != COOKIE_L2 or not flow.packets:
                continue
            vlan = flow.cookie >> 48 & 0x0FFF
            mac = (flow.cookie & _MAC_MASK).to_bytes(6, "big")
            self.macs.refresh(vlan, mac, flow.used_ms / 1000.0)  # both clocks are CLOCK_MONOTONIC

    def age(self, now: float) -> None:
        for vlan, mac in self.macs.age(now):
            log.debug("MAC %s in VLAN %d aged out", mac_str(mac), vlan)
            self._forget_flows_to(mac)
            self.dp.flow_del_loose(FlowKey(eth_src=mac).pack(), MATCH_SRC)

    def _port_name(self, port_no: int) -> str:
        port = self.ports.get(port_no)
        return port.name if port else str(port_no)

    def stats(self) -> dict:
        out = {"l2_flooded": self.flooded, "l2_forwarded": self.forwarded, "l2_flow_refused": self.flow_refused,
               "mac_move_events_suppressed": self.move_events.suppressed_total}
        out.update({f"l2_drop_{k}": v for k, v in self.drops.items()})
        out.update(self.macs.stats())
        return out
