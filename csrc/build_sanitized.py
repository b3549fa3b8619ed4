"""Builds pyswitch._fastpath with sanitizers into a directory of its own, beside the normal build, never over it.

    .venv/bin/python csrc/build_sanitized.py [OUTDIR] [--sanitize address,undefined]

OUTDIR (default build/sanitized) gets a `pyswitch` package whose modules are links to the tree's own and whose
_fastpath is the sanitized build, so that PYTHONPATH=OUTDIR imports it instead of the normal one.  A Python host
needs the sanitizer runtime loaded first: runtime_preload() names the library for LD_PRELOAD.  The build is
redone only when a source under csrc/ or the version is newer than it.  tests/run_sanitized.py runs the unit and
differential suite against it.
"""
import argparse
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUTDIR = os.path.join(ROOT, "build", "sanitized")
DEFAULT_SANITIZE = "address,undefined"
SANITIZE_ENV = "PSW_SANITIZE"  # read by csrc/build_ffi.py


def _sources():
    return (glob.glob(os.path.join(HERE, "*.[ch]")) + [os.path.join(HERE, "build_ffi.py"), __file__,
            os.path.join(ROOT, "pyswitch", "__init__.py")])


def built_module(outdir):
    """The sanitized extension in 'outdir', or None."""
    found = glob.glob(os.path.join(outdir, "pyswitch", "_fastpath*.so"))
    return found[0] if found else None


def _stale(outdir, sanitize):
    module = built_module(outdir)
    stamp = os.path.join(outdir, "sanitize")
    if module is None or not os.path.exists(stamp):
        return True
    with open(stamp) as f:
        if f.read().strip() != sanitize:
            return True
    built = os.path.getmtime(module)
    return any(os.path.getmtime(path) > built for path in _sources())


def _link_package(outdir):
    """outdir/pyswitch: a link to every entry of the tree's pyswitch/ but its own _fastpath builds."""
    package = os.path.join(outdir, "pyswitch")
    os.makedirs(package, exist_ok=True)
    source = os.path.join(ROOT, "pyswitch")
    for name in os.listdir(source):
        if name.startswith("_fastpath") or name == "__pycache__":
            continue
        link = os.path.join(package, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join(source, name), link)


def build(outdir=DEFAULT_OUTDIR, sanitize=DEFAULT_SANITIZE):
    """Builds (if stale) and returns the path of the sanitized extension."""
    outdir = os.path.abspath(outdir)
    if not _stale(outdir, sanitize):
        return built_module(outdir)
    _link_package(outdir)
    for old in glob.glob(os.path.join(outdir, "pyswitch", "_fastpath*")):
        os.remove(old)
    # A fresh interpreter, so that the environment seen is this one; cffi compiles in outdir, which is why the
    # sources are named by absolute paths, and the objects land there too.
    code = ("import sys; sys.path.insert(0, 'csrc'); from build_ffi import make_ffibuilder; "
            f"make_ffibuilder(absolute_sources=True).compile(tmpdir={outdir!r}, verbose=False)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, SANITIZE_ENV: sanitize}, check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(outdir, "sanitize"), "w") as f:
        f.write(sanitize + "\n")
    module = built_module(outdir)
    if module is None:
        raise RuntimeError(f"the sanitized build left no pyswitch/_fastpath*.so in {outdir}")
    return module


def runtime_preload(sanitize=DEFAULT_SANITIZE, cc=None):
    """What LD_PRELOAD must hold for a Python host of the build: the compiler's ASan runtime (it must come before
    every other library), or nothing when ASan is not among the sanitizers (UBSan's runtime is linked in)."""
    if "address" not in sanitize.split(","):
        return ""
    cc = cc or os.environ.get("CC", "gcc")
    path = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if not os.path.isabs(path):
        raise RuntimeError(f"{cc} knows no libasan.so (install its sanitizer runtime)")
    return os.path.realpath(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", default=DEFAULT_OUTDIR)
    parser.add_argument("--sanitize", default=DEFAULT_SANITIZE)
    args = parser.parse_args()
    module = build(args.outdir, args.sanitize)
    print(f"sanitized extension: {module}")
    print(f"run with: LD_PRELOAD={runtime_preload(args.sanitize)} PYTHONPATH={os.path.abspath(args.outdir)} "
          "ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 python -P ...")


if __name__ == "__main__":
    main()
