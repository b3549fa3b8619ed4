"""The datapath's routing tables and the ROUTE action: the twin of csrc/route.c (docs/DATAPATH.md "Routing").

The slow path fills the tables; `RouteTables.route` does the per-packet work of steps 1-6 on a working frame and
says what became of it. It checks everything before it writes anything, so a frame that goes up to the slow path
or is dropped is exactly the frame ROUTE was given. The checks are `decide` and the writing `rewrite`: LB
(conntrack.py) decides on the addresses a packet will have and rewrites it only once it is known to be forwarded.
"""
from __future__ import annotations

import errno
from typing import NamedTuple

from .. import consts
from ..datapath_args import addr16, mac6
from .actions import ETH_HDR_LEN, Vnet, pop_vlan, push_vlan
from .csum import csum_update16
from .lpm import Lpm
from .nat import ipv4_offset

MAX_ROUTES = 65536          # the datapath's LPM bounds, as csrc/route.h sets them
MAX_TBL8 = 4096
MAX_VID = 4095              # largest VLAN id
_VLAN_TPIDS = (consts.ETH_TYPE_VLAN, consts.ETH_TYPE_QINQ)

FORWARD, DROP, UPCALL = "forward", "drop", "upcall"     # verdicts of RouteTables.route


class NextHop(NamedTuple):
    kind: int               # consts.NH_*
    vlan: int               # the egress VLAN id
    gateway: bytes          # 16 bytes: GATEWAY's address, IPv4 in the first 4
    src_mac: bytes          # our MAC on that VLAN: the routed frame's new source


class Neighbor(NamedTuple):
    mac: bytes              # its MAC: the routed frame's new destination
    port: int               # where it was learned
    out_tci: int            # 0: untagged; else the tag to push


