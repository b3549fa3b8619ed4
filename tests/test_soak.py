"""bench/soak.py runs end to end in a few seconds: connections churn through both VIPs, the switch's memory and
table are sampled, the table printed (the full ten-minute run and its figures: docs/RELIABILITY.md)."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.netns


def test_soak_quick(tmp_path):
    # Its own namespace names, so that it never meets a benchmark run on the same machine.
    env = dict(os.environ, PSW_BENCH_ID=f"s{os.getpid() % 1000}")
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, "bench/soak.py", "--minutes", "0.1", "--interval", "2", "--udp-rate", "50",
                          "--json", str(out)], capture_output=True, text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "RSS start" in run.stdout and "growth" in run.stdout, run.stdout
    result = json.loads(out.read_text())
    samples = result["samples"]
    assert len(samples) >= 3 and samples[0]["t_s"] == 0, samples
    assert all(s["rss_kib"] > 0 for s in samples)
    assert samples[-1]["inserts"] > 100 and result["tcp_requests"] > 100, result
    assert result["udp"]["answered"] > 0.5 * result["udp"]["sent"] > 0, result["udp"]
    assert result["vip_total_conns"]["udp"] > 0 and result["vip_total_conns"]["web"] > 0
    assert samples[-1]["events_dropped"] == 0
