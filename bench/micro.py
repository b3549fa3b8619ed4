"""Micro-benchmarks: each C fast-path function beside its Python twin, in nanoseconds per call, and the ratio.

    .venv/bin/python bench/micro.py [--quick] [--passes 3] [--statistic min|median] [--json FILE]

Runs the pytest-benchmark modules in bench/micro (parse, checksums, flow-table and LPM lookups, the L7 request
parsers, Maglev's table build) on both implementations and prints one row per operation. Both columns are calls through the same Python
API (pyswitch.fastpath and pyswitch.refpath), so the C figure includes the cffi call and the conversion of its
result into Python objects: it is what a Python caller pays, not what the datapath pays per packet inside C.
Maglev is Python only (the control plane builds its table) and is reported apart.

Each figure is the fastest round (--statistic min, the default) of many, each round a loop of calls: other work on
the machine only ever adds time, so the fastest round is the one it disturbed least. Work that runs for seconds
can still slow every round of one benchmark (on this 2-core VM it doubles a few figures in a run), so the whole
set runs --passes times and each figure is its best pass; the JSON has every pass's figure, the medians and the
spread. --quick makes one pass of a few seconds, for the tests; its figures are rough.

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["bench_parse.py", "bench_csum.py", "bench_flowtable.py", "bench_lpm.py", "bench_l7.py",
           "bench_maglev.py"]  # table order
IMPLEMENTATIONS = ("c", "python")
# pytest-benchmark options. A round lasts at least min-time, so a call of a few hundred nanoseconds runs a
# thousand times per round and the timer's own cost vanishes in it; rounds repeat until max-time per benchmark.
FULL_RUN = ["--benchmark-min-time=0.001", "--benchmark-max-time=1.0", "--benchmark-min-rounds=5",
            "--benchmark-warmup=on", "--benchmark-warmup-iterations=1000"]
QUICK_RUN = ["--benchmark-min-time=0.0001", "--benchmark-max-time=0.005", "--benchmark-min-rounds=2",
             "--benchmark-warmup=off"]


def run_benchmarks(quick: bool) -> list[dict]:
    """Runs bench/micro under pytest-benchmark and returns its JSON report's benchmarks, in the order they ran."""
    with tempfile.TemporaryDirectory(prefix="psw-micro-") as tmp:
        report = Path(tmp) / "benchmarks.json"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-quiet",
                   f"--benchmark-json={report}", *(QUICK_RUN if quick else FULL_RUN),
                   *(str(ROOT / "bench" / "micro" / m) for m in MODULES)]
        # No __pycache__ from a run as root in a tree that others edit as themselves.
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        # Run from a test under pytest-xdist, the worker's variables would make pytest-benchmark think this run is
        # a worker too, and it disables itself there.
        env = {k: v for k, v in env.items() if not k.startswith("PYTEST_XDIST_")}
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"pytest failed ({run.returncode}):\n{run.stdout}{run.stderr}")
        return json.loads(report.read_text())["benchmarks"]


def summarise(passes: list[list[dict]], statistic: str) -> dict:
    """operation -> {implementation: its figures in ns, ..., "ratio": python / c when both ran}.

    Each implementation's figures are those of its best pass; `pass_ns` keeps every pass's, to show the spread.
    """
    results: dict[str, dict] = {}
    for benchmarks in passes:
        for b in benchmarks:
            stats = b["stats"]
            row = results.setdefault(b["extra_info"]["operation"], {})
            figures = {
                "ns_per_op": round(stats[statistic] * 1e9, 1),
                "min_ns": round(stats["min"] * 1e9, 1),
                "median_ns": round(stats["median"] * 1e9, 1),
                "iqr_ns": round(stats["iqr"] * 1e9, 1),
                "rounds": stats["rounds"],
                "calls_per_round": stats["iterations"],
            }
            implementation = b["extra_info"]["implementation"]
            earlier = row.get(implementation)
            pass_ns = (earlier["pass_ns"] if earlier else []) + [figures["ns_per_op"]]
            if earlier is not None and earlier["ns_per_op"] <= figures["ns_per_op"]:
                figures = earlier
            row[implementation] = {**figures, "pass_ns": pass_ns}
    for row in results.values():
        if all(name in row for name in IMPLEMENTATIONS):
            row["ratio"] = round(row["python"]["ns_per_op"] / row["c"]["ns_per_op"], 2)
    return results


def print_tables(results: dict, statistic: str, passes: int) -> None:
    both = {op: row for op, row in results.items() if "ratio" in row}
    alone = {op: row for op, row in results.items() if "ratio" not in row}
    width = max(len(op) for op in results)
    print(f"{'operation':<{width}} {'C ns/op':>10} {'Python ns/op':>13} {'ratio (Python/C)':>17}")
    for op, row in both.items():
        print(f"{op:<{width}} {row['c']['ns_per_op']:>10,.0f} {row['python']['ns_per_op']:>13,.0f} "
              f"{row['ratio']:>17.2f}")
    if alone:
        print("\nPython only (the control plane builds Maglev's table; the datapath only indexes it):")
        print(f"{'operation':<{width}} {'ms/op':>10}")
        for op, row in alone.items():
            (figures,) = row.values()
            print(f"{op:<{width}} {figures['ns_per_op'] / 1e6:>10.1f}")
    print(f"\n{statistic} of each benchmark's rounds, best of {passes} pass(es); C through pyswitch.fastpath, "
          f"Python through pyswitch.refpath")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds, with rough figures")
    parser.add_argument("--passes", type=int, help="whole runs of every benchmark, the best one counted "
                                                     "(default: 3, or 1 with --quick)")
    parser.add_argument("--statistic", choices=("min", "median"), default="min",
                        help="which of each benchmark's round times the table shows (default: min)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    if args.passes is not None and args.passes < 1:
        parser.error("--passes must be at least 1")
    passes = args.passes or (1 if args.quick else 3)
    results = summarise([run_benchmarks(args.quick) for _ in range(passes)], args.statistic)
    print_tables(results, args.statistic, passes)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "passes": passes, "statistic": args.statistic,
                       "python": platform.python_version(), "cpus": os.cpu_count(), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
