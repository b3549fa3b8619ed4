"""The unit and differential suite passes against the fast path built with ASan and UBSan (tests/run_sanitized.py).

First that the run is what it says: the interpreter it starts imports the sanitized build, ASan sees a read one
byte past a buffer Python handed to C, and the build carries UBSan's checks. Then the suite itself, in one
subprocess; a sanitizer report there ends it with an error and the report is in the failure message.
"""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import run_sanitized  # noqa: E402
from run_sanitized import build_sanitized  # noqa: E402

SUITE_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def sanitized():
    module = build_sanitized.build()
    return module, run_sanitized.environment()


def run_python(env, code):
    return subprocess.run([sys.executable, "-P", "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_imports_the_sanitized_build(sanitized):
    module, env = sanitized
    out = run_python(env, "import pyswitch._fastpath as m, pyswitch.fastpath as f; print(m.__file__); "
                          "print(f.Datapath().kind)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [module, "c"]


def test_asan_sees_a_read_past_a_python_buffer(sanitized):
    _, env = sanitized
    out = run_python(env, "from pyswitch._fastpath import ffi, lib; b = ffi.new('uint8_t[]', 16); "
                          "lib.ps_csum(b, 17, 0)")
    assert out.returncode != 0
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in out.stderr and "ps_csum" in out.stderr


def test_the_build_carries_ubsan_checks(sanitized):
    module, _ = sanitized
    symbols = subprocess.run(["nm", "-D", "--undefined-only", module], capture_output=True, text=True,
                             check=True).stdout
    assert "__ubsan_handle_" in symbols and "__asan_report_" in symbols
    # -fno-sanitize-recover: only the handlers that abort are called.
    assert "_abort" in symbols.split("__ubsan_handle_")[1].split()[0]


@pytest.mark.timeout(SUITE_TIMEOUT_S + 60)  # the suite is a few minutes of tests in one: the default 300 s is per test
def test_unit_and_differential_suite_pass_sanitized(sanitized):
    result = subprocess.run([sys.executable, os.path.join(HERE, "run_sanitized.py"), "-x"], cwd=ROOT,
                            capture_output=True, text=True, timeout=SUITE_TIMEOUT_S)
    output = result.stdout + result.stderr
    tail = "\n".join(output.splitlines()[-80:])
    assert result.returncode == 0, tail
    assert not any(mark in output for mark in run_sanitized.SANITIZER_MARKS), tail
    assert " passed" in output.splitlines()[-1], tail
