"""bench/floods.py runs end to end in its quick mode and measures every flood (it asserts no speed: the figures
are in docs/RELIABILITY.md "Floods and table bounds")."""
import json
import subprocess
import sys

import pytest


@pytest.mark.netns
def test_floods_bench_quick(tmp_path):
    out = tmp_path / "floods.json"
    run = subprocess.run([sys.executable, "bench/floods.py", "--quick", "--json", str(out)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"alone", "mac", "arp", "malformed"}
    assert all(row["l2_tcp_gbps"] > 0 and row["l3_tcp_gbps"] > 0 for row in results.values()), results
    assert all(results[kind]["flood_offered_pps"] > 0 for kind in ("mac", "arp", "malformed"))
    assert results["arp"]["refused"]["arp_rate_limited"] > 0
    assert results["malformed"]["refused"]["parse_errors_total"] > 0
    assert "alone" in run.stdout and "malformed" in run.stdout
