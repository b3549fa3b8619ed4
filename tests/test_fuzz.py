"""Coverage-guided fuzzing of the C fast path on every build (csrc/fuzz/, docs/RELIABILITY.md "Fuzzing and sanitizers").

The libFuzzer targets are built with ASan and UBSan, every input of the seed corpus (tests/fuzz/corpus/TARGET/,
real captures) and of the regression inputs (tests/fuzz/crashes/TARGET/, every crash found so far) is replayed,
then each target fuzzes for its share of PSW_FUZZ_SECONDS (default 60 in all). Any crash, leak, sanitizer report
or broken FUZZ_CHECK fails the test, which names the input libFuzzer saved: copy it into tests/fuzz/crashes/TARGET/
with a name that says what it found, and fix the C (and its Python twin where it has one).
"""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "csrc", "fuzz", "build.sh")
OUTDIR = os.path.join(ROOT, "build", "fuzz")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
CRASHES = os.path.join(ROOT, "tests", "fuzz", "crashes")
TARGETS = ["fuzz_parse", "fuzz_datapath", "fuzz_l7"]
SECONDS_ENV = "PSW_FUZZ_SECONDS"
DEFAULT_SECONDS = 60
MIN_SEEDS = 20  # the corpus must not be lost or emptied by accident
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "contract broken")
# Stop at the first report; leaks are reported (libFuzzer checks them per input); a slow input is a finding too.
FUZZ_ENV = {"ASAN_OPTIONS": "halt_on_error=1:abort_on_error=1:detect_leaks=1",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
FLAGS = ["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]


@pytest.fixture(scope="module")
def targets():
    subprocess.run([BUILD, OUTDIR], check=True, capture_output=True)
    return {name: os.path.join(OUTDIR, name) for name in TARGETS}


def run_target(binary, args, timeout):
    env = {**os.environ, **FUZZ_ENV}
    result = subprocess.run([binary, *FLAGS, *args], env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    return result.returncode, output


def report(name, output):
    lines = output.splitlines()
    saved = [line for line in lines if "Test unit written to" in line]
    return (f"{name} failed; {saved[-1] if saved else 'no input saved'}\n" + "\n".join(lines[-60:]))


def inputs(directory, name):
    return sorted(glob.glob(os.path.join(directory, name, "*")))


@pytest.mark.parametrize("name", TARGETS)
def test_corpus_and_regressions_replay(targets, name, tmp_path):
    seeds = inputs(CORPUS, name)
    assert len(seeds) >= MIN_SEEDS, f"tests/fuzz/corpus/{name} has {len(seeds)} seeds (make_seeds.py writes them)"
    files = seeds + inputs(CRASHES, name)
    code, output = run_target(targets[name], [f"-artifact_prefix={tmp_path}/", *files], timeout=120)
    assert code == 0 and not any(m in output for m in SANITIZER_MARKS), report(name, output)
    assert f"Executed {files[-1]}" in output, report(name, output)


@pytest.mark.parametrize("name", TARGETS)
def test_bounded_fuzz(targets, name, tmp_path):
    seconds = max(1, int(os.environ.get(SECONDS_ENV, DEFAULT_SECONDS)) // len(TARGETS))
    work = tmp_path / "corpus"
    shutil.copytree(os.path.join(CORPUS, name), work)
    # New inputs go to the first directory, a copy: the corpus in the tree changes only through make_seeds.py.
    crashes = os.path.join(CRASHES, name)
    args = [f"-max_total_time={seconds}", f"-artifact_prefix={tmp_path}/", str(work),
            *([crashes] if os.path.isdir(crashes) else [])]
    code, output = run_target(targets[name], args, timeout=seconds + 120)
    assert code == 0 and not any(m in output for m in SANITIZER_MARKS), report(name, output)
    runs = [line for line in output.splitlines() if line.startswith("stat::number_of_executed_units")]
    # It fuzzed, not just loaded: thousands of executions a second even on a loaded machine.
    assert runs and int(runs[0].split(":")[-1]) > 100 * seconds, report(name, output)
