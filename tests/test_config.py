"""The config: what the README promises works, and every mistake names its key."""
import copy
import os
import re
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyswitch.config import ConfigError, from_dict, load

README_EXAMPLE = """
[switch]
name = "sw1"
datapath = "c"

[[port]]
name = "p1"
type = "afpacket"
device = "psw-sw-h1"
vlan = 10

[[port]]
name = "p2"
type = "tap"
device = "psw-tap2"
netns = "psw-h2"
address = "198.51.100.2/24"
vlan = 10

[[port]]
name = "up"
type = "afpacket"
device = "psw-trunk0"
trunk = [1, 10]
"""


def test_readme_example_loads(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_text(README_EXAMPLE)
    config = load(path)
    assert config.switch.name == "sw1"
    assert [p.name for p in config.ports] == ["p1", "p2", "up"]
    p1, p2, up = config.ports
    assert (p1.vlan, p1.trunk) == (10, ())
    assert p2.netns == "psw-h2" and p2.address == ("198.51.100.2/24",)
    assert up.trunk == (1, 10) and up.vlan is None and up.is_trunk
    assert up.tagged_on_egress(10) and not p1.tagged_on_egress(10)


def test_defaults():
    config = from_dict({"port": [{"name": "a", "type": "afpacket", "device": "psw-a"}]})
    assert config.switch.datapath == "c"
    assert config.switch.mac_aging_s == 300
    assert config.switch.workers == 1
    assert config.ports[0].vlan == 1


def test_workers():
    assert from_dict({"switch": {"workers": 8}}).switch.workers == 8
    assert from_dict({"switch": {"workers": 1, "datapath": "python"}}).switch.workers == 1
    with pytest.raises(ConfigError, match=r'^switch.workers: 2 workers need datapath = "c" \(the python datapath '
                                          r'runs in one thread\)'):
        from_dict({"switch": {"workers": 2, "datapath": "python"}})
    with pytest.raises(ConfigError, match=r"^switch.workers: port\[1\] \(x\) is afxdp, and an afxdp port is read by "
                                          r"one worker"):
        from_dict({"switch": {"workers": 2}, "port": [{"name": "a", "type": "afpacket", "device": "psw-a"},
                                                      {"name": "x", "type": "afxdp", "device": "psw-x"}]})


@pytest.mark.parametrize("data, key", [
    ({"switch": {"datapath": "rust"}}, "switch.datapath"),
    ({"switch": {"nmae": "x"}}, "switch.nmae"),
    ({"switch": {"mac_aging_s": -1}}, "switch.mac_aging_s"),
    ({"switch": {"max_flows": "many"}}, "switch.max_flows"),
    ({"switch": {"name": "a b"}}, "switch.name"),
    ({"switch": {"workers": 0}}, "switch.workers"),
    ({"switch": {"workers": 9}}, "switch.workers"),
    ({"switch": {"workers": "2"}}, "switch.workers"),
    ({"bogus": 1}, "bogus"),
    ({"port": [{"type": "afpacket", "device": "psw-a"}]}, "port[0].name"),
    ({"port": [{"name": "a", "type": "veth", "device": "psw-a"}]}, "port[0].type"),
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a-name-too-long"}]}, "port[0].device"),
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a", "vlan": 5000}]}, "port[0].vlan"),
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a", "vlan": 1, "trunk": [2]}]}, "port[0]"),
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a", "trunk": []}]}, "port[0].trunk"),
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a", "trunk": [2, 2]}]}, "port[0].trunk[1]"),
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a", "vlna": 2}]}, "port[0].vlna"),
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a", "netns": "x"}]}, "port[0].netns"),
    ({"port": [{"name": "a", "type": "afxdp", "device": "psw-a", "address": "198.51.100.1/24"}]},
     "port[0].address"),
    ({"port": [{"name": "a", "type": "xdp", "device": "psw-a"}]}, "port[0].type"),
    ({"port": [{"name": "a", "type": "tap", "device": "psw-a", "address": "198.51.100.300/24"}]},
     "port[0].address"),
    ({"port": [{"name": "a", "type": "tap", "device": "psw-a", "mac": "zz"}]}, "port[0].mac"),
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a"},
               {"name": "a", "type": "afpacket", "device": "psw-b"}]}, "port[1].name"),
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a"},
               {"name": "b", "type": "afpacket", "device": "psw-a"}]}, "port[1].device"),
])
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert str(info.value).startswith(key + ":") or str(info.value).startswith(key + " "), str(info.value)