def _uint(value, limit: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError(f"{what} {value!r} is not 0..{limit - 1}")
    return value


def _martian_source(src) -> bool:
    """0/8, 127/8, 224/4, 240/4 (with 255.255.255.255): sources no router forwards from (RFC 1812 5.3.7)."""
    return src[0] == 0 or src[0] == 127 or src[0] >= 224


def _group_destination(dst) -> bool:
    """224/4 and the limited broadcast: never routed as unicast."""
    return dst[0] & 0xF0 == 0xE0 or dst == b"\xff\xff\xff\xff"


class RouteTables:
    def __init__(self):
        self.lpm = Lpm(MAX_ROUTES, MAX_TBL8)
        self.nexthops: dict[int, NextHop] = {}
        self.neighbors: dict[tuple[int, bytes], Neighbor] = {}     # (VLAN, 16-byte address) -> neighbor

    # -- the slow path's side ------------------------------------------------------------------------------------

    def nexthop_set(self, nh_id, kind, vlan, gateway=b"", src_mac=b"") -> None:
        kind = consts.NH_KINDS.get(kind, kind)
        _uint(nh_id, consts.MAX_NEXTHOPS, "next-hop id")
        if nh_id == 0:
            raise ValueError("next-hop id 0 means no route")
        if kind not in (consts.NH_CONNECTED, consts.NH_GATEWAY, consts.NH_LOCAL, consts.NH_BLACKHOLE):
            raise ValueError(f"unknown next-hop kind {kind!r}")
        _uint(vlan, MAX_VID + 1, "VLAN")
        self.nexthops[nh_id] = NextHop(kind, vlan, addr16(gateway) if gateway else bytes(16), mac6(src_mac))

    def nexthop_del(self, nh_id) -> bool:
        _uint(nh_id, consts.MAX_NEXTHOPS, "next-hop id")
        if nh_id == 0:
            raise ValueError("next-hop id 0 means no route")
        return self.nexthops.pop(nh_id, None) is not None

    def neigh_set(self, vlan, addr, mac, port, out_tci=0) -> None:
        mac = mac6(mac)
        _uint(out_tci, 1 << 16, "out_tci")
        _uint(vlan, MAX_VID + 1, "VLAN")
        _uint(port, consts.MAX_PORTS, "port")
        key = (vlan, addr16(addr))
        if key not in self.neighbors and len(self.neighbors) >= consts.MAX_NEIGHS:
            raise OSError(errno.ENOSPC, f"more than {consts.MAX_NEIGHS} neighbors")
        self.neighbors[key] = Neighbor(mac, port, out_tci)

    def neigh_del(self, vlan, addr) -> bool:
        _uint(vlan, MAX_VID + 1, "VLAN")
        return self.neighbors.pop((vlan, addr16(addr)), None) is not None

    def neigh_get(self, vlan, addr):
        _uint(vlan, MAX_VID + 1, "VLAN")
        neigh = self.neighbors.get((vlan, addr16(addr)))
        return None if neigh is None else tuple(neigh)

    # -- the ROUTE action ----------------------------------------------------------------------------------------

    def route(self, frame: bytearray, vnet: Vnet, stats: dict, via: bytes | None = None):
        """Steps 1-6 on `frame` (changed in place only when forwarded), counting in `stats`. `via` (4 bytes), if
        given, is looked up, and resolved by a CONNECTED next hop, instead of the destination.

        Returns (FORWARD, port, 0), (UPCALL, reason, userdata) or (DROP, 0, 0).
        """
        l3 = ipv4_offset(frame)
        if not l3:
            stats["route_dropped"] += 1
            return DROP, 0, 0
        src = bytes(frame[l3 + 12:l3 + 16])
        dst = bytes(frame[l3 + 16:l3 + 20])
        verdict, what, userdata, hop = self.decide(src, dst, via, frame[l3 + 8], stats)
        if verdict == FORWARD:
            self.rewrite(frame, vnet, hop, stats)
        return verdict, what, userdata

    def decide(self, src: bytes, dst: bytes, via: bytes | None, ttl: int, stats: dict):
        """Steps 2-5 alone, for a packet that will have `src`, `dst` and `ttl` once its caller has rewritten it
        (`ps_route_decide`): no frame is touched. Returns route()'s triple plus, when forwarding, the (next hop,
        neighbor) pair rewrite() needs."""
        if _martian_source(src):
            stats["martian"] += 1
            stats["route_dropped"] += 1
            return DROP, 0, 0, None
        if _group_destination(dst):
            stats["route_dropped"] += 1
            return DROP, 0, 0, None
        via = dst if via is None else bytes(via)

        nh_id = self.lpm.lookup(via)
        nh = self.nexthops.get(nh_id)
        if nh is None:
            return UPCALL, consts.UPCALL_NO_ROUTE, 0, None
        if nh.kind == consts.NH_LOCAL:
            return UPCALL, consts.UPCALL_LOCAL, 0, None
        if nh.kind == consts.NH_BLACKHOLE:
            stats["route_dropped"] += 1
            return DROP, 0, 0, None
        if ttl <= 1:
            return UPCALL, consts.UPCALL_TTL, 0, None
        target = nh.gateway if nh.kind == consts.NH_GATEWAY else via.ljust(16, b"\0")
        neigh = self.neighbors.get((nh.vlan, target))
        if neigh is None:
            return UPCALL, consts.UPCALL_NO_NEIGH, nh_id, None
        return FORWARD, neigh.port, 0, (nh, neigh)

    @staticmethod
    def rewrite(frame: bytearray, vnet: Vnet, hop, stats: dict) -> None:
        """Step 6 with the (next hop, neighbor) decide() found (`ps_route_rewrite`): tags removed, TTL - 1 with the
        checksum updated, MACs set, the egress tag pushed."""
        nh, neigh = hop
        while (frame[12] << 8 | frame[13]) in _VLAN_TPIDS:
            pop_vlan(frame, vnet)
        l3 = ETH_HDR_LEN
        ttl = frame[l3 + 8]
        old_word = ttl << 8 | frame[l3 + 9]
        check = frame[l3 + 10] << 8 | frame[l3 + 11]
        check = csum_update16(check, old_word, old_word - 0x100)
        frame[l3 + 8] = ttl - 1
        frame[l3 + 10:l3 + 12] = check.to_bytes(2, "big")
        frame[0:6] = neigh.mac
        frame[6:12] = nh.src_mac
        if neigh.out_tci:
            push_vlan(frame, vnet, neigh.out_tci)
        stats["routed"] += 1
