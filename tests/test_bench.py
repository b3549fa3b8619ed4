"""The benchmarks run end to end in a quick mode (they measure, they never assert speed: docs/PERFORMANCE.md)."""
import json
import subprocess
import sys

import pytest


@pytest.mark.netns
def test_pps_quick(tmp_path):
    out = tmp_path / "pps.json"
    run = subprocess.run([sys.executable, "bench/pps.py", "--runs", "1", "--seconds", "0.5", "--flows", "1",
                          "--forwarders", "ceiling,pyswitch c,pyswitch c afxdp", "--json", str(out)],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"ceiling, 1 flows", "pyswitch c, 1 flows", "pyswitch c afxdp, 1 flows"}
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
