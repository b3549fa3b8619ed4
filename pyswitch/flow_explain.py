"""A fast-path flow said in words: "from port p1 VLAN 10 02:00:00:00:00:11 -> 02:00:00:00:00:12: output to p2".

`show flows` and `trace` use it.  Ports are named by their config names and VIPs by theirs, which the datapath
does not know: the caller passes `Names`.  Only the fields the mask covers are said; a mask that covers a field
partly (a prefix) is said with its width.
"""
from __future__ import annotations

import ipaddress
from typing import NamedTuple

from . import consts
from .actions import ports_of
from .flowkey import FlowKey, mac_str
from .pipeline.vlan import classify

# The slow path's own UPCALL userdata values (pipeline/l3.py, vip.py, ha.py), named for people.
UPCALL_PURPOSES = {0: "the slow path", 1: "the slow path (ARP)", 2: "the slow path (ICMP from a backend)",
                   3: "the slow path (VRRP advert)", 4: "the slow path (HA connection sync)"}
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 4: "IPIP", 112: "VRRP", 58: "ICMPv6"}
ETH_TYPES = {consts.ETH_TYPE_IPV4: "IPv4", consts.ETH_TYPE_ARP: "ARP", consts.ETH_TYPE_IPV6: "IPv6"}


class Names(NamedTuple):
    ports: dict          # port number -> config name
    vips: dict           # VIP id -> name
    configs: dict = {}   # port number -> PortConfig: an untagged frame's VLAN is its access port's
    vip_addresses: dict = {}   # 4-byte address -> VIP name
    own_macs: dict = {}        # the switch's own MACs (its VLAN interfaces'), -> VLAN id

    def vlan(self, port_no: int | None, vlan_tci: int) -> str:
        """The VLAN a frame with this tag (or none) is in, said as the L2 stage classifies it."""
        tagged = bool(vlan_tci & consts.VLAN_PRESENT)
        config = self.configs.get(port_no) if port_no is not None else None
        if config is None:
            return f"VLAN {vlan_tci & 0x0FFF}" if tagged else "untagged"
        vid = classify(config, vlan_tci)
        if vid is None:
            return f"VLAN {vlan_tci & 0x0FFF} (not carried here)" if tagged else "untagged (not carried here)"
        return f"VLAN {vid}" + (" tagged" if tagged and not config.is_trunk else "")

    def port(self, port_no: int) -> str:
        return self.ports.get(port_no, f"port #{port_no}")

    def vip(self, vip_id: int) -> str:
        name = self.vips.get(vip_id)
        return f"VIP {name}" if name else f"VIP #{vip_id}"


def explain_flow(key: bytes, mask: bytes, actions, names: Names) -> str:
    return f"{explain_match(key, mask, names)}: {explain_actions(actions, names)}"


def explain_match(key: bytes, mask: bytes, names: Names) -> str:
    """The fields the mask covers, in groups: where the packet comes from, what it is, its MACs, its IP
    addresses and ports, anything else; "every packet" for an empty mask."""
    k, m = FlowKey.unpack(key), FlowKey.unpack(mask)
    ipv6 = m.eth_type and k.eth_type == consts.ETH_TYPE_IPV6
    where, what, extra = [], [], []
    if m.in_port:
        where.append(f"from {names.port(k.in_port)}")
    if m.vlan_tci & 0x0FFF:
        where.append(names.vlan(k.in_port if m.in_port else None, k.vlan_tci))
    elif m.vlan_tci & consts.VLAN_PRESENT:
        where.append("tagged" if k.vlan_tci & consts.VLAN_PRESENT else "untagged")
    if m.eth_type:
        what.append(ETH_TYPES.get(k.eth_type, f"ethertype 0x{k.eth_type:04x}"))
    if m.nw_proto:
        what.append(PROTOCOLS.get(k.nw_proto, f"protocol {k.nw_proto}"))
    macs = _between(_mac(k.eth_src, m.eth_src, names), _mac(k.eth_dst, m.eth_dst, names))
    addresses = _between(_endpoint(k.nw_src, m.nw_src, k.tp_src, m.tp_src, ipv6, names),
                         _endpoint(k.nw_dst, m.nw_dst, k.tp_dst, m.tp_dst, ipv6, names))
    if m.nw_ttl:
        extra.append(f"TTL {k.nw_ttl}")
    if m.tcp_flags:
        extra.append(f"TCP flags 0x{k.tcp_flags & m.tcp_flags:03x}/0x{m.tcp_flags:03x}")
    if m.nw_frag:
        extra.append(f"fragment bits {k.nw_frag}")
    groups = [" ".join(where), " ".join(what), macs, addresses, " ".join(extra)]
    return ", ".join(g for g in groups if g) or "every packet"


