"""The HA stage: this switch as one of an active/passive pair (VRRPv3, RFC 5798; docs/HA.md).

Both instances hold the same configuration for the VLANs that move ([ha] vlans): the same addresses, and
the virtual MAC 00:00:5e:00:01:<group> as their MAC there.  Only the master serves them.  A standby keeps
everything installed (routes, VIP flows, its connection table) but shuts the door in front of it:

    frames to the virtual MAC on a moving VLAN     dropped (priority 1000), so nothing is routed or balanced
    ARP for the moving addresses                   not answered (L3Stage.silent_vlans), none sent
    health checks                                  paused (VipStage.serving)

Becoming master opens the door (the drop flows go), announces every moving address with gratuitous ARP so
hosts and bridges turn to this switch at once, and resumes the health checks; becoming standby closes it.

VRRP advertisements go to 224.0.0.18 on every moving VLAN (from the virtual MAC, as the RFC says) and on
the sync VLAN (from the switch's own MAC there; unicast to [ha] peer when it is set), all with the
switch's own sync-VLAN address as the source:
the primary address that breaks ties and that `show ha` names as master.  Adverts come up through a flow per
port (priority 1100, above the door) and drive the state machine (pyswitch/ha/machine.py); its timers run
every loop step, and the loop sleeps no longer than the next one is due.

A tracked port whose link goes down (operstate, read from /sys/class/net every TRACK_EVERY_S) puts the
machine in fault: it gives up mastership at once (a priority-0 advert) and stays out until the link is up.

Connection sync (pyswitch/ha/sync.py): the master streams every connection the VIP stage adds, sees
change state or sees end, and every client affinity (persistence_s) it makes, as UDP to the peer's sync
address (without [ha] peer: to 224.0.0.81 on the sync VLAN), and all of them again every REFRESH_S (a
standby's copy would otherwise expire on its own idle timers); the standby installs them in its own tables
behind its shut door (VipStage.apply_synced).  A standby asks for a full dump when it starts, when the
stream comes from a new master, and when a sequence number shows a loss; until a full dump has arrived it
does not preempt (at most preempt_delay_s), so a master that comes back takes over only once it knows the
connections the other one served meanwhile.
"""
from __future__ import annotations

import datetime
import ipaddress
import logging
import random
import time

from .. import actions as act
from .. import consts
from ..datapath_types import Conn
from ..events import EventLog
from ..flowkey import FlowKey, mac_str
from ..ha import machine as vm
from ..ha import sync, vrrp
from . import packets as pk
from .l3 import FROM_SWITCH, VNET_NONE
from .vlan import flood_actions, ingress_tci, output_actions

log = logging.getLogger("pyswitch.ha")

VRRP_PRIORITY = 1100            # adverts come up before anything else looks at them
DOOR_PRIORITY = 1000            # a standby drops frames to the virtual MAC: above every serving flow
COOKIE_HA = 4 << 60
USERDATA_VRRP = 3               # UPCALL userdata (after l3.USERDATA_ARP = 1, vip.USERDATA_BACKEND_ICMP = 2)
USERDATA_SYNC = 4               # UPCALL userdata: multicast sync from the peer
SYNC_GROUP = bytes([224, 0, 0, 81])                # without [ha] peer, sync goes here (as IPVS's sync daemon)
SYNC_GROUP_MAC = bytes.fromhex("01005e000051")
TRACK_EVERY_S = 0.05            # tracked ports' link state is read this often
SYNC_PORT = 8848                # UDP, between the instances' sync addresses (IPVS's sync daemon uses it too)
REFRESH_S = 10.0                # the master re-sends its whole table this often (idle timers, lost updates)

MATCH_VRRP = FlowKey.mask_of("in_port", "vlan_tci", "eth_type", "nw_proto", vlan_vid_only=True)
MATCH_DOOR = FlowKey.mask_of("in_port", "vlan_tci", "eth_dst", vlan_vid_only=True)
MATCH_SYNC = FlowKey.mask_of("in_port", "vlan_tci", "eth_type", "nw_proto", "nw_dst", "tp_dst", vlan_vid_only=True)


