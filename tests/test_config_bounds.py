"""The config keys that bound the L2/L3 tables (docs/RELIABILITY.md "Floods"): defaults, ranges, and errors that
name the key."""
import pytest

from pyswitch.config import ConfigError, from_dict


def port(**extra):
    return {"name": "p1", "type": "afpacket", "device": "psw-x1", **extra}


def test_mac_limits_default_to_none_per_port():
    config = from_dict({"port": [port()]})
    assert config.switch.max_macs_per_port == 0
    assert config.ports[0].mac_limit(config.switch) is None


def test_port_max_macs_overrides_the_switch_default():
    config = from_dict({"switch": {"max_macs_per_port": 100},
                        "port": [port(), port(name="p2", device="psw-x2", max_macs=5)]})
    assert [p.mac_limit(config.switch) for p in config.ports] == [100, 5]


@pytest.mark.parametrize("data, key", [
    ({"switch": {"max_macs_per_port": -1}}, "switch.max_macs_per_port"),
    ({"switch": {"max_macs_per_port": "10"}}, "switch.max_macs_per_port"),
    ({"switch": {"max_macs": 10, "max_macs_per_port": 11}}, "switch.max_macs_per_port"),
    ({"port": [port(max_macs=0)]}, "port[0].max_macs"),
    ({"port": [port(max_macs=True)]}, "port[0].max_macs"),
    ({"switch": {"max_macs": 10}, "port": [port(max_macs=11)]}, "port[0].max_macs"),
])
def test_mac_limit_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    assert str(err.value).startswith(key + ":"), err.value


def test_arp_bounds_defaults():
    s = from_dict({}).switch
    assert (s.arp_max_entries, s.arp_queue, s.arp_queue_total, s.arp_rate_per_port) == (65536, 16, 4096, 1000)


@pytest.mark.parametrize("key, bad", [("arp_queue_total", 0), ("arp_queue_total", 1.5),
                                      ("arp_rate_per_port", -1), ("arp_rate_per_port", "fast")])
def test_arp_bound_errors_name_the_key(key, bad):
    with pytest.raises(ConfigError) as err:
        from_dict({"switch": {key: bad}})
    assert str(err.value).startswith(f"switch.{key}:"), err.value


def test_no_arp_rate_limit():
    assert from_dict({"switch": {"arp_rate_per_port": 0}}).switch.arp_rate_per_port == 0
