"""bench/l7.py runs end to end in its quick mode: every row (pyswitch's l7 VIP, HAProxy in http and tcp mode, the
direct ceiling, pyswitch routing) measured, its table printed, and nothing of it left behind.  It asserts no speed:
the figures are in docs/L7_BENCH.md."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS = ["direct", "pyswitch routed", "pyswitch l7", "haproxy http", "haproxy tcp"]
MEASURES = ["new_conn_rps", "keepalive_rps", "download_gbps", "upload_gbps"]


@pytest.mark.netns
def test_l7_bench_quick(tmp_path):
    # Its own namespace and link names, so that it never meets a benchmark run on the same machine.
    bench_id = f"q{os.getpid() % 1000}"
    out = tmp_path / "l7.json"
    run = subprocess.run([sys.executable, "bench/l7.py", "--quick", "--json", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=180, env=dict(os.environ, PSW_BENCH_ID=bench_id))
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(out.read_text())
    results = data["results"]
    assert list(results) == ROWS, results.keys()
    for row, r in results.items():
        assert all(r[key] > 0 for key in MEASURES), (row, r)
        assert r["new_conn"]["requests"] > 0 and r["keepalive"]["requests"] > 0, (row, r)
    assert results["pyswitch l7"]["new_conn"]["l7_counters"]["l7_spliced"] > 0, results["pyswitch l7"]
    assert results["haproxy http"]["new_conn"]["cpu_us_per_request"] > 0
    assert len(data["load_average"]["start"]) == 3 and len(data["load_average"]["end"]) == 3
    assert "ratio to haproxy http" in run.stdout and "ratio to direct" in run.stdout, run.stdout

    prefix = f"psw-{bench_id}"
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert prefix not in namespaces and prefix not in links, namespaces + links
