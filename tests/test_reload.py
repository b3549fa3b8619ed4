"""What a reload may change live, and how it refuses the rest: reload.plan() on configs built in memory."""
import copy

import pytest

from pyswitch.config import from_dict
from pyswitch.reload import ReloadRefused, plan


def base():
    return {
        "switch": {"name": "r1"},
        "port": [{"name": "c", "type": "afpacket", "device": "psw-c", "vlan": 10},
                 {"name": "b", "type": "afpacket", "device": "psw-b", "vlan": 20}],
        "vlan": [{"id": 10, "address": "198.51.100.1/24"}, {"id": 20, "address": "192.0.2.1/24"}],
        "route": [{"prefix": "203.0.113.0/25", "via": "192.0.2.254"}],
        "vip": [{"name": "web", "address": "203.0.113.200", "port": 80,
                 "backend": [{"address": "192.0.2.11", "port": 8080}, {"address": "192.0.2.12", "port": 8080}],
                 "health": {"type": "tcp"}}],
    }


def changed(edit):
    data = copy.deepcopy(base())
    edit(data)
    return plan(from_dict(base()), from_dict(data))


def test_nothing_changed_is_an_empty_plan():
    assert changed(lambda d: None).describe() == []


def test_live_changes_are_planned():
    def edit(d):
        d["switch"]["mac_aging_s"] = 30
        d["switch"]["conn_established_s"] = 60
        d["route"] = [{"prefix": "203.0.113.0/25", "via": "192.0.2.253"},
                      {"prefix": "198.18.0.0/15", "via": "192.0.2.254"}]
        web = d["vip"][0]
        web["backend"] = [{"address": "192.0.2.11", "port": 8080, "weight": 5},
                          {"address": "192.0.2.13", "port": 8080}]
        d["vip"].append({"name": "dns", "address": "203.0.113.201", "port": 53, "protocol": "udp",
                         "backend": [{"address": "192.0.2.11", "port": 53}]})
    assert changed(edit).describe() == [
        "switch.mac_aging_s", "switch.conn_established_s",
        "route 203.0.113.0/25 via 192.0.2.253", "route 198.18.0.0/15 via 192.0.2.254",
        "vip dns added",
        "vip web: backend 192.0.2.13:8080 added",
        "vip web: backend 192.0.2.12:8080 removed",
        "vip web: backend 192.0.2.11:8080 weight 5"]


def test_a_removed_route_and_vip():
    def edit(d):
        d["route"] = []
        d["vip"] = []
    assert changed(edit).describe() == ["route 203.0.113.0/25 removed", "vip web removed"]


@pytest.mark.parametrize("edit, key", [
    (lambda d: d["switch"].update(datapath="python"), "switch.datapath"),
    (lambda d: d["switch"].update(max_flows=1024), "switch.max_flows"),
    (lambda d: d["switch"].update(name="r2"), "switch.name"),
    (lambda d: d["port"][1].update(vlan=30), "port[1].vlan"),
    (lambda d: d["port"].append({"name": "x", "type": "tap", "device": "psw-x"}), "port[2]"),
    (lambda d: d["port"].pop(), "port[1]"),
    (lambda d: d["vlan"][0].update(address="198.51.100.2/24"), "vlan[0].address"),
    (lambda d: d["vip"][0].update(mode="fullnat"), "vip[0].mode"),
    (lambda d: d.update(control={"group": "root"}), "control.group"),
    (lambda d: d["vip"][0].update(scheduler="maglev"), "vip[0].scheduler"),
    (lambda d: d["vip"][0]["health"].update(interval_s=5), "vip[0].health.interval_s"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_what_cannot_change_live_is_refused_naming_the_key(edit, key):
    with pytest.raises(ReloadRefused) as exc:
        changed(edit)
    assert str(exc.value).startswith(f"{key}:") or str(exc.value).startswith(f"{key}."), exc.value
    assert "restart" in str(exc.value)


def test_vips_of_an_ha_member_cannot_come_or_go():
    def with_ha(d):
        d["vlan"].append({"id": 30, "address": "198.18.0.1/24"})
        d["port"].append({"name": "s", "type": "afpacket", "device": "psw-s", "vlan": 30})
        d["ha"] = {"group": 1, "priority": 100, "vlans": [10, 20], "sync_vlan": 30}
    running = copy.deepcopy(base())
    with_ha(running)
    new = copy.deepcopy(running)
    new["vip"] = []
    with pytest.raises(ReloadRefused, match="HA pair"):
        plan(from_dict(running), from_dict(new))
    new = copy.deepcopy(running)
    new["vip"][0]["backend"][0]["weight"] = 3       # backends may change
    assert plan(from_dict(running), from_dict(new)).describe() == ["vip web: backend 192.0.2.11:8080 weight 3"]