def test_afxdp_port_type():
    """An afxdp port binds an existing interface like an afpacket one: VLANs as usual, no tap-only keys."""
    config = from_dict({"port": [{"name": "a", "type": "afxdp", "device": "psw-a", "vlan": 10},
                                 {"name": "b", "type": "afxdp", "device": "psw-b", "trunk": [10, 20]}]})
    a, b = config.ports
    assert (a.type, a.device, a.vlan) == ("afxdp", "psw-a", 10)
    assert b.type == "afxdp" and b.trunk == (10, 20)
    with pytest.raises(ConfigError, match=r"^port\[0\]\.netns: only a tap port .* an afxdp port's interface"):
        from_dict({"port": [{"name": "a", "type": "afxdp", "device": "psw-a", "netns": "psw-h1"}]})
    with pytest.raises(ConfigError, match=r"^port\[0\]\.type: must be one of afpacket, afxdp, tap"):
        from_dict({"port": [{"name": "a", "type": "af_xdp", "device": "psw-a"}]})


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[switch\nname=1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.toml")


ROUTED = {"vlan": [{"id": 10, "address": "198.51.100.1/24"}, {"id": 20, "address": "192.0.2.1/24"}],
          "route": [{"prefix": "203.0.113.0/24", "via": "192.0.2.254"}]}


def test_vlan_interfaces_and_routes():
    config = from_dict(ROUTED)
    assert [(v.id, str(v.address)) for v in config.vlans] == [(10, "198.51.100.1/24"), (20, "192.0.2.1/24")]
    assert [(str(r.prefix), str(r.via)) for r in config.routes] == [("203.0.113.0/24", "192.0.2.254")]


@pytest.mark.parametrize("change, key", [
    ({"vlan": [{"id": 10}]}, "vlan[0].address"),
    ({"vlan": [{"id": 10, "address": "198.51.100.1"}]}, "vlan[0].address"),
    ({"vlan": [{"id": 10, "address": "198.51.100.0/24"}]}, "vlan[0].address"),
    ({"vlan": [{"id": 10, "address": "2001:db8::1/64"}]}, "vlan[0].address"),
    ({"vlan": [{"id": 10, "address": "198.51.100.1/24", "mac": "01:00:00:00:00:01"}]}, "vlan[0].mac"),
    ({"vlan": [{"id": 10, "address": "198.51.100.1/24"}, {"id": 10, "address": "192.0.2.1/24"}]}, "vlan[1].id"),
    ({"vlan": [{"id": 10, "address": "198.51.100.1/24"}, {"id": 20, "address": "198.51.100.129/25"}]},
     "vlan[1].address"),
    ({"route": [{"prefix": "203.0.113.1/24", "via": "192.0.2.254"}]}, "route[0].prefix"),
    ({"route": [{"prefix": "203.0.113.0/24", "via": "203.0.113.254"}]}, "route[0].via"),
    ({"route": [{"prefix": "203.0.113.0/24", "via": "192.0.2.1"}]}, "route[0].via"),
    ({"route": [{"prefix": "203.0.113.0/24"}]}, "route[0].via"),
    ({"route": [{"prefix": "203.0.113.0/24", "via": "192.0.2.254", "metric": 1}]}, "route[0].metric"),
])
def test_routing_errors_name_the_key(change, key):
    data = dict(ROUTED)
    data.update(change)
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert str(info.value).startswith(key + ":"), str(info.value)


VIP = {"name": "web", "address": "203.0.113.10", "port": 80, "protocol": "tcp", "mode": "nat",
       "scheduler": "rr", "persistence_s": 0,
       "backend": [{"address": "192.0.2.11", "port": 8080, "weight": 3}, {"address": "192.0.2.12"}],
       "health": {"type": "http", "interval_s": 1.0, "timeout_s": 0.5, "rise": 2, "fall": 2,
                  "http_path": "/", "http_expect": 200}}


def test_vip_as_the_issue_writes_it():
    vip = from_dict({"vip": [VIP]}).vips[0]
    assert (vip.name, str(vip.address), vip.port, vip.mode, vip.scheduler) == ("web", "203.0.113.10", 80, "nat", "rr")
    assert [(str(b.address), b.port, b.weight) for b in vip.backends] == [("192.0.2.11", 8080, 3),
                                                                        ("192.0.2.12", 80, 1)]
    assert vip.health.type == "http" and vip.health.on_down == "keep"


def test_vip_flood_limits_have_defaults_and_can_be_set():
    vip = from_dict({"vip": [VIP]}).vips[0]
    assert (vip.max_embryonic, vip.flood_threshold, vip.upcall_rate) == (16384, 1024, 1000)
    vip = from_dict({"vip": [dict(VIP, max_embryonic=0, flood_threshold=0, upcall_rate=50)]}).vips[0]
    assert (vip.max_embryonic, vip.flood_threshold, vip.upcall_rate) == (0, 0, 50)


@pytest.mark.parametrize("change, key", [
    ({"mode": "magic"}, "vip[0].mode"),
    ({"scheduler": "random"}, "vip[0].scheduler"),
    ({"protocol": "sctp"}, "vip[0].protocol"),
    ({"port": 0}, "vip[0].port"),
    ({"address": "203.0.113.300"}, "vip[0].address"),
    ({"address": "198.51.100.1"}, "vip[0].address"),
    ({"persistence_s": -1}, "vip[0].persistence_s"),
    ({"mode": "dsr"}, "vip[0].backend[0].port"),
    ({"backend": [{"address": "192.0.2.11", "weight": -1}]}, "vip[0].backend[0].weight"),
    ({"backend": [{"address": "192.0.2.11"}, {"address": "192.0.2.11"}]}, "vip[0].backend[1]"),
    ({"backend": [{"port": 80}]}, "vip[0].backend[0].address"),
    ({"health": {"type": "ftp"}}, "vip[0].health.type"),
    ({"health": {"interval_s": 1, "timeout_s": 2}}, "vip[0].health.timeout_s"),
    ({"health": {"http_path": "health"}}, "vip[0].health.http_path"),
    ({"health": {"on_down": "panic"}}, "vip[0].health.on_down"),
    ({"wieght": 1}, "vip[0].wieght"),
    ({"max_embryonic": -1}, "vip[0].max_embryonic"),
    ({"max_embryonic": 1.5}, "vip[0].max_embryonic"),
    ({"upcall_rate": 10000001}, "vip[0].upcall_rate"),
    ({"upcall_rate": "fast"}, "vip[0].upcall_rate"),
    ({"flood_threshold": -3}, "vip[0].flood_threshold"),
    ({"max_embryonic": 100, "flood_threshold": 101}, "vip[0].flood_threshold"),
])
def test_vip_errors_name_the_key(change, key):
    vip = dict(VIP)
    vip.update(change)
    data = {"vlan": [{"id": 10, "address": "198.51.100.1/24"}, {"id": 20, "address": "192.0.2.1/24"}], "vip": [vip]}
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert str(info.value).startswith(key + ":") or str(info.value).startswith(key + " "), str(info.value)


def test_duplicate_vips():
    other = dict(VIP, name="web2")
    with pytest.raises(ConfigError, match=r"^vip\[1\]: 203.0.113.10:80/tcp is already vip\[0\]"):
        from_dict({"vip": [VIP, other]})
    with pytest.raises(ConfigError, match=r"^vip\[1\].name"):
        from_dict({"vip": [VIP, dict(VIP, port=81)]})


HA_SWITCH = {"port": [{"name": "front", "type": "afpacket", "device": "psw-a1-c", "vlan": 10},
                      {"name": "back", "type": "afpacket", "device": "psw-a1-s", "vlan": 20}],
             "vlan": [{"id": 10, "address": "198.51.100.1/24"}, {"id": 20, "address": "192.0.2.1/24"},
                      {"id": 30, "address": "198.18.0.1/24"}]}
HA = {"group": 51, "priority": 150, "advert_interval_s": 0.1, "preempt": True, "vlans": [10, 20], "sync_vlan": 30,
      "peer": "198.18.0.2", "track_ports": ["front", "back"]}


def test_ha_as_the_issue_writes_it():
    ha = from_dict(dict(HA_SWITCH, ha=HA)).ha
    assert (ha.group, ha.priority, ha.advert_interval_s, ha.preempt) == (51, 150, 0.1, True)
    assert (ha.vlans, ha.sync_vlan, str(ha.peer), ha.track_ports) == ((10, 20), 30, "198.18.0.2", ("front", "back"))
    assert from_dict(HA_SWITCH).ha is None
    minimal = from_dict(dict(HA_SWITCH, ha={"group": 1, "priority": 100, "vlans": [10], "sync_vlan": 30})).ha
    assert (minimal.advert_interval_s, minimal.preempt, minimal.peer, minimal.track_ports) == (1.0, True, None, ())


@pytest.mark.parametrize("change, key", [
    ({"group": 0}, "ha.group"),
    ({"group": 256}, "ha.group"),
    ({"priority": 0}, "ha.priority"),
    ({"vlans": []}, "ha.vlans"),
    ({"vlans": [10, 40]}, "ha.vlans"),
    ({"vlans": [10, 10]}, "ha.vlans"),
    ({"sync_vlan": 40}, "ha.sync_vlan"),
    ({"sync_vlan": 20}, "ha.sync_vlan"),
    ({"advert_interval_s": 0}, "ha.advert_interval_s"),
    ({"advert_interval_s": 41}, "ha.advert_interval_s"),
    ({"preempt": "yes"}, "ha.preempt"),
    ({"peer": "203.0.113.2"}, "ha.peer"),
    ({"peer": "198.18.0.1"}, "ha.peer"),
    ({"peer": "nope"}, "ha.peer"),
    ({"track_ports": ["p9"]}, "ha.track_ports[0]"),
    ({"priorty": 1}, "ha.priorty"),
])
def test_ha_errors_name_the_key(change, key):
    with pytest.raises(ConfigError) as info:
        from_dict(dict(HA_SWITCH, ha=dict(HA, **change)))
    assert str(info.value).startswith(key + ":"), str(info.value)


def test_ha_vlans_use_the_virtual_mac():
    data = dict(HA_SWITCH, ha=HA)
    data["vlan"] = [dict(data["vlan"][0], mac="02:00:00:00:00:01")] + data["vlan"][1:]
    with pytest.raises(ConfigError, match=r"^ha.vlans: .*00:00:5e:00:01:33"):
        from_dict(data)


# -- every mistake, one row each: the TOML, and the key the message must start with --------------------------------
#
# BASE is a valid routed switch; a row appends to it (arrays of tables may continue anywhere in a TOML document),
# so each row is BASE plus one mistake.  Rows that set [switch], [control] or [ha] add the whole table; a row that
# starts with a root-level key stands alone.

BASE = """
[[port]]
name = "front"
type = "afpacket"
device = "psw-front"
vlan = 10

[[port]]
name = "back"
type = "afpacket"
device = "psw-back"
trunk = [20, 30]

[[vlan]]
id = 10
address = "198.51.100.1/24"

[[vlan]]
id = 20
address = "192.0.2.1/24"

[[vlan]]
id = 30
address = "198.18.0.1/24"
"""

PORT = '[[port]]\nname = "p"\ntype = "afpacket"\ndevice = "psw-p"\n'
TAP = '[[port]]\nname = "t"\ntype = "tap"\ndevice = "psw-t"\n'
VLAN = '[[vlan]]\nid = 40\n'
ROUTE = '[[route]]\nprefix = "203.0.113.0/24"\n'
VIP_HEAD = '[[vip]]\nname = "web"\naddress = "203.0.113.10"\nport = 80\n'
BACKEND = '[[vip.backend]]\naddress = "192.0.2.11"\n'
HA_HEAD = '[ha]\ngroup = 51\npriority = 150\nvlans = [10, 20]\nsync_vlan = 30\n'

BAD_CONFIGS = [
    # top level
    ("unknown section", "[prot]\nname = 1\n", "prot"),
    ("unknown top-level key", "bogus = 1\n", "bogus"),
    ("port as one table", "port = {name = \"p\"}\n", "port"),
    ("port not a table", "port = 5\n", "port"),
    ("vlan as a list of ints", "vlan = [1, 2]\n", "vlan[0]"),
    ("switch as an array", "[[switch]]\nname = \"a\"\n", "switch"),
    ("switch as a value", "switch = 5\n", "switch"),
    # [switch]
    ("misspelt switch key", "[switch]\nnmae = \"x\"\n", "switch.nmae"),
    ("unknown datapath", "[switch]\ndatapath = \"rust\"\n", "switch.datapath"),
    ("datapath not a string", "[switch]\ndatapath = 1\n", "switch.datapath"),
    ("name with a space", "[switch]\nname = \"a b\"\n", "switch.name"),
    ("empty name", "[switch]\nname = \"\"\n", "switch.name"),
    ("name too long", f"[switch]\nname = \"{'x' * 33}\"\n", "switch.name"),
    ("negative duration", "[switch]\nmac_aging_s = -1\n", "switch.mac_aging_s"),
    ("nan duration", "[switch]\nmac_aging_s = nan\n", "switch.mac_aging_s"),
    ("infinite duration", "[switch]\nflow_idle_s = inf\n", "switch.flow_idle_s"),
    ("duration beyond uint32 ms", "[switch]\nconn_established_s = 1e12\n", "switch.conn_established_s"),
    ("duration as a string", "[switch]\nconn_udp_s = \"300\"\n", "switch.conn_udp_s"),
    ("integer as a string", "[switch]\nmax_flows = \"many\"\n", "switch.max_flows"),
    ("integer as a bool", "[switch]\nmax_flows = true\n", "switch.max_flows"),
    ("integer as a float", "[switch]\nmax_flows = 1024.5\n", "switch.max_flows"),
    ("integer as a list", "[switch]\narp_retries = [3]\n", "switch.arp_retries"),
    ("integer as a table", "[switch]\narp_queue = {n = 1}\n", "switch.arp_queue"),
    ("zero MAC table", "[switch]\nmax_macs = 0\n", "switch.max_macs"),
    ("huge ring", "[switch]\nring_frames = 99999999\n", "switch.ring_frames"),
    ("huge integer", "[switch]\nmax_conns = 99999999999999999999999\n", "switch.max_conns"),
    ("negative busy poll", "[switch]\nbusy_poll_us = -1\n", "switch.busy_poll_us"),
    ("no workers", "[switch]\nworkers = 0\n", "switch.workers"),
    ("too many workers", "[switch]\nworkers = 9\n", "switch.workers"),
    ("workers in python", "[switch]\nworkers = 2\ndatapath = \"python\"\n", "switch.workers"),
    ("workers with afxdp", "[switch]\nworkers = 2\n" + PORT.replace("afpacket", "afxdp"), "switch.workers"),
    ("relative control dir", "[switch]\ncontrol_dir = \"run/pyswitch\"\n", "switch.control_dir"),
    ("control socket path too long", f"[switch]\ncontrol_dir = \"/{'d' * 110}\"\n", "switch.control_dir"),
    ("NUL in control dir", "[switch]\ncontrol_dir = \"/run/\\u0000x\"\n", "switch.control_dir"),
    # [control]
    ("group not a string", "[control]\ngroup = 5\n", "control.group"),
    ("group with a space", "[control]\ngroup = \"psw admin\"\n", "control.group"),
    ("group with a slash", "[control]\ngroup = \"../x\"\n", "control.group"),
    ("misspelt control key", "[control]\ngrp = \"x\"\n", "control.grp"),
    ("control as an array", "[[control]]\ngroup = \"x\"\n", "control"),
    # [[port]]
    ("port not a table in the array", "port = [1, 2]\n", "port[0]"),
    ("port without name", '[[port]]\ntype = "afpacket"\ndevice = "psw-p"\n', "port[2].name"),
    ("port without device", '[[port]]\nname = "p"\ntype = "afpacket"\n', "port[2].device"),
    ("port without type", '[[port]]\nname = "p"\ndevice = "psw-p"\n', "port[2].type"),
    ("port name an integer", PORT.replace('"p"', "7"), "port[2].name"),
    ("unknown port type", PORT.replace("afpacket", "veth"), "port[2].type"),
    ("misspelt port type", PORT.replace("afpacket", "afpaket"), "port[2].type"),
    ("device too long", PORT.replace("psw-p", "psw-a-name-too-long"), "port[2].device"),
    ("device with a slash", PORT.replace("psw-p", "psw/p"), "port[2].device"),
    ("device with a colon", PORT.replace("psw-p", "psw:p"), "port[2].device"),
    ("device dot-dot", PORT.replace("psw-p", ".."), "port[2].device"),
    ("device empty", PORT.replace('"psw-p"', '""'), "port[2].device"),
    ("device with NUL", PORT.replace("psw-p", "psw\\u0000p"), "port[2].device"),
    ("VLAN out of range", PORT + "vlan = 5000\n", "port[2].vlan"),
    ("VLAN zero", PORT + "vlan = 0\n", "port[2].vlan"),
    ("VLAN 4095 reserved", PORT + "vlan = 4095\n", "port[2].vlan"),
    ("VLAN as a string", PORT + 'vlan = "10"\n', "port[2].vlan"),
    ("VLAN as a bool", PORT + "vlan = true\n", "port[2].vlan"),
    ("access and trunk", PORT + "vlan = 10\ntrunk = [20]\n", "port[2]"),
    ("empty trunk", PORT + "trunk = []\n", "port[2].trunk"),
    ("trunk not a list", PORT + "trunk = 10\n", "port[2].trunk"),
    ("VLAN twice on a trunk", PORT + "trunk = [10, 20, 10]\n", "port[2].trunk[2]"),
    ("trunk VLAN as a string", PORT + 'trunk = [10, "20"]\n', "port[2].trunk[1]"),
    ("native VLAN also tagged", PORT + "trunk = [10, 20]\nnative_vlan = 10\n", "port[2].native_vlan"),
    ("native VLAN on an access port", PORT + "native_vlan = 10\n", "port[2].native_vlan"),
    ("native VLAN out of range", PORT + "trunk = [10]\nnative_vlan = 9999\n", "port[2].native_vlan"),
    ("misspelt port key", PORT + "vlna = 2\n", "port[2].vlna"),
    ("netns on afpacket", PORT + 'netns = "psw-h1"\n', "port[2].netns"),
    ("address on afxdp", PORT.replace("afpacket", "afxdp") + 'address = "198.51.100.2/24"\n', "port[2].address"),
    ("mac on afpacket", PORT + 'mac = "02:00:00:00:00:01"\n', "port[2].mac"),
    ("netns escaping /run/netns", TAP + 'netns = "../../etc"\n', "port[2].netns"),
    ("netns with a slash", TAP + 'netns = "a/b"\n', "port[2].netns"),
    ("tap address out of range", TAP + 'address = "198.51.100.300/24"\n', "port[2].address"),
    ("tap address an integer", TAP + "address = 5\n", "port[2].address"),
    ("tap address list with an integer", TAP + 'address = ["198.51.100.2/24", 7]\n', "port[2].address[1]"),
    ("tap address without prefix", TAP + 'address = "198.51.100.2"\n', "port[2].address"),
    ("tap address is a network", TAP + 'address = "198.51.100.0/24"\n', "port[2].address"),
    ("tap address is a broadcast", TAP + 'address = "198.51.100.255/24"\n', "port[2].address"),
    ("tap address multicast", TAP + 'address = "224.0.0.5/24"\n', "port[2].address"),
    ("tap address IPv6 multicast", TAP + 'address = "ff02::1/64"\n', "port[2].address"),
    ("tap address IPv6 garbage", TAP + 'address = "2001:db8::g/64"\n', "port[2].address"),
    ("tap address twice", TAP + 'address = ["198.51.100.2/24", "198.51.100.2/24"]\n', "port[2].address[1]"),
    ("tap address empty list", TAP + "address = []\n", "port[2].address"),
    ("tap MAC garbage", TAP + 'mac = "zz"\n', "port[2].mac"),
    ("tap MAC with dashes", TAP + 'mac = "02-00-00-00-00-01"\n', "port[2].mac"),
    ("tap MAC multicast", TAP + 'mac = "01:00:5e:00:00:01"\n', "port[2].mac"),
    ("tap MAC broadcast", TAP + 'mac = "ff:ff:ff:ff:ff:ff"\n', "port[2].mac"),
    ("tap MAC zero", TAP + 'mac = "00:00:00:00:00:00"\n', "port[2].mac"),
    ("two taps, one MAC", TAP + 'mac = "02:00:00:00:00:01"\n' + TAP.replace('"t"', '"u"').replace("psw-t", "psw-u")
     + 'mac = "02:00:00:00:00:01"\n', "port[3].mac"),
    ("port name twice", PORT.replace('"p"', '"front"'), "port[2].name"),
    ("interface named twice", PORT.replace("psw-p", "psw-front"), "port[2].device"),
    ("65 ports", "".join(PORT.replace('"p"', f'"p{i}"').replace("psw-p", f"psw-p{i}") for i in range(63)), "port"),
    # [[vlan]]
    ("VLAN interface without address", VLAN, "vlan[3].address"),
    ("VLAN interface without id", '[[vlan]]\naddress = "203.0.113.1/24"\n', "vlan[3].id"),
    ("VLAN interface id out of range", '[[vlan]]\nid = 4095\naddress = "203.0.113.1/24"\n', "vlan[3].id"),
    ("VLAN interface address without prefix", VLAN + 'address = "203.0.113.1"\n', "vlan[3].address"),
    ("VLAN interface address is the network", VLAN + 'address = "203.0.113.0/24"\n', "vlan[3].address"),
    ("VLAN interface address is the broadcast", VLAN + 'address = "203.0.113.255/24"\n', "vlan[3].address"),
    ("VLAN interface /31", VLAN + 'address = "203.0.113.1/31"\n', "vlan[3].address"),
    ("VLAN interface IPv6", VLAN + 'address = "2001:db8::1/64"\n', "vlan[3].address"),
    ("VLAN interface multicast", VLAN + 'address = "224.1.1.1/24"\n', "vlan[3].address"),
    ("VLAN interface loopback", VLAN + 'address = "127.0.0.1/8"\n', "vlan[3].address"),
    ("VLAN interface address a list", VLAN + 'address = ["203.0.113.1/24"]\n', "vlan[3].address"),
    ("VLAN interface MAC multicast", VLAN + 'address = "203.0.113.1/24"\nmac = "01:00:00:00:00:01"\n', "vlan[3].mac"),
    ("VLAN interface MAC zero", VLAN + 'address = "203.0.113.1/24"\nmac = "00:00:00:00:00:00"\n', "vlan[3].mac"),
    ("VLAN interface MAC short", VLAN + 'address = "203.0.113.1/24"\nmac = "02:00:00:00:01"\n', "vlan[3].mac"),
    ("decap not a bool", VLAN + 'address = "203.0.113.1/24"\ndecap = "yes"\n', "vlan[3].decap"),
    ("two interfaces on one VLAN", '[[vlan]]\nid = 10\naddress = "203.0.113.1/24"\n', "vlan[3].id"),
    ("overlapping subnets", VLAN + 'address = "198.51.100.129/25"\n', "vlan[3].address"),
    ("same subnet twice", VLAN + 'address = "192.0.2.2/24"\n', "vlan[3].address"),
    ("misspelt VLAN key", VLAN + 'address = "203.0.113.1/24"\nadress = "x"\n', "vlan[3].adress"),
    # [[route]]
    ("route prefix with host bits", '[[route]]\nprefix = "203.0.113.1/24"\nvia = "192.0.2.254"\n', "route[0].prefix"),
    ("route prefix without length", '[[route]]\nprefix = "203.0.113.0"\nvia = "192.0.2.254"\n', "route[0].prefix"),
    ("route prefix multicast", '[[route]]\nprefix = "224.0.0.0/4"\nvia = "192.0.2.254"\n', "route[0].prefix"),
    ("route prefix an integer", '[[route]]\nprefix = 10\nvia = "192.0.2.254"\n', "route[0].prefix"),
    ("route prefix IPv6", '[[route]]\nprefix = "2001:db8::/32"\nvia = "192.0.2.254"\n', "route[0].prefix"),
    ("route without via", ROUTE, "route[0].via"),
    ("next hop on no subnet", ROUTE + 'via = "203.0.113.254"\n', "route[0].via"),
    ("next hop is the switch", ROUTE + 'via = "192.0.2.1"\n', "route[0].via"),
    ("next hop is a broadcast", ROUTE + 'via = "192.0.2.255"\n', "route[0].via"),
    ("next hop is a network", ROUTE + 'via = "192.0.2.0"\n', "route[0].via"),
    ("next hop multicast", ROUTE + 'via = "224.0.0.1"\n', "route[0].via"),
    ("next hop with a prefix", ROUTE + 'via = "192.0.2.254/24"\n', "route[0].via"),
    ("same prefix twice", ROUTE + 'via = "192.0.2.254"\n' + ROUTE + 'via = "192.0.2.253"\n', "route[1].prefix"),
    ("route to a connected subnet", '[[route]]\nprefix = "192.0.2.0/24"\nvia = "192.0.2.254"\n', "route[0].prefix"),
    ("route with a metric", ROUTE + 'via = "192.0.2.254"\nmetric = 1\n', "route[0].metric"),
    ("next hop is a VIP", ROUTE + 'via = "192.0.2.200"\n' + VIP_HEAD.replace("203.0.113.10", "192.0.2.200")
     + BACKEND, "route[0].via"),
    # [[vip]]
    ("VIP without port", '[[vip]]\nname = "web"\naddress = "203.0.113.10"\n', "vip[0].port"),
    ("VIP mode unknown", VIP_HEAD + 'mode = "magic"\n', "vip[0].mode"),
    ("VIP scheduler unknown", VIP_HEAD + 'scheduler = "random"\n', "vip[0].scheduler"),
    ("VIP protocol unknown", VIP_HEAD + 'protocol = "sctp"\n', "vip[0].protocol"),
    ("VIP encap unknown", VIP_HEAD + 'mode = "tunnel"\nencap = "vxlan"\n', "vip[0].encap"),
    ("VIP port zero", VIP_HEAD.replace("port = 80", "port = 0"), "vip[0].port"),
    ("VIP port too large", VIP_HEAD.replace("port = 80", "port = 65536"), "vip[0].port"),
    ("VIP port a string", VIP_HEAD.replace("port = 80", 'port = "80"'), "vip[0].port"),
    ("VIP address garbage", VIP_HEAD.replace("203.0.113.10", "203.0.113.300"), "vip[0].address"),
    ("VIP address with a prefix", VIP_HEAD.replace("203.0.113.10", "203.0.113.10/32"), "vip[0].address"),
    ("VIP on the switch's address", VIP_HEAD.replace("203.0.113.10", "198.51.100.1"), "vip[0].address"),
    ("VIP on a subnet's broadcast", VIP_HEAD.replace("203.0.113.10", "198.51.100.255"), "vip[0].address"),
    ("VIP multicast", VIP_HEAD.replace("203.0.113.10", "239.1.1.1"), "vip[0].address"),
    ("VIP unspecified", VIP_HEAD.replace("203.0.113.10", "0.0.0.0"), "vip[0].address"),
    ("VIP limited broadcast", VIP_HEAD.replace("203.0.113.10", "255.255.255.255"), "vip[0].address"),
    ("VIP IPv6", VIP_HEAD.replace("203.0.113.10", "2001:db8::10"), "vip[0].address"),
    ("VIP name bad", VIP_HEAD.replace('"web"', '"we b"'), "vip[0].name"),
    ("negative persistence", VIP_HEAD + "persistence_s = -1\n", "vip[0].persistence_s"),
    ("persistence a string", VIP_HEAD + 'persistence_s = "1"\n', "vip[0].persistence_s"),
    ("misspelt VIP key", VIP_HEAD + "wieght = 1\n", "vip[0].wieght"),
    ("backend as one table", VIP_HEAD + '[vip.backend]\naddress = "192.0.2.11"\n', "vip[0].backend"),
    ("backend without address", VIP_HEAD + "[[vip.backend]]\nport = 80\n", "vip[0].backend[0].address"),
    ("backend address garbage", VIP_HEAD + BACKEND.replace("192.0.2.11", "nope"), "vip[0].backend[0].address"),
    ("backend is the VIP", VIP_HEAD + BACKEND.replace("192.0.2.11", "203.0.113.10"), "vip[0].backend[0].address"),
    ("backend is the switch", VIP_HEAD + BACKEND.replace("192.0.2.11", "192.0.2.1"), "vip[0].backend[0].address"),
    ("backend is a broadcast", VIP_HEAD + BACKEND.replace("192.0.2.11", "192.0.2.255"), "vip[0].backend[0].address"),
    ("backend multicast", VIP_HEAD + BACKEND.replace("192.0.2.11", "224.0.0.9"), "vip[0].backend[0].address"),
    ("backend unreachable", VIP_HEAD + BACKEND.replace("192.0.2.11", "203.0.113.50"), "vip[0].backend[0].address"),
    ("dsr backend behind a router", '[[route]]\nprefix = "203.0.113.128/25"\nvia = "192.0.2.254"\n'
     + VIP_HEAD + 'mode = "dsr"\n' + BACKEND.replace("192.0.2.11", "203.0.113.200"), "vip[0].backend[0].address"),
    ("backend is another VIP", VIP_HEAD + BACKEND + VIP_HEAD.replace('"web"', '"api"').replace("203.0.113.10", "203.0.113.11")
     + BACKEND.replace("192.0.2.11", "203.0.113.10"), "vip[1].backend[0].address"),
    ("dsr backend on another port", VIP_HEAD + 'mode = "dsr"\n' + BACKEND + "port = 8080\n", "vip[0].backend[0].port"),
    ("backend port zero", VIP_HEAD + BACKEND + "port = 0\n", "vip[0].backend[0].port"),
    ("negative weight", VIP_HEAD + BACKEND + "weight = -1\n", "vip[0].backend[0].weight"),
    ("weight a float", VIP_HEAD + BACKEND + "weight = 1.5\n", "vip[0].backend[0].weight"),
    ("backend twice", VIP_HEAD + BACKEND + BACKEND, "vip[0].backend[1]"),
    ("misspelt backend key", VIP_HEAD + BACKEND + "wieght = 2\n", "vip[0].backend[0].wieght"),
    ("health not a table", VIP_HEAD + "health = 5\n", "vip[0].health"),
    ("health type unknown", VIP_HEAD + '[vip.health]\ntype = "ftp"\n', "vip[0].health.type"),
    ("health timeout beyond interval", VIP_HEAD + "[vip.health]\ninterval_s = 1\ntimeout_s = 2\n",
     "vip[0].health.timeout_s"),
    ("health interval zero", VIP_HEAD + "[vip.health]\ninterval_s = 0\n", "vip[0].health.interval_s"),
    ("health interval a day", VIP_HEAD + "[vip.health]\ninterval_s = 86400\n", "vip[0].health.interval_s"),
    ("health rise zero", VIP_HEAD + "[vip.health]\nrise = 0\n", "vip[0].health.rise"),
    ("health path relative", VIP_HEAD + '[vip.health]\nhttp_path = "health"\n', "vip[0].health.http_path"),
    ("health path with a space", VIP_HEAD + '[vip.health]\nhttp_path = "/a b"\n', "vip[0].health.http_path"),
    ("health path with CRLF", VIP_HEAD + '[vip.health]\nhttp_path = "/\\r\\nHost: x"\n', "vip[0].health.http_path"),
    ("health status out of range", VIP_HEAD + "[vip.health]\nhttp_expect = 700\n", "vip[0].health.http_expect"),
    ("health on_down unknown", VIP_HEAD + '[vip.health]\non_down = "panic"\n', "vip[0].health.on_down"),
    ("misspelt health key", VIP_HEAD + "[vip.health]\nintervl_s = 1\n", "vip[0].health.intervl_s"),
    ("VIP name twice", VIP_HEAD + BACKEND + VIP_HEAD.replace("port = 80", "port = 81") + BACKEND, "vip[1].name"),
    ("VIP:port:protocol twice", VIP_HEAD + BACKEND + VIP_HEAD.replace('"web"', '"web2"') + BACKEND, "vip[1]"),
    # [ha]
    ("ha not a table", "ha = 5\n", "ha"),
    ("ha without group", HA_HEAD.replace("group = 51\n", ""), "ha.group"),
    ("ha group zero", HA_HEAD.replace("group = 51", "group = 0"), "ha.group"),
    ("ha group too large", HA_HEAD.replace("group = 51", "group = 256"), "ha.group"),
    ("ha priority zero", HA_HEAD.replace("priority = 150", "priority = 0"), "ha.priority"),
    ("ha vlans empty", HA_HEAD.replace("vlans = [10, 20]", "vlans = []"), "ha.vlans"),
    ("ha vlans not a list", HA_HEAD.replace("vlans = [10, 20]", "vlans = 10"), "ha.vlans"),
    ("ha VLAN without interface", HA_HEAD.replace("vlans = [10, 20]", "vlans = [10, 40]"), "ha.vlans"),
    ("ha VLAN twice", HA_HEAD.replace("vlans = [10, 20]", "vlans = [10, 10]"), "ha.vlans"),
    ("ha VLAN a string", HA_HEAD.replace("vlans = [10, 20]", 'vlans = [10, "20"]'), "ha.vlans[1]"),
    ("ha sync VLAN without interface", HA_HEAD.replace("sync_vlan = 30", "sync_vlan = 40"), "ha.sync_vlan"),
    ("ha sync VLAN also moving", HA_HEAD.replace("sync_vlan = 30", "sync_vlan = 20"), "ha.sync_vlan"),
    ("ha advert zero", HA_HEAD + "advert_interval_s = 0\n", "ha.advert_interval_s"),
    ("ha advert beyond 12 bits", HA_HEAD + "advert_interval_s = 41\n", "ha.advert_interval_s"),
    ("ha preempt a string", HA_HEAD + 'preempt = "yes"\n', "ha.preempt"),
    ("ha preempt delay an hour and more", HA_HEAD + "preempt_delay_s = 7200\n", "ha.preempt_delay_s"),
    ("ha peer off the sync subnet", HA_HEAD + 'peer = "203.0.113.2"\n', "ha.peer"),
    ("ha peer is us", HA_HEAD + 'peer = "198.18.0.1"\n', "ha.peer"),
    ("ha peer is the broadcast", HA_HEAD + 'peer = "198.18.0.255"\n', "ha.peer"),
    ("ha peer garbage", HA_HEAD + 'peer = "nope"\n', "ha.peer"),
    ("ha peer multicast", HA_HEAD + 'peer = "224.0.0.18"\n', "ha.peer"),
    ("ha tracks an unknown port", HA_HEAD + 'track_ports = ["frnt"]\n', "ha.track_ports[0]"),
    ("ha tracks a port twice", HA_HEAD + 'track_ports = ["front", "front"]\n', "ha.track_ports[1]"),
    ("ha track_ports not a list", HA_HEAD + 'track_ports = "front"\n', "ha.track_ports"),
    ("misspelt ha key", HA_HEAD + "priorty = 1\n", "ha.priorty"),
]


def test_base_config_is_valid():
    config = from_dict(tomllib.loads(BASE))
    assert [p.name for p in config.ports] == ["front", "back"] and len(config.vlans) == 3


@pytest.mark.parametrize("toml_text, key", [(text, key) for _, text, key in BAD_CONFIGS],
                         ids=[name for name, _, _ in BAD_CONFIGS])
def test_bad_config_names_the_key(tmp_path, toml_text, key):
    path = tmp_path / "sw.toml"
    # A key before any table header belongs to the root; after BASE it would belong to its last table.
    path.write_text(toml_text if not toml_text.startswith("[") else BASE + "\n" + toml_text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(key + ":"), message
    assert len(message) < 400 and "\n" not in message, message     # one sentence, not a dump


def test_the_table_is_long_and_its_rows_differ():
    assert len(BAD_CONFIGS) >= 150
    assert len({text for _, text, _ in BAD_CONFIGS}) == len(BAD_CONFIGS)
    assert len({name for name, _, _ in BAD_CONFIGS}) == len(BAD_CONFIGS)


def test_unknown_keys_suggest_the_right_one():
    for data, hint in (({"switch": {"nmae": "x"}}, "did you mean 'name'?"),
                       ({"prot": []}, "did you mean 'port'?"),
                       ({"port": [{"name": "a", "type": "afpaket", "device": "psw-a"}]}, "did you mean 'afpacket'?"),
                       ({"vip": [{"name": "w", "address": "203.0.113.1", "port": 1, "schedular": "rr"}]},
                        "did you mean 'scheduler'?")):
        with pytest.raises(ConfigError, match=re.escape(hint)):
            from_dict(data)
    with pytest.raises(ConfigError) as info:
        from_dict({"switch": {"zzzzzz": 1}})
    assert "did you mean" not in str(info.value)


# -- the file itself: syntax, encoding, size -------------------------------------------------------------------------

def test_toml_syntax_error_gives_line_and_column(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_text('[switch]\nname = "sw1"\nmac_aging_s = = 3\n')
    with pytest.raises(ConfigError, match=r"sw.toml: not valid TOML: line 3, column 15: "):
        load(path)


def test_toml_duplicate_key(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_text('[switch]\nname = "a"\nname = "b"\n')
    with pytest.raises(ConfigError, match=r"sw.toml: not valid TOML: .*line 3"):
        load(path)


def test_not_utf8_gives_line_and_column(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_bytes(b'[switch]\nname = "sw\xe91"\n')
    with pytest.raises(ConfigError, match=r"sw.toml: not UTF-8 text: line 2, column 11: byte 0xe9"):
        load(path)


def test_huge_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "sw.toml"
    with open(path, "wb") as f:
        f.truncate(1 << 30)         # a sparse GiB: reading it whole would take the memory with it
    with pytest.raises(ConfigError, match=r"sw.toml: larger than 1048576 bytes"):
        load(path)
    with pytest.raises(ConfigError, match=r"/dev/zero: larger than"):
        load("/dev/zero")


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_text("x = " + "[" * 200000 + "]" * 200000 + "\n")
    with pytest.raises(ConfigError, match=r"sw.toml: not valid TOML: "):
        load(path)


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path)
    with pytest.raises(ConfigError, match="not a file name"):
        load(str(tmp_path) + "/a\x00b.toml")


# -- mutations of valid configs: accepted, or refused with a ConfigError that names a key; nothing else -------------

VALID_CONFIGS = [
    tomllib.loads(README_EXAMPLE),
    tomllib.loads(BASE + VIP_HEAD + 'mode = "nat"\nscheduler = "wrr"\n' + BACKEND + "port = 8080\nweight = 2\n"
                  + '[vip.health]\ntype = "http"\nhttp_path = "/health"\n'
                  + ROUTE + 'via = "192.0.2.254"\n' + '[switch]\nname = "lb"\nmax_conns = 4096\n'
                  + '[control]\ngroup = "pswadmin"\n'),
    tomllib.loads(BASE + HA_HEAD + 'peer = "198.18.0.2"\ntrack_ports = ["front"]\n'
                  + TAP + 'netns = "psw-h"\naddress = ["198.51.100.7/24", "2001:db8::7/64"]\nmac = "02:00:00:00:00:07"\n'),
]
SECTIONS = {"config", "switch", "control", "port", "vlan", "route", "vip", "ha"}
KEY_PATH = re.compile(r"^([a-z_]+)(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*:")

scalars = st.one_of(st.booleans(), st.integers(), st.integers(-5, 70000), st.floats(), st.text(max_size=20),
                    st.sampled_from(["", "198.51.100.9", "192.0.2.0/24", "02:00:00:00:00:09", "tap", "dsr", "/x",
                                     "psw-x", "2001:db8::1/64", "\x00", "ftp"]),
                    st.datetimes(), st.dates())
toml_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), inner, max_size=4)),
    max_leaves=8)
