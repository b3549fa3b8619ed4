"""A virtual service's choices (scheduler, persistence, backend states) and full NAT's source ports."""
import ipaddress

import pytest

from pyswitch.config import BackendConfig, VipConfig
from pyswitch.lb.service import VirtualService
from pyswitch.lb.snat import PortsExhausted, SnatPorts

CLIENT_A, CLIENT_B = bytes([198, 51, 100, 11]), bytes([198, 51, 100, 12])


def service(scheduler="rr", persistence_s=0.0, weights=(1, 1, 1)):
    config = VipConfig(name="web", address=ipaddress.IPv4Address("203.0.113.10"), port=80,
                       scheduler=scheduler, persistence_s=persistence_s)
    config.backends = [BackendConfig(address=ipaddress.IPv4Address(f"192.0.2.{11 + i}"), port=8080, weight=w)
                       for i, w in enumerate(weights)]
    return VirtualService(1, config)


def test_round_robin_over_the_backends_that_take_new_connections():
    s = service()
    assert [s.choose(CLIENT_A, 0).address for _ in range(3)] == ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
    s.backends[1].state = "down"
    s.changed()
    assert {s.choose(CLIENT_A, 0).address for _ in range(4)} == {"192.0.2.11", "192.0.2.13"}


def test_no_backend_is_counted():
    s = service()
    for b in s.backends:
        b.state = "drain"
    assert s.choose(CLIENT_A, 0) is None and s.counters["no_backend"] == 1


def test_persistence_keeps_a_client_on_its_backend_for_its_lifetime():
    s = service(persistence_s=10)
    first = s.choose(CLIENT_A, 0)
    assert all(s.choose(CLIENT_A, t) is first for t in (1, 5, 9))
    assert s.choose(CLIENT_B, 1) is not first, "other clients are still scheduled"
    assert s.counters["affinity_hits"] == 3
    s.scheduler = type(s.scheduler)()           # a scheduler change does not break affinity
    assert s.choose(CLIENT_A, 12) is first, "each use renews the affinity"
    s.expire_affinity(100)
    assert s.choose(CLIENT_A, 100) is not None and s.counters["affinity_hits"] == 4


def test_persistence_never_sends_to_a_backend_that_takes_no_new_connections():
    s = service(persistence_s=10)
    first = s.choose(CLIENT_A, 0)
    first.state = "down"
    s.forget_backend(first)
    s.changed()
    assert s.choose(CLIENT_A, 1) is not first


def test_snat_ports_start_at_a_random_port():
    """A restarted switch must not hand out its predecessor's ports (the backends' TIME_WAIT entries)."""
    snat, backend = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 11])
    firsts = {SnatPorts().allocate(6, snat, backend, 8080) for _ in range(20)}
    assert len(firsts) > 10 and all(1024 <= p <= 60999 for p in firsts)
    ports = SnatPorts()
    first = ports.allocate(6, snat, backend, 8080)
    assert ports.allocate(6, snat, backend, 8080) == (first + 1 if first < 60999 else 1024), "then round robin"


def test_snat_ports_are_unique_per_backend_and_reused_last():
    ports = SnatPorts(first=1024, last=1027, random_start=False)
    snat, backend = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 11])
    got = [ports.allocate(6, snat, backend, 8080) for _ in range(4)]
    assert got == [1024, 1025, 1026, 1027]
    with pytest.raises(PortsExhausted):
        ports.allocate(6, snat, backend, 8080)
    assert ports.allocate(6, snat, bytes([192, 0, 2, 12]), 8080) == 1024, "another backend has its own ports"
    ports.release(6, snat, backend, 8080, 1025)
    assert ports.allocate(6, snat, backend, 8080) == 1025
    assert ports.in_use() == 5 and ports.counters["exhausted"] == 1
