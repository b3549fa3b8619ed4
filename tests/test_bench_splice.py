"""bench/splice.py runs end to end in its quick mode and prints its table (it measures, it never asserts speed)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_splice_bench_quick():
    run = subprocess.run([sys.executable, "bench/splice.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[-1] == "ratio" and len(lines) == 4
    for line in lines[1:]:
        c, py, ratio = (float(x) for x in line.split()[-3:])
        assert c > 0 and py > 0 and ratio > 0, line
