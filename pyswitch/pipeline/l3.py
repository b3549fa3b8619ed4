"""L3: routed VLAN interfaces (SVIs), static routes, ARP and ICMP.

The stage decides; the datapath routes.  At start it writes the routing tables into the datapath
(next hops, prefixes, the switch's own /32s) and, on every port of a routed VLAN, flows that send
IPv4 addressed to the switch's MAC to the ROUTE action and ARP to the slow path.  From then on:

    ROUTE upcall NO_ROUTE   -> ICMP destination unreachable (net) to the sender
    ROUTE upcall TTL        -> ICMP time exceeded, from the interface the packet came in on
    ROUTE upcall LOCAL      -> echo reply for ping; port unreachable for UDP; others dropped
    ROUTE upcall NO_NEIGH   -> the packet waits (bounded) while the switch asks by ARP; the answer
                               becomes a neighbor entry in the datapath and the waiting packets go
    ARP                     -> answered when it asks for the switch; senders are learned

Packets the switch originates are built as frames addressed to itself and handed to the datapath
with the ROUTE action, so they find their way exactly like transit traffic.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import struct

from .. import actions as act
from .. import consts
from ..flowkey import FlowKey, mac_bytes, mac_str
from ..refpath.actions import Vnet
from . import packets as pk
from .arp_table import ArpTable
from .rate_limit import TokenBucket
from .vlan import classify, flood_actions, ingress_tci, output_actions

log = logging.getLogger("pyswitch.l3")

ROUTE_PRIORITY = 200        # routed and ARP-to-us flows: above L2's learned flows
DECAP_PRIORITY = 250        # tunnels this switch terminates for a VLAN's hosts: before plain routing
ARP_PRIORITY = 150          # broadcast ARP comes up (and is flooded by L2 after the stage looked at it)
COOKIE_L3 = 2 << 60         # cookie tag of flows this stage installs
USERDATA_ARP = 1            # UPCALL action userdata: "this is ARP"
NH_LOCAL_ID = 1             # the next hop of the switch's own addresses
FROM_SWITCH = 0xFFFF        # the input port of frames the switch originates: no port, so floods skip none
VNET_NONE = bytes(consts.VNET_HDR_SIZE)

MATCH_IP = FlowKey.mask_of("in_port", "vlan_tci", "eth_dst", "eth_type", vlan_vid_only=True)
TUNNEL_PROTOCOLS = (4, 47)  # IPIP (RFC 2003) and GRE (RFC 2784)


def match_tunnel_to(network: ipaddress.IPv4Network) -> bytes:
    """The mask of a decap flow: MATCH_IP, the IP protocol and the destination's prefix."""
    mask = FlowKey.unpack(FlowKey.mask_of("in_port", "vlan_tci", "eth_dst", "eth_type", "nw_proto",
                                          vlan_vid_only=True))
    return mask._replace(nw_dst=network.netmask.packed + bytes(12)).pack()


def _addr16(ip: bytes) -> bytes:
    return ip + bytes(12)


def _encapsulate(frame: bytes, proto: int, src: bytes, dst: bytes) -> bytes:
    """`frame` (Ethernet + an IPv4 packet) with the packet wrapped in an IPIP or GRE (RFC 2784) header."""
    _eth_type, inner = pk.strip_ethernet(frame)
    payload = inner if proto == 4 else struct.pack("!HH", 0, consts.ETH_TYPE_IPV4) + inner
    return frame[:len(frame) - len(inner)] + pk.ipv4(src, dst, proto, payload)


class Svi:
    """The switch's routed interface on one VLAN."""

    def __init__(self, vlan_id: int, interface: ipaddress.IPv4Interface, mac: bytes, decap: bool = False):
        self.vlan = vlan_id
        self.decap = decap          # terminate tunnels routed to this subnet's hosts
        self.interface = interface
        self.ip = interface.ip.packed
        self.network = interface.network
        self.mac = mac


