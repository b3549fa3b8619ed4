"""Instructions per packet in the C fast path, counted by callgrind: repeatable where time on this VM is not.

    .venv/bin/python bench/dp_instructions.py [--packets 12800] [--json bench/results/dp-instructions.json]

Runs itself under `valgrind --tool=callgrind --toggle-collect=ps_dp_run`, so only what a datapath run executes is
counted (parse, lookup, actions, rewrites, the port I/O), once per scenario, with memory ports.  Memory ports
malloc and free a copy of every frame they queue, which real ports do not: the table shows those libc rows apart
and gives the total without them.  Scenarios (64-byte UDP frames):

    l2        an L2 flow (in_port, VLAN, MACs) -> OUTPUT; 256 source ports, so every lookup hits the exact-match cache
    l2-100k   the same flow, 107,399 distinct 5-tuples: the exact-match cache misses, the masked table answers
    l3        a flow -> ROUTE: longest-prefix match, neighbor, TTL and checksum, new MACs
    l4-nat    a maglev VIP in nat mode, 256 clients whose connections exist: lookup, rewrite, route

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pyswitch import actions as A, fastpath  # noqa: E402
from pyswitch.flowkey import FlowKey  # noqa: E402
from pyswitch.refpath.csum import csum  # noqa: E402

SCENARIOS = ("l2", "l2-100k", "l3", "l4-nat")
MAC_A, MAC_B, GW_MAC = b"\x02\x00\x00\x00\x00\x11", b"\x02\x00\x00\x00\x00\x12", b"\x02\x00\x00\x00\xff\x01"
FRAME_SIZE = 60                                 # every frame here: 64 bytes on the wire
MALLOC_ROWS = ("malloc", "free", "_int_malloc", "_int_free", "unlink_chunk", "malloc_consolidate")


def udp_frame(dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes, sport: int, dport: int = 9) -> bytes:
    """A 60-byte IPv4/UDP frame (64 on the wire) with a valid IP checksum and no UDP checksum."""
    udp = struct.pack("!HHHH", sport, dport, 26, 0) + bytes(18)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst))
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    return dst_mac + src_mac + b"\x08\x00" + bytes(ip) + udp


def frames_of(scenario: str) -> list[bytes]:
    """The scenario's frames; built by the parent (Python under callgrind would take minutes for 100k)."""
    ip = lambda text: ipaddress.IPv4Address(text).packed  # noqa: E731
    if scenario == "l2":
        return [udp_frame(MAC_B, MAC_A, ip("198.51.100.11"), ip("198.51.100.12"), 10000 + i) for i in range(256)]
    if scenario == "l2-100k":
        return [udp_frame(MAC_B, MAC_A, ip(f"198.51.100.{20 + i % 211}"), ip("198.51.100.12"), 10000 + i % 509)
                for i in range(211 * 509)]
    if scenario == "l3":
        return [udp_frame(GW_MAC, MAC_A, ip("198.51.100.11"), ip("192.0.2.11"), 10000 + i) for i in range(256)]
    base = int(ipaddress.IPv4Address("198.18.0.1"))
    return [udp_frame(GW_MAC, b"\x02\x00\x00\x00\x00\x10", ipaddress.IPv4Address(base + i).packed,
                      ip("203.0.113.10"), 40000, 80) for i in range(256)]


