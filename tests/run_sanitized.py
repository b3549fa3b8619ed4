"""Runs the unit and differential suite against the fast path built with ASan and UBSan.

    .venv/bin/python tests/run_sanitized.py [pytest arguments]      # e.g. -x, or test files instead of SUITE
    PSW_SANITIZE_EXAMPLES=300 .venv/bin/python tests/run_sanitized.py  # every hypothesis test at full length

csrc/build_sanitized.py builds the extension into build/sanitized (a build of its own: the normal one is never
replaced), and pytest runs in a fresh interpreter that imports it: PYTHONPATH names that directory and -P keeps
the tree itself off sys.path.  The ASan runtime is preloaded, as a Python host that was not built with it needs.
PYTHONMALLOC=malloc gives every Python object (a frame's bytes too) ASan's redzones.  Leak detection is off, since
CPython keeps allocations to the end on purpose; every other ASan report and every
UBSan report ends the run with an error (halt_on_error, and the build's -fno-sanitize-recover).

SUITE is every test file that drives the C fast path without namespaces.  A property test runs with
PSW_SANITIZE_EXAMPLES examples (default 15) instead of its own count: the sanitizers find a bad access on the first
input that makes it, and the full counts run in the ordinary suite anyway.
"""
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "csrc"))

import build_sanitized  # noqa: E402

SUITE = ["test_fastpath_csum.py", "test_fastpath_datapath.py", "test_fastpath_flowtable.py", "test_fastpath_lpm.py",
         "test_fastpath_parse.py", "test_differential*.py", "test_conntrack.py", "test_conntrack_splice.py",
         "test_nat_actions.py", "test_offload.py", "test_tunnel.py", "test_route_action.py", "test_ring.py",
         "test_workers.py", "test_serve.py", "test_serve_hold.py", "test_l3_bounds.py", "test_consts.py",
         "test_splice_rewrite.py", "test_l7_parse*.py", "test_l7_rules.py", "test_bpf*.py", "test_taps_differential.py"]
EXAMPLES_ENV = "PSW_SANITIZE_EXAMPLES"
DEFAULT_EXAMPLES = 15
ASAN_OPTIONS = "detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1"
UBSAN_OPTIONS = "halt_on_error=1:print_stacktrace=1"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


def suite_files():
    files = []
    for pattern in SUITE:
        found = sorted(glob.glob(os.path.join(HERE, pattern)))
        if not found and "*" not in pattern:
            raise FileNotFoundError(f"tests/{pattern} is in the sanitized suite but does not exist")
        files += found
    return files


def environment(outdir=build_sanitized.DEFAULT_OUTDIR):
    env = dict(os.environ)
    env.update({
        "LD_PRELOAD": build_sanitized.runtime_preload(),
        "PYTHONPATH": os.pathsep.join(p for p in (outdir, env.get("PYTHONPATH")) if p),
        "ASAN_OPTIONS": ASAN_OPTIONS,
        "UBSAN_OPTIONS": UBSAN_OPTIONS,
        # Python's own allocator would hide a bad access to a bytes object's frame: its arenas have no redzones.
        "PYTHONMALLOC": "malloc",
        EXAMPLES_ENV: env.get(EXAMPLES_ENV, str(DEFAULT_EXAMPLES)),
    })
    return env


def command(args):
    """The pytest command line: the examples plugin (tests/sanitized_examples.py) and the files or 'args'."""
    files = [a for a in args if not a.startswith("-")]
    return [sys.executable, "-P", "-m", "pytest", "-p", "no:cacheprovider", "-p", "sanitized_examples", "-q",
            "--rootdir", ROOT, *args, *([] if files else suite_files())]


def check_import(env):
    """The interpreter pytest will run imports the sanitized build, not the tree's."""
    code = "import pyswitch._fastpath as m; print(m.__file__)"
    out = subprocess.run([sys.executable, "-P", "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip().startswith(build_sanitized.DEFAULT_OUTDIR):
        raise RuntimeError(f"the sanitized run would not import build/sanitized: {out.stdout} {out.stderr}")


def main(args):
    build_sanitized.build()
    env = environment()
    env["PYTHONPATH"] = os.pathsep.join((env["PYTHONPATH"], HERE))   # for -p sanitized_examples
    check_import(env)
    return subprocess.run(command(args), env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