class HaStage:
    def __init__(self, config, ports: dict, datapath, l3_stage, vip_stage):
        self.cfg = config.ha
        self.ports = ports                      # port_no -> PortConfig
        self.dp = datapath
        self.l3 = l3_stage
        self.vips = vip_stage
        self.vmac = vrrp.virtual_mac(self.cfg.group)
        for vlan in self.cfg.vlans:
            self.l3.svis[vlan].mac = self.vmac
        self.primary = self.l3.svis[self.cfg.sync_vlan].ip
        self.machine = vm.Vrrp(self.cfg.priority, self.cfg.advert_interval_s, self.cfg.preempt, self.primary)
        self._door: list[tuple[bytes, bytes]] = []     # (key, mask) of the drop flows while they are in place
        self._tracked = {name: True for name in self.cfg.track_ports}     # port name -> link up
        self._next_track = 0.0
        self.counters = {"adverts_sent": 0, "adverts_received": 0, "adverts_invalid": 0, "adverts_other_group": 0,
                         "became_master": 0, "became_backup": 0, "sync_sent": 0, "sync_received": 0,
                         "sync_applied": 0, "sync_deleted": 0, "resync_requests_sent": 0, "full_dumps_sent": 0}
        self.peer = self.cfg.peer.packed if self.cfg.peer is not None else None
        self.epoch = random.randrange(1, 1 << 32)
        self.sender = sync.SyncSender(self.epoch)
        self.receiver = sync.SyncReceiver()
        self._next_refresh = 0.0
        self.event_log = EventLog()             # the switch's own replaces it (pyswitch/switch.py)
        self._state_told = self.machine.state   # the state the last ha_transition event named

    @property
    def serving(self) -> bool:
        return self.machine.state == "master"

    # -- start and stop ---------------------------------------------------------------------------

    def install(self, now: float) -> None:
        """Flows for adverts, the door shut, then the state machine started (an address owner serves at
        once; anyone else waits as standby for Master_Down_Interval)."""
        for port_no, port in self.ports.items():
            for vlan in self.cfg.vlans + (self.cfg.sync_vlan,):
                if port.carries(vlan):
                    key = FlowKey(in_port=port_no, vlan_tci=ingress_tci(port, vlan), eth_type=consts.ETH_TYPE_IPV4,
                                  nw_proto=vrrp.IP_PROTO_VRRP)
                    self.dp.flow_put(key.pack(), MATCH_VRRP, VRRP_PRIORITY, [act.upcall(USERDATA_VRRP)],
                                     cookie=COOKIE_HA | vlan)
            if self.peer is None and port.carries(self.cfg.sync_vlan):
                key = FlowKey(in_port=port_no, vlan_tci=ingress_tci(port, self.cfg.sync_vlan),
                              eth_type=consts.ETH_TYPE_IPV4, nw_proto=pk.IP_PROTO_UDP,
                              nw_dst=SYNC_GROUP + bytes(12), tp_dst=SYNC_PORT)
                self.dp.flow_put(key.pack(), MATCH_SYNC, VRRP_PRIORITY, [act.upcall(USERDATA_SYNC)],
                                 cookie=COOKIE_HA | self.cfg.sync_vlan)
        self._stop_serving()
        self.l3.local_handlers.insert(0, self._local)
        self.vips.conn_listeners.append(self._conn_changed)
        self.vips.affinity_listeners.append(self._affinity_changed)
        self.machine.hold_preempt(now + self.cfg.preempt_delay_s)
        self._request_resync()
        self._track(now)
        self._apply(self.machine.start(now), now)

    def shutdown(self, now: float) -> None:
        """A master going away says so (priority 0): the standby takes over after Skew_Time."""
        self._apply(self.machine.shutdown(now), now)

    def release(self, now: float) -> dict:
        """`pyswitch ha release`: hand mastership to the peer and stay standby (maintenance)."""
        if self.machine.state != "master":
            raise ValueError(f"ha release: this switch is {self.machine.state}, not master")
        self._apply(self.machine.release(now), now)
        log.warning("ha: mastership released by the operator")
        return self.show(now)

    # -- adverts ------------------------------------------------------------------------------------

    def handle(self, upcall, now: float) -> bool:
        if upcall.reason != consts.UPCALL_ACTION or upcall.userdata not in (USERDATA_VRRP, USERDATA_SYNC):
            return False
        if upcall.userdata == USERDATA_SYNC:
            self._local(pk.strip_ethernet(upcall.data)[1], now)
            return True
        eth_type, ip_packet = pk.strip_ethernet(upcall.data)
        try:
            src, advert = vrrp.parse_ip_packet(ip_packet, unicast_ok=self.peer is not None)
        except vrrp.VrrpError as exc:
            self.counters["adverts_invalid"] += 1
            log.debug("ha: invalid VRRP advert: %s", exc)
            return True
        if src == self.primary:
            return True                          # our own, reflected
        if advert.group != self.cfg.group:
            self.counters["adverts_other_group"] += 1
            return True
        self.counters["adverts_received"] += 1
        self._apply(self.machine.receive(advert.priority, advert.interval_cs / 100.0, src, now), now)
        return True

    def _send_advert(self, priority: int) -> None:
        advert = vrrp.Advert(group=self.cfg.group, priority=priority,
                             interval_cs=vrrp.interval_cs(self.cfg.advert_interval_s),
                             addresses=tuple(self.l3.svis[v].ip for v in self.cfg.vlans))
        packet = vrrp.ip_packet(advert, self.primary)
        for vlan in self.cfg.vlans:
            self._flood(vlan, pk.ethernet(vrrp.GROUP_MAC, self.vmac, consts.ETH_TYPE_IPV4, packet))
        sync_mac = self.l3.svis[self.cfg.sync_vlan].mac
        if self.peer is None:
            self._flood(self.cfg.sync_vlan, pk.ethernet(vrrp.GROUP_MAC, sync_mac, consts.ETH_TYPE_IPV4, packet))
        else:
            # Unicast to the peer on the sync VLAN (keepalived's unicast_peer): straight to its MAC, since
            # ROUTE would take one off the TTL that must arrive as 255.  Until ARP (the sync traffic's) has
            # found the peer, the adverts on the moving VLANs are all it gets.
            neighbor = self.l3.arp.get(self.cfg.sync_vlan, self.peer)
            if neighbor is not None and neighbor.mac is not None:
                frame = pk.ethernet(neighbor.mac, sync_mac, consts.ETH_TYPE_IPV4,
                                    vrrp.ip_packet(advert, self.primary, self.peer))
                self.dp.execute(FROM_SWITCH, frame, VNET_NONE,
                                output_actions(self.ports[neighbor.port_no], neighbor.port_no, self.cfg.sync_vlan,
                                               False))
        self.counters["adverts_sent"] += 1

    def _flood(self, vlan: int, frame: bytes) -> None:
        actions = flood_actions(self.ports, None, vlan, False)
        if actions:
            self.dp.execute(FROM_SWITCH, frame, VNET_NONE, actions)

    # -- timers -------------------------------------------------------------------------------------

    def timers(self, now: float) -> None:
        if now >= self._next_track:
            self._track(now)
        self._apply(self.machine.timers(now), now)
        if self.serving:
            if now >= self._next_refresh:
                self._next_refresh = now + REFRESH_S
                for conn in self.dp.conn_dump():
                    self.sender.conn(conn)
                for affinity in self._affinities(now):
                    self.sender.affinity(affinity)
            self._send_sync(self.sender.flush(now))
        elif self.receiver.due_resync(now):
            self._request_resync()

    # -- connection sync ----------------------------------------------------------------------------

    def _conn_changed(self, conn, gone) -> None:
        """The VIP stage added, changed or lost a connection: a master tells the standby."""
        if not self.serving:
            return
        if conn is not None:
            self.sender.conn(conn)
        else:
            self.sender.deleted(gone)

    def _affinity_changed(self, service, client: bytes, index: int, seconds: float) -> None:
        if self.serving:
            self.sender.affinity(sync.Affinity(service.id, client, index, int(seconds * 1000)))

    def _affinities(self, now: float) -> list:
        return [sync.Affinity(s.id, client, index, int(left * 1000))
                for s in self.vips.services for client, index, left in s.affinities(now)]

    def _send_sync(self, payloads: list[bytes]) -> None:
        """To the peer (routed: ARP finds it), or without one to the sync group on the sync VLAN."""
        for payload in payloads:
            if self.peer is not None:
                self.l3.send_ip(self.peer, pk.IP_PROTO_UDP,
                                pk.udp(self.primary, self.peer, SYNC_PORT, SYNC_PORT, payload), source=self.primary)
            else:
                packet = pk.ipv4(self.primary, SYNC_GROUP, pk.IP_PROTO_UDP,
                                 pk.udp(self.primary, SYNC_GROUP, SYNC_PORT, SYNC_PORT, payload), ttl=1)
                frame = pk.ethernet(SYNC_GROUP_MAC, self.l3.svis[self.cfg.sync_vlan].mac, consts.ETH_TYPE_IPV4,
                                    packet)
                actions = flood_actions(self.ports, None, self.cfg.sync_vlan, False)
                if actions:
                    self.dp.execute(FROM_SWITCH, frame, VNET_NONE, actions)
            self.counters["sync_sent"] += 1

    def _request_resync(self) -> None:
        self._send_sync([sync.resync_request(self.epoch)])
        self.counters["resync_requests_sent"] += 1

    def _local(self, ip_packet: bytes, now: float) -> bool:
        """Sync traffic from the peer, offered first among the switch's own packets."""
        try:
            proto, src, dst, datagram = pk.ipv4_parts(ip_packet)
            if proto != pk.IP_PROTO_UDP or src == self.primary:
                return False
            if (self.peer is not None and src != self.peer) or dst not in (self.primary, SYNC_GROUP):
                return False
            _sport, dport, payload = pk.udp_fields(datagram)
        except ValueError:
            return False
        if dport != SYNC_PORT:
            return False
        self.counters["sync_received"] += 1
        if sync.is_resync_request(payload):
            if self.serving:
                self._send_sync(self.sender.full(self.dp.conn_dump(), self._affinities(now), now))
                self.counters["full_dumps_sent"] += 1
            return True
        if self.serving:
            return True                 # another master's stream (a split brain about to resolve): ignore
        received = self.receiver.receive(payload, now)
        for entry in received.entries:
            if isinstance(entry, sync.Deleted):
                self.counters["sync_deleted"] += self.vips.drop_synced(entry.client)
            elif isinstance(entry, Conn):
                self.counters["sync_applied"] += self.vips.apply_synced(entry, now)
            elif isinstance(entry, sync.Affinity) and entry.vip_id in self.vips.by_id:
                self.vips.by_id[entry.vip_id].adopt_affinity(entry.client, entry.backend_index,
                                                             now + entry.remaining_ms / 1000)
        if received.full_done is not None:
            keep = set(received.full_done)
            for conn in self.dp.conn_dump():
                if conn.client not in keep:
                    self.counters["sync_deleted"] += self.vips.drop_synced(conn.client)
            self.machine.hold_preempt(now)          # we know what the master knows: preempt when due
        if received.request_resync:
            self._request_resync()
        return True

    def next_deadline(self) -> float | None:
        deadline = self.machine.next_deadline()
        if self._tracked:
            deadline = self._next_track if deadline is None else min(deadline, self._next_track)
        return deadline

    def _track(self, now: float) -> None:
        self._next_track = now + TRACK_EVERY_S
        if not self._tracked:
            return
        devices = {p.name: p.device for p in self.ports.values()}
        changed = False
        for name in self._tracked:
            up = _link_up(devices[name])
            if up != self._tracked[name]:
                self._tracked[name] = up
                changed = True
                log.warning("ha: tracked port %s is %s", name, "up" if up else "down")
        if changed or self.machine.state == "init":
            self._apply(self.machine.set_fault(not all(self._tracked.values()), now), now)

    # -- serving or not -----------------------------------------------------------------------------

    def _apply(self, actions, now: float) -> None:
        for a in actions:
            if isinstance(a, vm.SendAdvert):
                self._send_advert(a.priority)
            elif isinstance(a, vm.BecomeMaster):
                self._start_serving(now)
            elif isinstance(a, vm.BecomeBackup):
                self._stop_serving()
        # Every call into the state machine ends here, so every transition (init -> backup at start, a fault,
        # a takeover, a release, shutdown) is told once, also those that need no action.
        if self.machine.state != self._state_told:
            self.event_log.emit("ha_transition", state=self.machine.state, previous=self._state_told,
                                group=self.cfg.group, priority=self.cfg.priority,
                                master=_address(self.machine.master))
            self._state_told = self.machine.state

    def _start_serving(self, now: float) -> None:
        for key, mask in self._door:
            self.dp.flow_del(key, mask, DOOR_PRIORITY)
        self._door = []
        self.l3.silent_vlans.clear()
        announced = sum(self.l3.announce(vlan) for vlan in self.cfg.vlans)
        if not self.vips.serving:
            self.vips.serving = True
        self.counters["became_master"] += 1
        log.warning("ha: master of group %d (priority %d); announced %d addresses", self.cfg.group,
                    self.cfg.priority, announced)

    def _stop_serving(self) -> None:
        if not self._door:
            for port_no, port in self.ports.items():
                for vlan in self.cfg.vlans:
                    if port.carries(vlan):
                        key = FlowKey(in_port=port_no, vlan_tci=ingress_tci(port, vlan), eth_dst=self.vmac).pack()
                        self.dp.flow_put(key, MATCH_DOOR, DOOR_PRIORITY, [], cookie=COOKIE_HA)
                        self._door.append((key, MATCH_DOOR))
        self.l3.silent_vlans.update(self.cfg.vlans)
        self.vips.serving = False
        if self.machine.state != "init":
            self.counters["became_backup"] += 1
            log.warning("ha: %s of group %d (master: %s)", self.machine.state, self.cfg.group,
                        _address(self.machine.master))

    # -- show ---------------------------------------------------------------------------------------

    def show(self, now: float) -> dict:
        m = self.machine
        last = None
        if m.last_transition is not None:
            wall = time.time() - (now - m.last_transition)
            last = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).isoformat(timespec="milliseconds")
        return {"state": m.state, "priority": self.cfg.priority, "master": _address(m.master),
                "last_transition": last, "synced_conns": self.counters["sync_applied"], "group": self.cfg.group,
                "virtual_mac": mac_str(self.vmac), "advert_interval_s": self.cfg.advert_interval_s,
                "preempt": self.cfg.preempt, "released": m.released,
                "tracked_ports": dict(self._tracked), "counters": dict(self.counters)}

    def stats(self) -> dict:
        out = {f"ha_{k}": v for k, v in self.counters.items()}
        for key, value in self.receiver.counters.items():
            out.setdefault(f"ha_sync_{key}", value)
        return out


def _address(raw: bytes | None) -> str | None:
    return None if raw is None else str(ipaddress.IPv4Address(raw))


def _link_up(device: str) -> bool:
    """A port's link as the kernel sees it; a device that vanished is down."""
    try:
        with open(f"/sys/class/net/{device}/operstate") as f:
            return f.read().strip() in ("up", "unknown")
    except OSError:
        return False
