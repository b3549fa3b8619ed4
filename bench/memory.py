"""Resident memory of the fast path's connection table: what 1,000,000 connections cost.

    .venv/bin/python bench/memory.py [--conns 1000000] [--json bench/results/memory.json]

No namespaces: one C datapath with memory ports and a maglev VIP in nat mode (bench/conns.py's), sized for
--conns connections (max_conns).  SYNs from distinct clients (198.18.0.0/15, four source ports each) go in
through the ring, so the datapath adds every connection itself.  The process's resident set size (VmRSS) is read
before the first connection and after the last; the difference per connection is the figure, beside the table's
own accounting (bytes_per_conn: one entry plus its share of both hash indexes).  Frames are built a batch at a
time, so the Python objects they need are not counted.

A benchmark, not a test: it asserts nothing and never fails a test run.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conns import BACKENDS, BATCH, CLIENT_PORT, BACKEND_PORT, make_dp, syn  # noqa: E402

from pyswitch import fastpath  # noqa: E402
from pyswitch.lb.schedulers import Maglev  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=1_000_000)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    scheduler = Maglev()
    scheduler.on_backends_changed(BACKENDS)
    dp = make_dp(fastpath, scheduler, ring=True)
    dp.conn_config(args.conns)
    base = int(ipaddress.IPv4Address("198.18.0.1"))
    first = [syn(ipaddress.IPv4Address(base).packed, 1024)]
    dp.inject(CLIENT_PORT, first[0])                # the table allocates its indexes with the first connection
    dp.run()
    dp.take(BACKEND_PORT)
    before = rss_bytes()
    for ofs in range(1, args.conns, BATCH):
        for i in range(ofs, min(ofs + BATCH, args.conns)):
            dp.inject(CLIENT_PORT, syn(ipaddress.IPv4Address(base + i // 4).packed, 1024 + i % 4))
        while dp.run():                             # a run takes one batch of the port's queue
            dp.take(BACKEND_PORT)
    after = rss_bytes()
    stats = dp.conn_stats()
    dp.close()
    added = stats["conns"] - 1
    result = {"conns": stats["conns"], "max_conns": args.conns, "rss_before_bytes": before, "rss_after_bytes": after,
              "rss_bytes_per_conn": round((after - before) / added, 1) if added > 0 else None,
              "table_bytes_used": stats["bytes_used"], "table_bytes_per_conn": stats["bytes_per_conn"],
              "evictions": stats["evictions"], "refused": stats["refused"]}
    print(f"{'connections':<28} {stats['conns']:>14,}")
    print(f"{'RSS before':<28} {before / 2**20:>11.1f} MiB")
    print(f"{'RSS after':<28} {after / 2**20:>11.1f} MiB")
    print(f"{'RSS per connection':<28} {result['rss_bytes_per_conn']:>12} B")
    print(f"{'table bytes per connection':<28} {stats['bytes_per_conn']:>12} B   (target <= 200)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
