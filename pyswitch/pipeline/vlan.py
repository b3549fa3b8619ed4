"""Which VLAN a frame belongs to, and how it leaves a port: shared by the L2 and L3 stages."""
from __future__ import annotations

from .. import actions as act
from .. import consts


def classify(port, vlan_tci: int) -> int | None:
    """The VLAN of a frame that arrived on `port` with the key's `vlan_tci`, or None if the port may
    not carry it (a tag on an access port, an unlisted tag on a trunk, untagged on a trunk without a
    native VLAN)."""
    if vlan_tci & consts.VLAN_PRESENT:
        vid = vlan_tci & 0x0FFF
        if port.is_trunk and vid in port.trunk:
            return vid
        return None
    if port.is_trunk:
        return port.native_vlan
    return port.vlan


def ingress_tci(port, vlan: int) -> int:
    """The key's vlan_tci of a frame in `vlan` arriving on `port` (0 where the VLAN travels untagged)."""
    return consts.VLAN_PRESENT | vlan if port.tagged_on_egress(vlan) else 0


def flood_actions(ports: dict, in_port: int | None, vlan: int, ingress_tagged: bool) -> list:
    """Actions that send a frame to every port of `vlan` but `in_port`: first the ports that take it as
    it is, then one tag change, then the others, so the frame is rewritten at most once."""
    tagged, untagged = [], []
    for port_no, port in ports.items():
        if port_no == in_port or not port.carries(vlan):
            continue
        (tagged if port.tagged_on_egress(vlan) else untagged).append(port_no)
    same, other = (tagged, untagged) if ingress_tagged else (untagged, tagged)
    actions = []
    if same:
        actions.append(act.flood(same))
    if other:
        actions.append(act.pop_vlan() if ingress_tagged else act.push_vlan(vlan))
        actions.append(act.flood(other))
    return actions


def output_actions(port, port_no: int, vlan: int, ingress_tagged: bool) -> list:
    """Actions that send a frame of `vlan` out of one port, tagged as that port wants it."""
    egress_tagged = port.tagged_on_egress(vlan)
    actions = []
    if ingress_tagged and not egress_tagged:
        actions.append(act.pop_vlan())
    elif egress_tagged and not ingress_tagged:
        actions.append(act.push_vlan(vlan))
    actions.append(act.output(port_no))
    return actions
