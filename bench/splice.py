"""The splice rewrite of one TCP segment (ps_tcp_splice_rewrite and its twin), in nanoseconds per call.

    .venv/bin/python bench/splice.py [--quick] [--repeat 5]

Three segments: a bare ACK (seq, ack, addresses, ports), an ACK with timestamps, and one with timestamps and a
3-block SACK at odd offsets (three checksum words per field). Both columns go through the Python API
(pyswitch.fastpath, pyswitch.refpath.splice), so the C figure includes the cffi call, the copy of the frame and
the building of the result: what a Python caller pays, an upper bound on what the datapath will pay in C. Each
figure is the best of --repeat rounds (other work on the machine only adds time); figures come from a shared,
loaded 2-core machine. A benchmark: it asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_splice_rewrite import BACKEND, SNAT, frame, sack, ts  # noqa: E402  (the tests' frame builder)

from pyswitch import fastpath  # noqa: E402
from pyswitch.datapath_types import Splice  # noqa: E402
from pyswitch.refpath import splice as twin  # noqa: E402

SPLICE = Splice(src=SNAT, dst=BACKEND, sport=50001, dport=8080, seq_delta=0x12345678, ack_delta=0x9ABCDEF0,
                tsval_delta=1000, tsecr_delta=2000, timestamps=True)
CASES = [
    ("ACK, 1460 bytes", frame(payload=bytes(1460))),
    ("ACK + timestamps", frame(options=b"\x01\x01" + ts(1, 2), payload=bytes(1460))),
    ("ACK + timestamps + 3 SACK blocks, odd offsets",
     frame(options=b"\x01" + ts(1, 2) + sack((1, 2), (3, 4), (5, 6)), payload=b"")),
]


def ns_per_call(fn, segment: bytes, number: int, repeat: int) -> float:
    timer = timeit.Timer(lambda: fn(segment, None, SPLICE))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred calls each, rough figures")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    number = 200 if args.quick else 20000
    repeat = 2 if args.quick else args.repeat
    print(f"{'segment':48} {'C ns/call':>10} {'Python ns/call':>15} {'ratio':>7}")
    for name, segment in CASES:
        assert fastpath.tcp_splice_rewrite(segment, None, SPLICE) == twin.tcp_splice_rewrite(segment, None, SPLICE)
        c = ns_per_call(fastpath.tcp_splice_rewrite, segment, number, repeat)
        py = ns_per_call(twin.tcp_splice_rewrite, segment, number, repeat)
        print(f"{name:48} {c:10.0f} {py:15.0f} {py / c:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
