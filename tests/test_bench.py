"""The benchmarks run end to end in a quick mode (they measure, they never assert speed: docs/PERFORMANCE.md)."""
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.netns
def test_pps_quick(tmp_path):
    out = tmp_path / "pps.json"
    run = subprocess.run([sys.executable, "bench/pps.py", "--runs", "1", "--seconds", "0.5", "--flows", "1",
                          "--forwarders", "ceiling,pyswitch c", "--json", str(out)],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"ceiling, 1 flows", "pyswitch c, 1 flows"}
    assert all(r["delivered_pps"] > 0 for r in results.values()), results
    assert "vs ceiling" in run.stdout


def test_conns_quick(tmp_path):
    out = tmp_path / "conns.json"
    run = subprocess.run([sys.executable, "bench/conns.py", "--conns", "2000", "--json", str(out)],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    rates = json.loads(out.read_text())["new_conns_per_s"]
    assert set(rates) == {"c ring", "c slow path", "python ring", "python slow path"}
    assert all(rate > 0 for rate in rates.values())


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