key_names = st.one_of(st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                      st.sampled_from(["name", "vlan", "trunk", "native_vlan", "address", "mac", "port", "id",
                                       "via", "prefix", "backend", "health", "group", "mode", "weight"]))


def _paths(node, path=()):
    """Every place in the tree of tables and arrays, as a tuple of keys and indexes."""
    yield path
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, path + (key,))


@st.composite
def mutated_configs(draw):
    data = copy.deepcopy(draw(st.sampled_from(VALID_CONFIGS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["drop", "replace", "add"]))
        if how == "add":
            target = parent[path[-1]] if path else data
            if isinstance(target, dict):
                target[draw(key_names)] = draw(toml_values)
            elif isinstance(target, list):
                target.append(draw(toml_values))
        elif path and how == "drop":
            del parent[path[-1]]
        elif path:
            parent[path[-1]] = draw(toml_values)
    return data


# PSW_CONFIG_EXAMPLES=20000 for a long run (docs/RELIABILITY.md "Config and privileges"); the suite's default is short.
@settings(max_examples=int(os.environ.get("PSW_CONFIG_EXAMPLES", 600)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_mutated_configs_are_accepted_or_refused_by_key(data):
    try:
        config = from_dict(data)
    except ConfigError as exc:
        message = str(exc)
        match = KEY_PATH.match(message)
        assert match, message
        assert match[1] in SECTIONS or match[1] in data, message
        return
    assert len({p.name for p in config.ports}) == len(config.ports)
    assert all(p.vlan is not None or p.trunk for p in config.ports)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 st.sampled_from(VALID_CONFIGS).map(lambda d: README_EXAMPLE.encode()),
                 st.tuples(st.integers(0, len(README_EXAMPLE)), st.binary(min_size=1, max_size=8))
                 .map(lambda t: (README_EXAMPLE[:t[0]]).encode() + t[1] + README_EXAMPLE[t[0]:].encode())))
def test_any_bytes_load_or_give_a_config_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "sw.toml"
    path.write_bytes(raw)
    try:
        load(path)
    except ConfigError as exc:
        assert str(exc), raw