def setup(scenario: str, frames: list[bytes]):
    """(datapath, the port the frames leave by, the port they come in by)."""
    ip = lambda text: ipaddress.IPv4Address(text).packed  # noqa: E731
    if scenario.startswith("l2"):
        dp = fastpath.Datapath()
        for port in (0, 1):
            dp.add_port(port, "memory")
        key = fastpath.parse(frames[0], 0).key
        dp.flow_put(key, FlowKey.mask_of("in_port", "vlan_tci", "eth_src", "eth_dst", vlan_vid_only=True), 0,
                    [A.output(1)])
        return dp, 1, 0
    if scenario == "l3":
        dp = fastpath.Datapath()
        for port in (0, 1):
            dp.add_port(port, "memory")
        dp.nexthop_set(1, "connected", 20, src_mac=GW_MAC)
        dp.route_add(ip("192.0.2.0"), 24, 1)
        dp.neigh_set(20, ip("192.0.2.11"), MAC_B, 1)
        dp.flow_put(FlowKey(in_port=0).pack(), FlowKey.mask_of("in_port"), 1, [A.Action(fastpath.consts.ACT_ROUTE)])
        return dp, 1, 0
    from conns import BACKEND_PORT, BACKENDS, CLIENT_PORT, make_dp
    from pyswitch.lb.schedulers import Maglev
    scheduler = Maglev()
    scheduler.on_backends_changed(BACKENDS)
    dp = make_dp(fastpath, scheduler, ring=True)
    for frame in frames:                # the connections exist before counting starts
        dp.execute(CLIENT_PORT, frame, bytes(10), [A.lb(1)])
    dp.take(BACKEND_PORT)
    return dp, BACKEND_PORT, CLIENT_PORT


def child(scenario: str, packets: int, frames_file: str) -> None:
    """What runs under callgrind: `packets` frames through ps_dp_run, 64 a run."""
    raw = Path(frames_file).read_bytes()
    frames = [raw[i:i + FRAME_SIZE] for i in range(0, len(raw), FRAME_SIZE)]
    dp, out_port, in_port = setup(scenario, frames)
    for ofs in range(0, packets, 64):
        for i in range(ofs, ofs + 64):
            dp.inject(in_port, frames[i % len(frames)])
        dp.run()
        dp.take(out_port)
    stats = dp.stats()
    print(json.dumps({"rx_packets": stats["rx_packets"], "upcalls": stats["upcalls"]}))


def count(scenario: str, packets: int, workdir: Path, program: str = __file__, child_args: tuple = (),
          label: str | None = None) -> dict:
    """Runs `program --child SCENARIO ...` under callgrind (bench/capture.py passes its own) and counts."""
    label = label or scenario
    out = workdir / f"callgrind-{label}.out"
    frames_file = workdir / f"frames-{label}"
    frames_file.write_bytes(b"".join(frames_of(scenario)))
    run = subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=ps_dp_run", f"--callgrind-out-file={out}",
                          sys.executable, program, "--child", scenario, "--packets", str(packets), "--frames",
                          str(frames_file), *child_args],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    if run.returncode != 0:
        raise SystemExit(f"callgrind failed for {label}: {run.stderr[-2000:]}")
    counted = json.loads(run.stdout.strip().splitlines()[-1])
    annotate = subprocess.run(["callgrind_annotate", "--inclusive=no", str(out)], capture_output=True, text=True)
    rows = {}
    for line in annotate.stdout.splitlines():
        match = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(\S+):(\S+)", line)
        if match and match.group(2) != "PROGRAM":
            name = match.group(3).split(".")[0]
            rows[name] = rows.get(name, 0) + int(match.group(1).replace(",", ""))
    n = counted["rx_packets"]
    total = sum(rows.values())
    malloc = sum(v for k, v in rows.items() if k in MALLOC_ROWS)
    return {"packets": n, "upcalls": counted["upcalls"], "instructions_per_packet": round(total / n, 1),
            "without_memory_port_malloc": round((total - malloc) / n, 1),
            "by_function": {k: round(v / n, 1) for k, v in sorted(rows.items(), key=lambda kv: -kv[1])}}


def ensure_valgrind() -> None:
    """callgrind is what counts: installed with apt when missing (bench/capture.py uses this too)."""
    if shutil.which("valgrind") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "valgrind"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=12800)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--frames", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.packets, args.frames)
        return 0
    ensure_valgrind()
    results = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        for scenario in args.scenarios.split(","):
            results[scenario] = count(scenario, args.packets, Path(tmp))
    print(f"{'scenario':<10} {'instr/packet':>13} {'w/o malloc':>11}  top functions (instructions per packet)")
    for scenario, r in results.items():
        top = ", ".join(f"{k} {v:.0f}" for k, v in list(r["by_function"].items())[:6])
        print(f"{scenario:<10} {r['instructions_per_packet']:>13.0f} {r['without_memory_port_malloc']:>11.0f}  {top}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"packets": args.packets, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