def derived_mac(switch_name: str, vlan: int) -> bytes:
    """A locally administered MAC per switch and VLAN, stable across restarts."""
    digest = hashlib.blake2s(switch_name.encode(), digest_size=2).digest()
    return bytes([0x02, 0x50]) + digest + struct.pack("!H", vlan)


class L3Stage:
    def __init__(self, config, ports: dict, datapath, l2_stage):
        self.ports = ports                      # port_no -> PortConfig
        self.dp = datapath
        self.l2 = l2_stage
        s = config.switch
        self.arp = ArpTable(s.arp_max_entries, s.arp_reachable_s, s.arp_retries, s.arp_queue, s.arp_queue_total)
        self.arp_rate = s.arp_rate_per_port         # ARP packets a second a port may bring up (0: no limit)
        self._arp_buckets: dict[int, TokenBucket] = {}   # port_no -> its ARP allowance
        self.svis: dict[int, Svi] = {}
        for v in config.vlans:
            mac = mac_bytes(v.mac) if v.mac else derived_mac(s.name, v.id)
            self.svis[v.id] = Svi(v.id, v.address, mac, v.decap)
        self.static: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = {r.prefix: r.via for r in config.routes}
        self._gateway_nh: dict[ipaddress.IPv4Address, int] = {}   # via -> next-hop id
        self._connected_nh: dict[int, int] = {}                    # vlan -> next-hop id
        self._nh_info: dict[int, tuple[int, int, bytes]] = {}      # id -> (kind, vlan, gateway)
        self._next_nh = NH_LOCAL_ID + 1
        self.local_addresses: set[bytes] = set()    # besides the SVIs': the VIPs, also answered to ARP
        self.local_handlers: list = []               # (ip_packet, now) -> bool: offered LOCAL packets first
        self.silent_vlans: set[int] = set()          # VLANs whose addresses a standby holds but must not claim (HA)
        self.counters = {"icmp_echo_replies": 0, "icmp_time_exceeded": 0, "icmp_net_unreachable": 0,
                         "icmp_host_unreachable": 0, "icmp_port_unreachable": 0, "local_dropped": 0,
                         "arp_rate_limited": 0, "route_refused": 0, "neigh_refused": 0}
        l2_stage.move_listeners.append(self.mac_moved)

    @property
    def enabled(self) -> bool:
        return bool(self.svis)

    # -- writing the tables into the datapath ---------------------------------------

    def install(self) -> None:
        if not self.svis:
            return
        self.dp.nexthop_set(NH_LOCAL_ID, consts.NH_LOCAL, 0)
        self._nh_info[NH_LOCAL_ID] = (consts.NH_LOCAL, 0, b"")
        for vlan, svi in self.svis.items():
            nh = self._new_nh(consts.NH_CONNECTED, vlan, b"", svi.mac)
            self._connected_nh[vlan] = nh
            self.dp.route_add(svi.network.network_address.packed, svi.network.prefixlen, nh)
            self.dp.route_add(svi.ip, 32, NH_LOCAL_ID)
        for prefix, via in self.static.items():
            self.dp.route_add(prefix.network_address.packed, prefix.prefixlen, self._gateway(via))
        for port_no, port in self.ports.items():
            for vlan, svi in self.svis.items():
                if port.carries(vlan):
                    self._install_port_flows(port_no, port, svi)

    def _new_nh(self, kind: int, vlan: int, gateway: bytes, src_mac: bytes) -> int:
        nh = self._next_nh
        if nh >= consts.MAX_NEXTHOPS:
            raise ValueError(f"too many next hops (at most {consts.MAX_NEXTHOPS - 1})")
        self._next_nh += 1
        self.dp.nexthop_set(nh, kind, vlan, gateway=_addr16(gateway) if gateway else b"", src_mac=src_mac)
        self._nh_info[nh] = (kind, vlan, gateway)
        return nh

    def _gateway(self, via: ipaddress.IPv4Address) -> int:
        if via not in self._gateway_nh:
            svi = self._svi_for(via)
            self._gateway_nh[via] = self._new_nh(consts.NH_GATEWAY, svi.vlan, via.packed, svi.mac)
        return self._gateway_nh[via]

    def _svi_for(self, address: ipaddress.IPv4Address) -> Svi:
        for svi in self.svis.values():
            if address in svi.network:
                return svi
        raise ValueError(f"{address} is not in the subnet of any VLAN interface")

    def _install_port_flows(self, port_no: int, port, svi: Svi) -> None:
        tci = ingress_tci(port, svi.vlan)
        to_us = FlowKey(in_port=port_no, vlan_tci=tci, eth_dst=svi.mac, eth_type=consts.ETH_TYPE_IPV4)
        self.dp.flow_put(to_us.pack(), MATCH_IP, ROUTE_PRIORITY, [act.Action(consts.ACT_ROUTE)],
                         cookie=COOKIE_L3 | svi.vlan)
        arp_to_us = FlowKey(in_port=port_no, vlan_tci=tci, eth_dst=svi.mac, eth_type=consts.ETH_TYPE_ARP)
        self.dp.flow_put(arp_to_us.pack(), MATCH_IP, ROUTE_PRIORITY, [act.upcall(USERDATA_ARP)],
                         cookie=COOKIE_L3 | svi.vlan)
        arp_bcast = FlowKey(in_port=port_no, vlan_tci=tci, eth_dst=pk.BROADCAST, eth_type=consts.ETH_TYPE_ARP)
        self.dp.flow_put(arp_bcast.pack(), MATCH_IP, ARP_PRIORITY, [act.upcall(USERDATA_ARP)],
                         cookie=COOKIE_L3 | svi.vlan)
        for endpoint in (s for s in self.svis.values() if s.decap):
            # Tunnels routed to a host of a decap VLAN end here: the inner packet goes on to that host as the
            # tunnel's sender wrote it (e.g. to a VIP the host holds), as if the host had decapsulated it.
            for proto in TUNNEL_PROTOCOLS:
                tunnel = FlowKey(in_port=port_no, vlan_tci=tci, eth_dst=svi.mac, eth_type=consts.ETH_TYPE_IPV4,
                                 nw_proto=proto, nw_dst=endpoint.network.network_address.packed + bytes(12))
                self.dp.flow_put(tunnel.pack(), match_tunnel_to(endpoint.network), DECAP_PRIORITY,
                                 [act.decap(deliver=True), act.Action(consts.ACT_ROUTE)],
                                 cookie=COOKIE_L3 | svi.vlan)

    def add_local_address(self, address: bytes) -> None:
        """Makes `address` (a VIP) one of the switch's own: routed to LOCAL, and ARP for it is answered
        on the VLAN whose subnet holds it."""
        self.local_addresses.add(address)
        self.dp.route_add(address, 32, NH_LOCAL_ID)

    def source_address_toward(self, address: bytes) -> bytes:
        """The switch's address that packets to `address` should come from: the SVI on its subnet, else
        the first SVI (what a Linux host picks for a route without a preferred source)."""
        ip = ipaddress.IPv4Address(address)
        for svi in self.svis.values():
            if ip in svi.network:
                return svi.ip
        for prefix, via in self.static.items():
            if ip in prefix:
                return self._svi_for(via).ip
        return next(iter(self.svis.values())).ip

    # -- runtime route changes (the control socket) --------------------------------------

    def route_add(self, prefix: str, via: str) -> None:
        network, gateway = ipaddress.IPv4Network(prefix), ipaddress.IPv4Address(via)
        if any(gateway == s.interface.ip for s in self.svis.values()):
            raise ValueError(f"{via} is the switch's own address")
        nh = self._gateway(gateway)
        try:
            self.dp.route_add(network.network_address.packed, network.prefixlen, nh)
        except OSError as exc:
            self.counters["route_refused"] += 1     # the LPM table is full (65536 rules, 4096 tbl8 groups)
            raise ValueError(f"the routing table refused {network}: {exc.strerror}") from None
        self.static[network] = gateway

    def route_del(self, prefix: str) -> None:
        network = ipaddress.IPv4Network(prefix)
        if network not in self.static:
            raise ValueError(f"no static route to {network}")
        del self.static[network]
        self.dp.route_del(network.network_address.packed, network.prefixlen)

    # -- upcalls ----------------------------------------------------------------------------------

    def handle(self, upcall, now: float) -> bool:
        """Takes the upcalls that are the stage's; returns False for those it leaves to L2."""
        reason = upcall.reason
        if reason == consts.UPCALL_ACTION and upcall.userdata == USERDATA_ARP:
            if not self._arp_allowed(upcall.in_port, now):
                # A storm beyond the port's allowance: dropped before anything is parsed, neither answered,
                # learned nor flooded, so that it costs the slow path as little as it can.
                self.counters["arp_rate_limited"] += 1
                return True
            key = FlowKey.unpack(upcall.key)
            self._arp(upcall, key, now)
            return not (key.eth_dst[0] & 1)       # broadcast ARP also goes on to L2 to be flooded
        if reason == consts.UPCALL_NO_NEIGH:
            self._no_neighbor(upcall, now)
        elif reason == consts.UPCALL_TTL:
            self._icmp_error(upcall, pk.ICMP_TIME_EXCEEDED, 0, "icmp_time_exceeded")
        elif reason == consts.UPCALL_NO_ROUTE:
            self._icmp_error(upcall, pk.ICMP_UNREACHABLE, 0, "icmp_net_unreachable")
        elif reason == consts.UPCALL_LOCAL:
            self._local(upcall, now)
        else:
            return False
        return True

    def _arp_allowed(self, port_no: int, now: float) -> bool:
        if not self.arp_rate:
            return True
        bucket = self._arp_buckets.get(port_no)
        if bucket is None:
            bucket = self._arp_buckets[port_no] = TokenBucket(self.arp_rate, self.arp_rate, now)
        return bucket.allow(now)

    def _vlan_of(self, upcall, key: FlowKey) -> int | None:
        port = self.ports.get(upcall.in_port)
        return classify(port, key.vlan_tci) if port is not None else None

    def _arp(self, upcall, key: FlowKey, now: float) -> None:
        vlan = self._vlan_of(upcall, key)
        svi = self.svis.get(vlan)
        eth_type, payload = pk.strip_ethernet(upcall.data)
        if svi is None or eth_type != consts.ETH_TYPE_ARP or len(payload) < 28:
            return
        op, sha, spa, tpa = struct.unpack_from("!6xH6s4s6x4s", payload)
        if spa == svi.ip:
            if sha != svi.mac:
                self.arp.counters["arp_spoofed"] += 1    # someone claims the switch's address: ignore
                log.warning("ARP from %s on VLAN %d claims the switch's address %s", mac_str(sha), vlan,
                            svi.interface.ip)
            return
        if spa == bytes(4) or ipaddress.IPv4Address(spa) not in svi.network or sha[0] & 1:
            return
        answers = vlan not in self.silent_vlans and (tpa == svi.ip or (tpa in self.local_addresses
                                                                       and ipaddress.IPv4Address(tpa) in svi.network))
        if answers and op == pk.ARP_REQUEST:
            changed, pending = self.arp.resolved(vlan, spa, sha, upcall.in_port, now)
        elif answers:
            changed, pending = self.arp.answered(vlan, spa, sha, upcall.in_port, now)
        else:
            changed, pending = self.arp.refresh(vlan, spa, sha, upcall.in_port, now), []
        if changed:
            self._write_neighbor(vlan, spa, sha, upcall.in_port)
        for in_port, frame, vnet, _key, actions in pending:
            self.dp.execute(in_port, frame, vnet, actions)
        if op == pk.ARP_REQUEST and answers:
            reply = pk.ethernet(sha, svi.mac, consts.ETH_TYPE_ARP,
                                pk.arp(pk.ARP_REPLY, svi.mac, tpa, sha, spa))
            port = self.ports[upcall.in_port]
            self.dp.execute(upcall.in_port, reply, VNET_NONE, output_actions(port, upcall.in_port, vlan, False))
            self.arp.counters["arp_replies_sent"] += 1

    def _write_neighbor(self, vlan: int, ip: bytes, mac: bytes, port_no: int) -> None:
        port = self.ports[port_no]
        out_tci = vlan if port.tagged_on_egress(vlan) else 0
        try:
            self.dp.neigh_set(vlan, _addr16(ip), mac, port_no, out_tci)
        except OSError:
            # The datapath's neighbor table is full (MAX_NEIGHS): the packets to it come up as NO_NEIGH again,
            # and the entry is written once room is made.  Counted, never a crash of the slow path.
            self.counters["neigh_refused"] += 1

    def mac_moved(self, vlan: int, mac: bytes, port_no: int) -> None:
        for (entry_vlan, ip), entry in self.arp.entries():
            if entry_vlan == vlan and entry.mac == mac and entry.port_no != port_no:
                entry.port_no = port_no
                self._write_neighbor(vlan, ip, mac, port_no)

    def forget_port(self, port_no: int) -> None:
        """The port's interface is gone: its neighbors are forgotten here and in the datapath, so that the next
        packet toward one of them asks by ARP again (whoever answers, behind whichever port, with whatever MAC)."""
        for (vlan, ip), entry in self.arp.entries():
            if entry.port_no == port_no and entry.mac is not None:
                self.arp.forget(vlan, ip)
                self.dp.neigh_del(vlan, _addr16(ip))

    def _no_neighbor(self, upcall, now: float) -> None:
        key = FlowKey.unpack(upcall.key)
        destination = key.nw_dst[:4]
        if key.nw_proto in TUNNEL_PROTOCOLS and self._decapsulates_for(destination):
            # A tunnel this switch ends waits for its host's MAC: the frame that came up is already the
            # inner packet, so it is wrapped again to go through the same DECAP once the MAC is known.
            frame = _encapsulate(upcall.data, key.nw_proto, key.nw_src[:4], destination)
            vnet = Vnet(upcall.vnet)
            vnet.grow(len(frame) - len(upcall.data))       # the checksum offsets move behind the new header
            self.resolve(upcall, now, destination, [act.decap(deliver=True), act.Action(consts.ACT_ROUTE)],
                         (frame, vnet.pack()))
            return
        self.resolve(upcall, now, destination, [act.Action(consts.ACT_ROUTE)])

    def _decapsulates_for(self, address: bytes) -> bool:
        ip = ipaddress.IPv4Address(address)
        return any(svi.decap and ip in svi.network for svi in self.svis.values())

    def resolve(self, upcall, now: float, destination: bytes, actions: list, packet: tuple | None = None) -> None:
        """A NO_NEIGH upcall: ask for the next hop's MAC (the gateway, or `destination` on a connected
        subnet) and hold the packet (`packet` = (frame, vnet), by default the upcall's), to be sent again
        with `actions` once the answer is in."""
        frame, vnet = packet or (upcall.data, upcall.vnet)
        info = self._nh_info.get(upcall.userdata)
        if info is None:
            return
        kind, vlan, gateway = info
        target = gateway if kind == consts.NH_GATEWAY else destination
        entry = self.arp.want(vlan, target, now)
        if entry is None:
            return
        if entry.mac is not None:
            # Resolved between the upcall and now: the datapath knows the neighbor, send it again.
            self.dp.execute(upcall.in_port, frame, vnet, actions)
            return
        self.arp.hold(entry, (upcall.in_port, frame, vnet, upcall.key, actions))
        if entry.tries == 0:
            entry.tries, entry.next_try = 1, now + 1.0
            self._send_arp_request(vlan, target, None)

    def _send_arp_request(self, vlan: int, target: bytes, entry) -> None:
        if vlan in self.silent_vlans:
            return
        svi = self.svis[vlan]
        if entry is not None and entry.mac is not None:      # probing a known neighbor: ask it directly
            frame = pk.ethernet(entry.mac, svi.mac, consts.ETH_TYPE_ARP,
                                pk.arp(pk.ARP_REQUEST, svi.mac, svi.ip, entry.mac, target))
            actions = output_actions(self.ports[entry.port_no], entry.port_no, vlan, False)
        else:
            frame = pk.ethernet(pk.BROADCAST, svi.mac, consts.ETH_TYPE_ARP,
                                pk.arp(pk.ARP_REQUEST, svi.mac, svi.ip, bytes(6), target))
            actions = flood_actions(self.ports, None, vlan, False)
        if actions:
            self.dp.execute(FROM_SWITCH, frame, VNET_NONE, actions)
        self.arp.counters["arp_requests_sent"] += 1

    def announce(self, vlan: int) -> int:
        """Gratuitous ARP (RFC 5227 announcement) for the VLAN's address and the VIPs in its subnet, so that
        hosts and bridges move them to this switch at once (an HA takeover).  Returns how many were sent."""
        svi = self.svis[vlan]
        addresses = [svi.ip] + sorted(a for a in self.local_addresses if ipaddress.IPv4Address(a) in svi.network)
        actions = flood_actions(self.ports, None, vlan, False)
        if actions:
            for address in addresses:
                frame = pk.ethernet(pk.BROADCAST, svi.mac, consts.ETH_TYPE_ARP,
                                    pk.arp(pk.ARP_REQUEST, svi.mac, address, bytes(6), address))
                self.dp.execute(FROM_SWITCH, frame, VNET_NONE, actions)
        self.arp.counters["gratuitous_arp_sent"] += len(addresses)
        return len(addresses)

    def timers(self, now: float) -> None:
        for vlan, ip, entry, what in self.arp.due(now):
            if what == "request":
                self._send_arp_request(vlan, ip, entry)
                continue
            if entry.mac is not None:
                self.dp.neigh_del(vlan, _addr16(ip))
            log.info("neighbor %s on VLAN %d does not answer ARP", ipaddress.IPv4Address(ip), vlan)
            for in_port, frame, _vnet, key, _actions in entry.pending:
                self._icmp_error_for(in_port, frame, key, pk.ICMP_UNREACHABLE, 1, "icmp_host_unreachable")

    # -- ICMP -------------------------------------------------------------------------------------

    def _icmp_error(self, upcall, icmp_type: int, code: int, counter: str) -> None:
        self._icmp_error_for(upcall.in_port, upcall.data, upcall.key, icmp_type, code, counter)

    def _icmp_error_for(self, in_port: int, frame: bytes, key_bytes: bytes, icmp_type: int, code: int,
                        counter: str) -> None:
        key = FlowKey.unpack(key_bytes)
        svi = self.svis.get(self._vlan_of_port(in_port, key))
        eth_type, ip_packet = pk.strip_ethernet(frame)
        if svi is None or eth_type != consts.ETH_TYPE_IPV4:
            return
        ihl, proto, src, _dst = pk.ip_header_fields(ip_packet)
        if proto == pk.IP_PROTO_ICMP and len(ip_packet) > ihl and ip_packet[ihl] not in (0, 8, 13, 15, 17):
            return      # never an ICMP error about an ICMP error (RFC 1122 3.2.2)
        if key.nw_frag & consts.FRAG_LATER:
            return      # only about the first fragment
        message = pk.icmp_error(icmp_type, code, ip_packet)
        self._send_ip(svi, src, pk.IP_PROTO_ICMP, message)
        self.counters[counter] += 1

    def _local(self, upcall, now: float) -> None:
        key = FlowKey.unpack(upcall.key)
        svi = self.svis.get(self._vlan_of(upcall, key))
        eth_type, ip_packet = pk.strip_ethernet(upcall.data)
        if svi is None or eth_type != consts.ETH_TYPE_IPV4:
            return
        ihl, proto, src, dst = pk.ip_header_fields(ip_packet)
        total = struct.unpack_from("!H", ip_packet, 2)[0]
        ip_packet = ip_packet[:total]
        body = ip_packet[ihl:]
        if not key.nw_frag and any(handler(ip_packet, now) for handler in self.local_handlers):
            return
        if proto == pk.IP_PROTO_ICMP and len(body) >= 8 and body[0] == pk.ICMP_ECHO_REQUEST \
                and not key.nw_frag:
            reply = pk.icmp(pk.ICMP_ECHO_REPLY, 0, body[4:])
            self._send_ip(svi, src, pk.IP_PROTO_ICMP, reply, source=dst)
            self.counters["icmp_echo_replies"] += 1
        elif proto == pk.IP_PROTO_UDP:
            self._icmp_error(upcall, pk.ICMP_UNREACHABLE, 3, "icmp_port_unreachable")
        else:
            self.counters["local_dropped"] += 1

    def send_ip(self, dst: bytes, proto: int, payload: bytes, source: bytes) -> None:
        """Originate an IPv4 packet from `source` (an address of the switch, or a VIP)."""
        self._send_ip(next(iter(self.svis.values())), dst, proto, payload, source=source)

    def send_packet(self, ip_packet: bytes) -> None:
        """Originate a complete IPv4 packet (the health checker's probes) through the datapath."""
        svi = next(iter(self.svis.values()))
        frame = pk.ethernet(svi.mac, svi.mac, consts.ETH_TYPE_IPV4, ip_packet)
        self.dp.execute(FROM_SWITCH, frame, VNET_NONE, [act.Action(consts.ACT_ROUTE)])

    def _send_ip(self, svi: Svi, dst: bytes, proto: int, payload: bytes, source: bytes | None = None) -> None:
        """Originate an IPv4 packet: address it to ourselves at L2 and let ROUTE deliver it. The TTL starts
        one higher because ROUTE takes one off, as for every routed packet."""
        packet = pk.ipv4(source or svi.ip, dst, proto, payload, ttl=pk.DEFAULT_TTL + 1)
        frame = pk.ethernet(svi.mac, svi.mac, consts.ETH_TYPE_IPV4, packet)
        self.dp.execute(FROM_SWITCH, frame, VNET_NONE, [act.Action(consts.ACT_ROUTE)])

    def _vlan_of_port(self, in_port: int, key: FlowKey) -> int | None:
        port = self.ports.get(in_port)
        return classify(port, key.vlan_tci) if port is not None else None

    # -- show -------------------------------------------------------------------------------------

    def show_routes(self) -> list[dict]:
        rows = []
        for svi in self.svis.values():
            rows.append({"prefix": str(svi.network), "via": None, "vlan": svi.vlan, "kind": "connected"})
            rows.append({"prefix": f"{svi.interface.ip}/32", "via": None, "vlan": svi.vlan, "kind": "local"})
        for prefix, via in self.static.items():
            rows.append({"prefix": str(prefix), "via": str(via), "vlan": self._svi_for(via).vlan,
                         "kind": "static"})
        rows.sort(key=lambda r: (-ipaddress.IPv4Network(r["prefix"]).prefixlen, r["prefix"]))
        return rows

    def show_arp(self, now: float) -> list[dict]:
        rows = []
        for (vlan, ip), entry in self.arp.entries():
            rows.append({"address": str(ipaddress.IPv4Address(ip)), "mac": mac_str(entry.mac) if entry.mac else None,
                         "vlan": vlan, "state": entry.state, "age_s": round(now - entry.updated, 1),
                         "port": entry.port_no})
        rows.sort(key=lambda r: (r["vlan"], ipaddress.IPv4Address(r["address"])))
        return rows

    def stats(self) -> dict:
        out = dict(self.counters)
        out.update(self.arp.stats())
        out["arp_rate_per_port"] = self.arp_rate
        out["max_neighbors"] = consts.MAX_NEIGHS
        return out
