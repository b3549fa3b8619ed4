"""The config: what the README promises works, and every mistake names its key."""
import pytest

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
    ({"port": [{"name": "a", "type": "afpacket", "device": "psw-a", "trunk": [2, 2]}]}, "port[0].trunk"),
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
    data = {"vlan": [{"id": 10, "address": "198.51.100.1/24"}], "vip": [vip]}
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
    ({"track_ports": ["p9"]}, "ha.track_ports"),
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
