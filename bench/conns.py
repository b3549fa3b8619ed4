"""New connections per second in one process: scheduled from a Maglev ring, by the slow path on each upcall, and by
the whole switch's VIP stage.

    .venv/bin/python bench/conns.py [--conns 50000] [--json FILE]

No namespaces: datapaths with memory ports, a VIP in nat mode with three backends, and SYNs from distinct clients
(198.18.0.0/15) injected in batches of 256.  Rows, for each datapath:

    ring        the VIP's Maglev table is written into the datapath, whose LB action adds each connection itself
                (what a maglev VIP does)
    slow path   no ring: every SYN comes up as CONN_MISS and is scheduled the way the VIP stage does it, minus
                its bookkeeping: Maglev pick, conn_add, execute LB again
    stage rr    a whole Switch (pyswitch/switch.py) with memory ports, its L3 and VIP stages, a round-robin VIP:
                what one new connection costs the real slow path, every counter and event included

All rows pay the same per-frame cost of injecting from Python and taking the outputs, so the ratios understate
what the ring saves on real ports; bench/tcp_conns.py measures real TCP connections.  Rates are per second of
this process's CPU time (time.process_time), which other load on the machine changes far less than wall time.

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pyswitch import actions as A, consts, fastpath, refpath  # noqa: E402
from pyswitch.config import from_dict  # noqa: E402
from pyswitch.datapath_types import Conn, ConnTuple, RingBackend  # noqa: E402
from pyswitch.flowkey import FlowKey  # noqa: E402
from pyswitch.lb.backend import Backend  # noqa: E402
from pyswitch.lb.schedulers import Maglev  # noqa: E402
from pyswitch.refpath.csum import csum  # noqa: E402
from pyswitch.switch import Switch  # noqa: E402

VIP, VIP_ID = ipaddress.IPv4Address("203.0.113.10").packed, 1
BACKENDS = [Backend(f"192.0.2.{i}", 8080) for i in (11, 12, 13)]
GW_MAC, CLIENT_MAC, BACKEND_MAC = b"\x02\x00\x00\x00\xff\x01", b"\x02\x00\x00\x00\x00\x10", b"\x02\x00\x00\x00\x00\x05"
CLIENT_PORT, BACKEND_PORT = 1, 2
BATCH = 256


def syn(client: bytes, sport: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, client, VIP))
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    return GW_MAC + CLIENT_MAC + b"\x08\x00" + bytes(ip) + tcp


def make_dp(impl, scheduler: Maglev, ring: bool):
    dp = impl.Datapath(max_upcalls=BATCH)
    for port in (CLIENT_PORT, BACKEND_PORT):
        dp.add_port(port, "memory")
    dp.nexthop_set(1, "connected", 10, src_mac=GW_MAC)
    dp.nexthop_set(2, "connected", 20, src_mac=GW_MAC)
    dp.route_add(ipaddress.IPv4Address("198.18.0.0").packed, 15, 1)
    dp.route_add(ipaddress.IPv4Address("192.0.2.0").packed, 24, 2)
    for b in BACKENDS:
        dp.neigh_set(20, ipaddress.IPv4Address(b.address).packed, BACKEND_MAC, BACKEND_PORT)
    dp.flow_put(FlowKey(in_port=CLIENT_PORT).pack(), FlowKey.mask_of("in_port"), 1, [A.lb(VIP_ID)], now_ms=0)
    if ring:
        dp.ring_config(VIP_ID, scheduler.table_size)
        for index, b in enumerate(BACKENDS):
            dp.ring_backend(VIP_ID, scheduler.ids[b.key],
                            RingBackend(ipaddress.IPv4Address(b.address).packed, b.port, consts.CONN_NAT, index + 1))
        dp.ring_write(VIP_ID, list(enumerate(scheduler.ring)))
    return dp


def schedule_upcalls(dp, scheduler: Maglev) -> None:
    """What VipStage._new_connection does for each CONN_MISS, minus its bookkeeping."""
    for up in dp.upcalls():
        data = up.data
        client = ConnTuple(6, data[26:30], data[30:34], int.from_bytes(data[34:36], "big"), 80)
        b = scheduler.pick(BACKENDS, client.src)
        address = ipaddress.IPv4Address(b.address).packed
        reply = ConnTuple(6, address, client.src, b.port, client.sport)
        dp.conn_add(Conn(client, reply, address, bytes(4), consts.CONN_NAT, consts.CS_SYN, VIP_ID,
                         BACKENDS.index(b) + 1))
        dp.execute(up.in_port, data, up.vnet, [A.lb(VIP_ID)])


def run(impl, ring: bool, frames: list[bytes]) -> float:
    scheduler = Maglev()
    scheduler.on_backends_changed(BACKENDS)
    dp = make_dp(impl, scheduler, ring)
    sent = 0
    start = time.process_time()
    for ofs in range(0, len(frames), BATCH):
        for frame in frames[ofs:ofs + BATCH]:
            dp.inject(CLIENT_PORT, frame)
        while dp.run():             # a run takes one batch of the port's queue
            if not ring:
                schedule_upcalls(dp, scheduler)
            sent += len(dp.take(BACKEND_PORT))
    elapsed = time.process_time() - start
    conns = dp.conn_stats()["conns"]
    dp.close()
    if sent != len(frames) or conns != len(frames):
        raise SystemExit(f"{impl.__name__} ring={ring}: {sent} sent, {conns} connections of {len(frames)}")
    return len(frames) / elapsed


def arp_request(sender_mac: bytes, sender: bytes, target: bytes) -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, sender_mac, sender, bytes(6), target)
    return b"\xff" * 6 + sender_mac + b"\x08\x06" + arp


def stage_switch(datapath: str, scheduler: str, control_dir: str) -> Switch:
    """A whole switch with two memory ports: clients on VLAN 10 (port 0), the backends on VLAN 20 (port 1)."""
    config = from_dict({
        "switch": {"name": "bench-conns", "datapath": datapath, "control_dir": control_dir},
        "port": [{"name": "clients", "type": "afpacket", "device": "psw-none0", "vlan": 10},
                 {"name": "backends", "type": "afpacket", "device": "psw-none1", "vlan": 20}],
        "vlan": [{"id": 10, "address": "198.18.0.254/15"}, {"id": 20, "address": "192.0.2.1/24"}],
        "vip": [{"name": "web", "address": "203.0.113.10", "port": 80, "protocol": "tcp", "mode": "nat",
                 "scheduler": scheduler, "health": {"type": "none"},
                 # Every SYN here stays half-open, as in a SYN flood: the VIP's flood guards would rightly
                 # throttle them (docs/RELIABILITY.md), and this measures the slow path's own rate.
                 "max_embryonic": 0, "upcall_rate": 0,
                 "backend": [{"address": b.address, "port": b.port} for b in BACKENDS]}],
    })
    for port in config.ports:
        port.type = "memory"            # a config file cannot say so: memory ports are for tests and benchmarks
    switch = Switch(config)
    switch.open()
    # The backends ask for their gateway, so the switch knows their MACs before the first SYN.
    for index, b in enumerate(BACKENDS):
        mac = BACKEND_MAC[:5] + bytes([index + 1])
        switch.dp.inject(1, arp_request(mac, ipaddress.IPv4Address(b.address).packed,
                                        ipaddress.IPv4Address("192.0.2.1").packed))
    switch.step(0)
    switch.dp.take(1)
    return switch


def run_stage(datapath: str, scheduler: str, frames: list[bytes]) -> float:
    """SYNs from the clients' port through a whole switch; returns new connections per second."""
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as control_dir:
        switch = stage_switch(datapath, scheduler, control_dir)
        gw_mac = switch.l3.svis[10].mac      # the SYNs go to the switch's MAC on the clients' VLAN
        try:
            sent = 0
            start = time.process_time()
            for ofs in range(0, len(frames), BATCH):
                for frame in frames[ofs:ofs + BATCH]:
                    switch.dp.inject(0, gw_mac + frame[6:])
                for _ in range((BATCH + consts.BATCH - 1) // consts.BATCH):
                    switch.step(0)
                sent += len(switch.dp.take(1))
            elapsed = time.process_time() - start
            conns = switch.dp.conn_stats()["conns"]
        finally:
            switch.close()
    if sent != len(frames) or conns != len(frames):
        raise SystemExit(f"stage {datapath} {scheduler}: {sent} sent, {conns} connections of {len(frames)}")
    return len(frames) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=50000)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    base = int(ipaddress.IPv4Address("198.18.0.1"))
    frames = [syn(ipaddress.IPv4Address(base + i // 4).packed, 1024 + i % 4) for i in range(args.conns)]
    results = {}
    for name, impl in (("c", fastpath), ("python", refpath)):
        for ring in (True, False):
            results[f"{name} {'ring' if ring else 'slow path'}"] = round(run(impl, ring, frames))
        results[f"{name} stage rr"] = round(run_stage(name, "rr", frames))
    print(f"{'datapath, scheduling':<22} {'new conns/s':>12} {'vs slow path':>13}")
    for name, rate in results.items():
        slow = results[name.split()[0] + " slow path"]
        print(f"{name:<22} {rate:>12} {rate / slow:>13.2f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"conns": args.conns, "new_conns_per_s": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
