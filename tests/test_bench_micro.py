"""bench/micro.py runs end to end in its quick mode (it measures, it never asserts speed: docs/PERFORMANCE.md)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BOTH = ["parse, TCP/IPv4", "parse, UDP/IPv4 in a VLAN tag", "parse, TCP/IPv6",
        "csum, 64 bytes", "csum, 1500 bytes", "csum_update16", "csum_update32",
        "flow lookup, EMC hit", "flow lookup, masked hit (4th of 4 subtables)", "flow lookup, miss",
        "LPM lookup, /24 hit", "LPM lookup, /28 hit",
        "HTTP head, curl GET (6 lines)", "HTTP head, 15 fields (683 bytes)", "HTTP find cookie (2nd of 2)",
        "TLS SNI, openssl ClientHello (322 bytes)"]
PYTHON_ONLY = ["Maglev build, 10 backends", "Maglev build, 100 backends"]


def test_micro_quick(tmp_path):
    out = tmp_path / "micro.json"
    run = subprocess.run([sys.executable, "bench/micro.py", "--quick", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(out.read_text())["results"]
    assert list(results) == BOTH + PYTHON_ONLY
    for operation in BOTH:
        row = results[operation]
        assert row["c"]["ns_per_op"] > 0 and row["python"]["ns_per_op"] > 0, (operation, row)
        assert row["ratio"] > 0
    for operation in PYTHON_ONLY:
        assert set(results[operation]) == {"python"} and results[operation]["python"]["ns_per_op"] > 0
    assert "ratio (Python/C)" in run.stdout
    for operation in BOTH + PYTHON_ONLY:
        assert operation in run.stdout
