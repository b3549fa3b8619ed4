"""The benchmark suite runs end to end in its quick mode (it measures, it never asserts speed: docs/PERFORMANCE.md).

bench/micro.py has its own test (test_bench_micro.py); everything else goes through bench/suite.py --quick, which
runs each program for a fraction of a second with its JSON, then the targets table and the chart.
"""
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.netns
def test_suite_quick(tmp_path):
    run = subprocess.run([sys.executable, "bench/suite.py", "--quick", "--only", "pps,tcp,lb,tcp-conns,conns,memory",
                          "--results", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((tmp_path / "suite.json").read_text())
    assert summary["programs"] == dict.fromkeys(["pps", "tcp", "lb", "tcp-conns", "conns", "memory"], True), \
        run.stdout + run.stderr

    pps = json.loads((tmp_path / "pps.json").read_text())["results"]
    assert {(r["scenario"], r["forwarder"]) for r in pps.values()} == {
        ("l2", "ceiling"), ("l2", "pyswitch c"), ("l2", "pyswitch c afxdp"), ("l2", "linux bridge"), ("l3", "pyswitch c"),
        ("l3", "linux routing"), ("l4-nat", "pyswitch c"), ("l4-nat", "nftables dnat")}
    assert all(r["delivered_pps"] > 0 for r in pps.values()), pps
    assert all(r["core1_ns_per_packet"] > 0 for r in pps.values() if r["forwarder"].startswith(("ceiling", "pyswitch")))
    tcp = json.loads((tmp_path / "tcp.json").read_text())["results"]
    assert tcp["linux bridge"]["tcp_gbps"] > 0 and tcp["pyswitch c"]["tcp_gbps"] > 0
    lb = json.loads((tmp_path / "lb.json").read_text())["results"]
    assert lb["nat c"]["requests_ok"] == 20
    conns = json.loads((tmp_path / "tcp-conns.json").read_text())["results"]
    assert conns["nat rr"]["conns_per_s"] > 0 and conns["nat rr"]["errors"] == 0
    assert conns["nat rr"]["upcalls_per_conn"] > 0.5        # the slow path scheduled them
    rates = json.loads((tmp_path / "conns.json").read_text())["new_conns_per_s"]
    assert set(rates) == {f"{d} {row}" for d in ("c", "python") for row in ("ring", "slow path", "stage rr")}
    assert all(rate > 0 for rate in rates.values())
    memory = json.loads((tmp_path / "memory.json").read_text())
    assert memory["conns"] == 5000 and memory["evictions"] == memory["refused"] == 0

    targets = {t["target"]: t for t in summary["targets"]}
    assert "L2 64 B 256 flows: pyswitch C / ceiling" in targets and "met" in run.stdout
    assert (tmp_path / "suite.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_refpath_cost_quick():
    run = subprocess.run([sys.executable, "bench/refpath_cost.py", "--frames", "256", "--rounds", "1",
                          "--datapaths", "python,c"], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split() for line in run.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["python"] * 3 + ["c"] * 3, run.stdout


@pytest.mark.netns
def test_refpath_io_cost_quick():
    # Its own namespace name, so that it never meets a benchmark run on the same machine.
    env = dict(os.environ, PSW_BENCH_ID=f"t{os.getpid() % 1000}")
    run = subprocess.run([sys.executable, "bench/refpath_cost.py", "--io", "--rounds", "1"], capture_output=True,
                         text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sendmsg (transmit)" in run.stdout
