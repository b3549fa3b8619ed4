"""Flow actions as the slow path writes them: `struct ps_action` in Python form."""
from __future__ import annotations

import ipaddress
from typing import NamedTuple

from . import consts
from .flowkey import mac_str


class Action(NamedTuple):
    type: int
    arg: int = 0            # OUTPUT: port; PUSH_VLAN: TCI; SET_TP_*: the port
    arg32: int = 0          # UPCALL: userdata; LB: the VIP id
    data: bytes = b""       # SET_ETH_*: the address; SET_IPV4_*: the 4-byte address
    ports: int = 0          # FLOOD: bitmap of port numbers

    def describe(self) -> str:
        t = self.type
        if t == consts.ACT_OUTPUT:
            return f"output:{self.arg}"
        if t == consts.ACT_FLOOD:
            return "flood:" + ",".join(str(p) for p in ports_of(self.ports))
        if t == consts.ACT_SET_ETH_SRC:
            return f"set_eth_src:{mac_str(self.data[:6])}"
        if t == consts.ACT_SET_ETH_DST:
            return f"set_eth_dst:{mac_str(self.data[:6])}"
        if t == consts.ACT_PUSH_VLAN:
            return f"push_vlan:{self.arg & 0x0FFF}"
        if t == consts.ACT_POP_VLAN:
            return "pop_vlan"
        if t == consts.ACT_UPCALL:
            return f"upcall:{self.arg32}"
        if t == consts.ACT_ROUTE:
            return "route"
        if t == consts.ACT_SET_IPV4_SRC:
            return f"set_ipv4_src:{_ipv4_str(self.data)}"
        if t == consts.ACT_SET_IPV4_DST:
            return f"set_ipv4_dst:{_ipv4_str(self.data)}"
        if t == consts.ACT_SET_TP_SRC:
            return f"set_tp_src:{self.arg}"
        if t == consts.ACT_SET_TP_DST:
            return f"set_tp_dst:{self.arg}"
        if t == consts.ACT_LB:
            return f"lb:{self.arg32}"
        if t == consts.ACT_LB_REPLY:
            return "lb_reply"
        if t == consts.ACT_DECAP:
            return "decap:deliver" if self.arg & consts.DECAP_DELIVER else "decap"
        return f"unknown:{t}"


def output(port: int) -> Action:
    return Action(consts.ACT_OUTPUT, arg=port)


def flood(ports) -> Action:
    bitmap = 0
    for p in ports:
        bitmap |= 1 << p
    return Action(consts.ACT_FLOOD, ports=bitmap)


def set_eth_src(mac: bytes) -> Action:
    return Action(consts.ACT_SET_ETH_SRC, data=bytes(mac[:6]))


def set_eth_dst(mac: bytes) -> Action:
    return Action(consts.ACT_SET_ETH_DST, data=bytes(mac[:6]))


def push_vlan(vid: int, pcp: int = 0) -> Action:
    return Action(consts.ACT_PUSH_VLAN, arg=(pcp << 13) | (vid & 0x0FFF))


def pop_vlan() -> Action:
    return Action(consts.ACT_POP_VLAN)


def upcall(userdata: int = 0) -> Action:
    return Action(consts.ACT_UPCALL, arg32=userdata)


def route() -> Action:
    return Action(consts.ACT_ROUTE)


def _ipv4_str(data) -> str:
    """The address in an action's data, zero-padded like C's data[16]."""
    return str(ipaddress.IPv4Address(bytes(data[:4]).ljust(4, b"\0")))


def _ipv4(addr) -> bytes:
    """4 bytes from 4 bytes, an ipaddress.IPv4Address or dotted text."""
    if isinstance(addr, (bytes, bytearray, memoryview)):
        if len(addr) != 4:
            raise ValueError(f"an IPv4 address is 4 bytes, not {len(addr)}")
        return bytes(addr)
    return ipaddress.IPv4Address(addr).packed


def _port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"a TCP/UDP port is 0..65535, not {port!r}")
    return port


def set_ipv4_src(addr) -> Action:
    """NAT: rewrite the IPv4 source, updating the IP and TCP/UDP checksums (docs/DATAPATH.md "NAT rewrites")."""
    return Action(consts.ACT_SET_IPV4_SRC, data=_ipv4(addr))


def set_ipv4_dst(addr) -> Action:
    """NAT: rewrite the IPv4 destination, updating the IP and TCP/UDP checksums."""
    return Action(consts.ACT_SET_IPV4_DST, data=_ipv4(addr))


def set_tp_src(port: int) -> Action:
    """NAT: rewrite the TCP/UDP source port, updating the L4 checksum unless the kernel completes it."""
    return Action(consts.ACT_SET_TP_SRC, arg=_port(port))


def set_tp_dst(port: int) -> Action:
    """NAT: rewrite the TCP/UDP destination port, updating the L4 checksum unless the kernel completes it."""
    return Action(consts.ACT_SET_TP_DST, arg=_port(port))


def lb(vip_id: int) -> Action:
    """A client's packet to VIP `vip_id`: rewrite it by its connection and route it; no connection: a CONN_MISS
    upcall with the VIP id (docs/DATAPATH.md "Connection table")."""
    if isinstance(vip_id, bool) or not isinstance(vip_id, int) or not 0 <= vip_id <= 0xFFFFFFFF:
        raise ValueError(f"a VIP id is 0..{0xFFFFFFFF}, not {vip_id!r}")
    return Action(consts.ACT_LB, arg32=vip_id)


def lb_reply() -> Action:
    """A backend's packet toward a client: undo its connection's NAT and route it; no connection: route it as is."""
    return Action(consts.ACT_LB_REPLY)


def decap(deliver: bool = False) -> Action:
    """Strip the outer IPv4 (+GRE) header of an IPIP or GRE packet; anything else is dropped (decap_errors).
    deliver: a later ROUTE takes the inner packet to the tunnel's outer destination (a tunnel endpoint in
    front of hosts that cannot decapsulate), not to the inner destination."""
    return Action(consts.ACT_DECAP, arg=consts.DECAP_DELIVER if deliver else 0)


def ports_of(bitmap: int) -> list[int]:
    return [p for p in range(consts.MAX_PORTS) if bitmap >> p & 1]


def describe(actions) -> str:
    return ",".join(a.describe() for a in actions) or "drop"
