"""The datapath's own scaling with [switch] workers: frames per second of 1 and 2 (or more) workers, with no kernel
I/O and no traffic generator competing for the cores.

    .venv/bin/python bench/workers.py [--workers 1,2] [--scenarios l2,l3,l4-nat] [--rounds 8] [--passes 3]
                                      [--json FILE]

bench/pps.py measures real ports, but on this 2-core machine its generator (and the kernel's receive work for it)
needs a core of its own, so a second worker has none to run on.  Here the "generator" runs first: Python fills
memory ports (16 input ports, 4032 frames each per round, spread over the workers as a fanout hash would spread
256 flows), then sleeps in serve() while the worker threads forward them, and only that part is timed.  A worker's
frames are written on another core than the one it forwards them on, as the kernel writes a ring frame on the
receiving core: so one worker, which is the caller's own thread, does not read its frames back from its own cache.  Each frame
costs a worker what a real one costs it (parse, exact-match cache, actions) plus a memory port's queue and copy
(instead of a ring frame and sendmmsg).  Scenarios:

    l2      one flow per input port: OUTPUT to its output port
    l3      ROUTE on every input port: longest-prefix match, next hop, neighbor, TTL, MAC rewrite
    l4-nat  LB on every input port to a UDP VIP in nat mode, 256 established connections per port: every packet
            looks its connection up in the one shared table, under its lock

Worker K's thread is pinned to core K mod the cores (one worker is no thread: the caller's own, as in a switch).
Memory ports allocate every frame; run it with GLIBC_TUNABLES=glibc.malloc.tcache_count=65535 (it re-executes
itself so if that is not set), so that a worker freeing frames Python allocated does not wait for the lock of
Python's malloc arena: real ports allocate nothing.
`ns/frame` is the workers' own CPU time (user + system) per frame: equal for 1 and 2 workers means they share
nothing but the cores.  Each figure is the best of
--passes passes (the machine is shared).  A benchmark, not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pyswitch import actions as A, consts, fastpath  # noqa: E402
from pyswitch.datapath_types import Conn, ConnTuple  # noqa: E402
from pyswitch.flowkey import FlowKey  # noqa: E402
from pyswitch.refpath.csum import csum  # noqa: E402

IN_PORTS = 32                       # input ports; input port i sends to port IN_PORTS + i
FRAMES_PER_PORT = 4032              # per port and round (63 batches): a memory queue holds 4096, and the sentinel
FLOWS = 256                         # UDP source ports per input port
GW_MAC, HOST_MAC = b"\x02\x00\x00\x00\xff\x01", b"\x02\x00\x00\x00\x00\x10"
VIP, VIP_ID, VIP_PORT, BACKEND_PORT = ipaddress.IPv4Address("203.0.113.10").packed, 1, 9, 8080
SENTINEL_TYPE = 0x88B5              # IEEE local experimental EtherType: a flow sends such a frame up
SENTINEL = GW_MAC + HOST_MAC + SENTINEL_TYPE.to_bytes(2, "big") + bytes(46)


def ip4(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def client(i: int) -> bytes:
    return ip4(f"198.19.{i}.1")


def backend(i: int) -> bytes:
    return ip4(f"198.18.{i}.2")


def udp_frame(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + 18, 0) + bytes(18)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst))
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    return GW_MAC + HOST_MAC + b"\x08\x00" + bytes(ip) + udp


def make_dp(scenario: str, workers: int):
    """A datapath with IN_PORTS pairs of memory ports, set up for `scenario`; the frames of each input port."""
    dp = fastpath.Datapath(workers=workers, max_upcalls=256)
    port_mask = FlowKey.mask_of("in_port")
    frames = {}
    for i in range(IN_PORTS):
        out = IN_PORTS + i
        dp.add_port(i, "memory")
        dp.add_port(out, "memory")
        dst = VIP if scenario == "l4-nat" else backend(i)
        frames[i] = [udp_frame(client(i), dst, 10000 + k, VIP_PORT) for k in range(FLOWS)]
        if scenario == "l2":
            dp.flow_put(FlowKey(in_port=i).pack(), port_mask, 0, [A.output(out)], now_ms=0)
            continue
        # l3 and l4-nat: each backend subnet is a VLAN of its own behind output port `out`.
        dp.nexthop_set(i + 1, "connected", i + 1, src_mac=GW_MAC)
        dp.route_add(ip4(f"198.18.{i}.0"), 24, i + 1)
        dp.neigh_set(i + 1, backend(i), HOST_MAC, out)
        dp.flow_put(FlowKey(in_port=i).pack(), port_mask, 0,
                    [A.lb(VIP_ID)] if scenario == "l4-nat" else [A.route()], now_ms=0)
        if scenario == "l4-nat":
            for k in range(FLOWS):
                dp.conn_add(Conn(ConnTuple(17, client(i), VIP, 10000 + k, VIP_PORT),
                                 ConnTuple(17, backend(i), client(i), BACKEND_PORT, 10000 + k), backend(i), bytes(4),
                                 "nat", consts.CS_UDP, VIP_ID, i))
    # A worker takes its frames port by port in number order, 64 per port and run, so the sentinel queued last on
    # the last input port, behind as many frames as every other port holds, comes up only after all of them.
    dp.flow_put(FlowKey(in_port=IN_PORTS - 1, eth_type=SENTINEL_TYPE).pack(), FlowKey.mask_of("in_port", "eth_type"),
                10, [A.upcall(1)], now_ms=0)
    return dp, frames


def worker_core(worker: int) -> int:
    return worker % (os.cpu_count() or 1)


def pin_workers() -> None:
    for tid in os.listdir("/proc/self/task"):
        name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        if name.startswith("psw-worker-"):
            os.sched_setaffinity(int(tid), {worker_core(int(name.rsplit("-", 1)[1]))})


def worker_cpu_ns() -> int:
    """The worker threads' time on a CPU so far, in ns (schedstat: exact, where /proc/.../stat counts ticks)."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        if Path(f"/proc/self/task/{tid}/comm").read_text().strip().startswith("psw-worker-"):
            total += int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
    return total