def _between(src: str | None, dst: str | None) -> str:
    """"A -> B", "from A" or "to B" for the sides a flow matches on, "" for neither."""
    if src and dst:
        return f"{src} -> {dst}"
    if src:
        return f"from {src}"
    return f"to {dst}" if dst else ""


def _mac(value: bytes, mask: bytes, names: Names) -> str | None:
    if mask == bytes(6):
        return None
    if mask == b"\xff" * 6:
        if value == b"\xff" * 6:
            return "broadcast"
        if value in names.own_macs:
            return f"the switch's MAC {mac_str(value)}"
        return mac_str(value)
    if mask == b"\x01" + bytes(5):
        return "multicast" if value[0] & 1 else "unicast"
    return f"{mac_str(value)}/{mac_str(mask)}"


def _endpoint(addr: bytes, addr_mask: bytes, port: int, port_mask: int, ipv6: bool, names: Names) -> str | None:
    if addr_mask == bytes(16) and not port_mask:
        return None
    if addr_mask == bytes(16):
        text = "any"
    else:
        width = 16 if ipv6 else 4
        bits = int.from_bytes(addr_mask[:width], "big")
        plen = bin(bits).count("1")
        ip = ipaddress.IPv6Address(addr) if ipv6 else ipaddress.IPv4Address(addr[:4])
        text = str(ip) if plen == width * 8 else f"{ip}/{plen}"
    if port_mask:
        text = f"[{text}]:{port}" if ipv6 else f"{text}:{port}"
    vip = names.vip_addresses.get(bytes(addr[:4])) if not ipv6 and addr_mask[:4] == b"\xff" * 4 else None
    return f"VIP {vip} {text}" if vip else text


def explain_actions(actions, names: Names) -> str:
    """The action list in words, in order; an empty list is a drop."""
    words = [explain_action(a, names) for a in actions]
    return ", then ".join(words) if words else "drop"


def explain_action(a, names: Names) -> str:
    t = a.type
    if t == consts.ACT_OUTPUT:
        return f"output to {names.port(a.arg)}"
    if t == consts.ACT_FLOOD:
        return "flood to " + ",".join(names.port(p) for p in ports_of(a.ports)) + " (never back to the input)"
    if t == consts.ACT_PUSH_VLAN:
        return f"tag VLAN {a.arg & 0x0FFF}"
    if t == consts.ACT_POP_VLAN:
        return "remove the VLAN tag"
    if t == consts.ACT_SET_ETH_SRC:
        return f"set source MAC {mac_str(a.data[:6])}"
    if t == consts.ACT_SET_ETH_DST:
        return f"set destination MAC {mac_str(a.data[:6])}"
    if t == consts.ACT_SET_IPV4_SRC:
        return f"set source IP {_ipv4(a.data)}"
    if t == consts.ACT_SET_IPV4_DST:
        return f"set destination IP {_ipv4(a.data)}"
    if t == consts.ACT_SET_TP_SRC:
        return f"set source port {a.arg}"
    if t == consts.ACT_SET_TP_DST:
        return f"set destination port {a.arg}"
    if t == consts.ACT_UPCALL:
        return "send to " + UPCALL_PURPOSES.get(a.arg32, f"the slow path (userdata {a.arg32})")
    if t == consts.ACT_ROUTE:
        return "route (longest-prefix match, TTL - 1, next hop's MACs)"
    if t == consts.ACT_LB:
        return f"load-balance ({names.vip(a.arg32)}: by its connection, a new one to the scheduler)"
    if t == consts.ACT_LB_REPLY:
        return "undo a VIP connection's NAT (a backend's reply) and route"
    if t == consts.ACT_DECAP:
        return "decapsulate IPIP/GRE" + (" and deliver to the tunnel's end" if a.arg & consts.DECAP_DELIVER else "")
    return f"unknown action {t}"


def _ipv4(data) -> ipaddress.IPv4Address:
    """The address in an action's data, zero-padded as C's data[16] is."""
    return ipaddress.IPv4Address(bytes(data[:4]).ljust(4, b"\0"))
