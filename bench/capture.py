"""What taps cost the C fast path: instructions per packet with no tap, with taps on other ports, with a capture
whose filter refuses every frame, with a capture that copies every frame, and with a mirror.

    .venv/bin/python bench/capture.py [--packets 12800] [--json bench/results/capture.json]

Counted by callgrind inside ps_dp_run only, as bench/dp_instructions.py does (whose machinery this uses): the
l2 scenario, 64-byte UDP frames in on port 0 and out on port 1, an exact-match-cache hit each.  The copies are
taken out of the capture buffer between runs, outside what is counted, as the switch's loop does.  The claim it
checks (docs/OBSERVABILITY_CAPTURE.md): a port nobody taps pays one bitmap test, and a tapped port pays the
filter and the copy, nothing more.

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dp_instructions  # noqa: E402
from pyswitch import consts  # noqa: E402

# name -> what it sets up, in words
VARIANTS = {
    "none": "no tap anywhere",
    "other-port": "a capture and a mirror on port 2, which these frames never cross",
    "filter-refuses": "a capture on port 0 whose filter (udp port 53) refuses every frame",
    "capture": "a capture on port 0 that copies every frame (no filter)",
    "capture-both": "a capture on port 0 (in) and one on port 1 (out): two copies a frame",
    "mirror": "port 0's received frames mirrored out of port 3",
}
# "udp port 53" as libpcap 1.10 compiles it for Ethernet (pyswitch.bpf.compile_filter gave this), written out so
# that the benchmark needs no libpcap.
UDP_PORT_53 = [(40, 0, 0, 12), (21, 0, 6, 34525), (48, 0, 0, 20), (21, 0, 15, 17), (40, 0, 0, 54), (21, 12, 0, 53),
               (40, 0, 0, 56), (21, 10, 11, 53), (21, 0, 10, 2048), (48, 0, 0, 23), (21, 0, 8, 17), (40, 0, 0, 20),
               (69, 6, 0, 8191), (177, 0, 0, 14), (72, 0, 0, 14), (21, 2, 0, 53), (72, 0, 0, 16), (21, 0, 1, 53),
               (6, 0, 0, 262144), (6, 0, 0, 0)]


def tap(dp, variant: str) -> None:
    if variant in ("other-port", "mirror"):
        for port in (2, 3):
            dp.add_port(port, "memory")
    if variant == "other-port":
        dp.capture_add(0, 2, consts.TAP_IN | consts.TAP_OUT)
        dp.mirror_set(2, [3], [3])
    elif variant == "filter-refuses":
        dp.capture_add(0, 0, consts.TAP_IN, program=UDP_PORT_53)
    elif variant == "capture":
        dp.capture_add(0, 0, consts.TAP_IN)
    elif variant == "capture-both":
        dp.capture_add(0, 0, consts.TAP_IN)
        dp.capture_add(1, 1, consts.TAP_OUT)
    elif variant == "mirror":
        dp.mirror_set(0, [3], [])


def child(variant: str, packets: int, frames_file: str) -> None:
    raw = Path(frames_file).read_bytes()
    size = dp_instructions.FRAME_SIZE
    frames = [raw[i:i + size] for i in range(0, len(raw), size)]
    dp, out_port, in_port = dp_instructions.setup("l2", frames)
    tap(dp, variant)
    copies = 0
    for ofs in range(0, packets, 64):
        for i in range(ofs, ofs + 64):
            dp.inject(in_port, frames[i % len(frames)])
        dp.run()
        dp.take(out_port)
        if variant == "mirror":
            dp.take(3)
        copies += len(dp.capture_take())
    stats = dp.stats()
    print(json.dumps({"rx_packets": stats["rx_packets"], "upcalls": stats["upcalls"], "copies": copies}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=12800)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--frames", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.variant, args.packets, args.frames)
        return 0
    dp_instructions.ensure_valgrind()
    results = {}
    with tempfile.TemporaryDirectory(prefix="psw-bench-") as tmp:
        for variant in args.variants.split(","):
            results[variant] = dp_instructions.count("l2", args.packets, Path(tmp), program=__file__,
                                                     child_args=("--variant", variant), label=variant)
    base = results.get("none", next(iter(results.values())))["without_memory_port_malloc"]
    print(f"{'variant':<15} {'instr/packet':>13} {'w/o malloc':>11} {'vs none':>8}  what")
    for variant, r in results.items():
        own = r["without_memory_port_malloc"]
        print(f"{variant:<15} {r['instructions_per_packet']:>13.0f} {own:>11.0f} {own / base:>7.2f}x  "
              f"{VARIANTS[variant]}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"packets": args.packets, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