def measure(scenario: str, workers: int, rounds: int) -> dict:
    """Frames per second and worker CPU per frame over `rounds` rounds of IN_PORTS * FRAMES_PER_PORT frames."""
    dp, frames = make_dp(scenario, workers)
    all_cores = os.sched_getaffinity(0)
    try:
        pin_workers()
        elapsed, total, caller_cpu = 0.0, 0, 0.0
        cpu0 = worker_cpu_ns()
        per_round = IN_PORTS * FRAMES_PER_PORT
        for _ in range(rounds):
            # The fanout's part: flow k of a port goes to worker k mod N, each of a worker's queues gets
            # FRAMES_PER_PORT / N frames, as many per round whatever N is.  Each worker's frames are written on a
            # core other than its own, as a kernel writes ring frames on the receiving core: otherwise one worker
            # (the caller's thread) would read back frames from its own cache and more workers would not.
            for worker in range(workers):
                os.sched_setaffinity(0, {worker_core(worker + 1)})
                for i in range(IN_PORTS):
                    flows = frames[i]
                    for n in range(worker, FRAMES_PER_PORT, workers):
                        dp.inject(i, flows[n % FLOWS], worker=worker)
                dp.inject(IN_PORTS - 1, SENTINEL, worker=worker)
            # One worker is this thread: to its core; with more, it only sleeps in serve().
            os.sched_setaffinity(0, {worker_core(0)} if workers == 1 else all_cores)
            start, start_cpu = time.monotonic(), time.thread_time()
            done = 0
            while done < workers:               # serve() returns as soon as a worker's sentinel came up
                dp.serve(1000)
                done += sum(1 for u in dp.upcalls() if u.userdata == 1)
            elapsed += time.monotonic() - start
            caller_cpu += time.thread_time() - start_cpu
            total += per_round
            out = sum(len(dp.take(IN_PORTS + i)) for i in range(IN_PORTS))
            if out != per_round:
                raise RuntimeError(f"{scenario}, {workers} workers: {out} frames out of {per_round}")
        # One worker is the caller's thread itself (no thread is started); more are threads of their own.
        cpu = worker_cpu_ns() - cpu0 if workers > 1 else caller_cpu * 1e9
        shares = [w["rx_packets"] for w in dp.worker_stats()]
    finally:
        os.sched_setaffinity(0, all_cores)
        dp.close()
    return {"scenario": scenario, "workers": workers, "frames": total, "frames_per_s": round(total / elapsed),
            "worker_cpu_ns_per_frame": round(cpu / total),
            "worker_share": [round((s - rounds) / (sum(shares) - rounds * workers), 3) for s in shares]}


def main() -> int:
    if "tcache_count" not in os.environ.get("GLIBC_TUNABLES", ""):
        # glibc reads its tunables at startup: enlarge the per-thread cache of freed chunks and start again.
        env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"),
                                                                    "glibc.malloc.tcache_count=65535"])))
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--scenarios", default="l2,l3,l4-nat")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    results = {}
    for _ in range(args.passes):
        for scenario in args.scenarios.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                r = measure(scenario, workers, args.rounds)
                key = f"{scenario}, {workers} worker{'s' if workers > 1 else ''}"
                if key not in results or r["frames_per_s"] > results[key]["frames_per_s"]:
                    results[key] = r

    print(f"{'scenario, workers':<24} {'frames/s':>10} {'vs 1 worker':>12} {'ns/frame':>9}  share")
    for key, r in results.items():
        base = results.get(f"{r['scenario']}, 1 worker", r)["frames_per_s"] or 1
        ns = str(r["worker_cpu_ns_per_frame"])
        print(f"{key:<24} {r['frames_per_s']:>10} {r['frames_per_s'] / base:>12.2f} {ns:>9}  {r['worker_share']}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"rounds": args.rounds, "passes": args.passes, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
