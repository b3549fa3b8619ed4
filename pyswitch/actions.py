"""Flow actions as the slow path writes them: `struct ps_action` in Python form."""
from __future__ import annotations

from typing import NamedTuple

from . import consts
from .flowkey import mac_str


class Action(NamedTuple):
    type: int
    arg: int = 0            # OUTPUT: port; PUSH_VLAN: TCI
    arg32: int = 0          # UPCALL: userdata
    data: bytes = b""       # SET_ETH_*: the address
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


def ports_of(bitmap: int) -> list[int]:
    return [p for p in range(consts.MAX_PORTS) if bitmap >> p & 1]


def describe(actions) -> str:
    return ",".join(a.describe() for a in actions) or "drop"
