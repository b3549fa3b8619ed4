"""The L3 stage's tables when the datapath's are full: a refused route or neighbor is counted and reported, and
never takes the slow path down (the C datapath's real tables, filled)."""
import ipaddress

import pytest

from pyswitch import consts
from pyswitch.config import from_dict
from pyswitch.pipeline.l2 import L2Stage
from pyswitch.pipeline.l3 import L3Stage
from pyswitch.pipeline.mac_table import MacTable
from pyswitch.switch import make_datapath

CONFIG = {"port": [{"name": "p1", "type": "afpacket", "device": "psw-x1", "vlan": 10}],
          "vlan": [{"id": 10, "address": "198.51.100.1/24"}, {"id": 20, "address": "192.0.2.1/24"}]}


@pytest.fixture
def stage():
    config = from_dict(CONFIG)
    dp = make_datapath("c", max_flows=1024)
    dp.add_port(0, "memory")
    ports = {0: config.ports[0]}
    l2 = L2Stage(ports, MacTable(1024, 300), dp, flow_idle_ms=10_000)
    l3 = L3Stage(config, ports, dp, l2)
    l3.install()
    yield l3, dp
    dp.close()


def test_a_refused_neighbor_is_counted(stage):
    l3, dp = stage
    mac = bytes.fromhex("020000000001")
    for i in range(consts.MAX_NEIGHS):
        try:
            dp.neigh_set(20, i.to_bytes(4, "big") + bytes(12), mac, 0)
        except OSError:
            break                               # full
    l3._write_neighbor(10, bytes([198, 51, 100, 9]), mac, 0)
    assert l3.stats()["neigh_refused"] == 1
    assert l3.stats()["max_neighbors"] == consts.MAX_NEIGHS


def test_a_refused_route_is_counted_and_named(stage):
    l3, dp = stage
    nh = l3._gateway(ipaddress.IPv4Address("192.0.2.254"))
    for i in range(1 << 17):                    # the /32s of 198.18.0.0/15: more than the table's 65536 rules
        try:
            dp.route_add((0xC6120000 + i).to_bytes(4, "big"), 32, nh)
        except OSError:
            break
    else:
        pytest.fail("the routing table took every /32 of 198.18.0.0/15")
    with pytest.raises(ValueError) as err:
        l3.route_add("198.19.255.255/32", "192.0.2.254")
    assert "routing table refused" in str(err.value)
    assert l3.stats()["route_refused"] == 1
