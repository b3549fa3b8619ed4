"""Builds pyswitch._fastpath with cffi (API mode, out of line).

The cdef is the marked part of csrc/pyswitch.h, so every declaration and
constant is written once, in C.  The package version is compiled in
(ps_version()) and pyswitch/fastpath.py refuses a build of another version.
"""
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# Headers whose marked part is the binding's cdef, in this order; http.h is the L7 request parsers', bpf.h the
# capture filters' classic BPF engine, tap.h the datapath's mirrors and captures (which use bpf.h's program).
CDEF_HEADERS = ("pyswitch.h", "http.h", "bpf.h", "tap.h")


def _cdef():
    parts = []
    for name in CDEF_HEADERS:
        header = _read(os.path.join(HERE, name))
        match = re.search(r"/\* cdef begin \*/(.*)/\* cdef end \*/", header, re.S)
        if match is None:
            raise RuntimeError(f"csrc/{name} has no cdef markers")
        parts.append(match.group(1))
    return "\n".join(parts)


def _version():
    init = _read(os.path.join(ROOT, "pyswitch", "__init__.py"))
    return re.search(r'__version__ = "([^"]+)"', init).group(1)


def _sources(absolute=False):
    # Relative to the tree's root for setup.py; absolute for a build elsewhere (cffi compiles in its tmpdir).
    return sorted(os.path.join(HERE if absolute else "csrc", name) for name in os.listdir(HERE) if name.endswith(".c"))


def _sanitize_flags():
    # PSW_SANITIZE=address,undefined builds the fast path with those sanitizers, stopping at the first report
    # (-fno-sanitize-recover), with frames and line numbers for their stack traces.  csrc/build_sanitized.py
    # builds such an extension into a directory of its own; docs/RELIABILITY.md says how to run it.
    sanitizers = os.environ.get("PSW_SANITIZE", "").strip()
    if not sanitizers:
        return []
    return ["-fsanitize=" + sanitizers, "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]


def _extra_cflags():
    # PYSWITCH_CFLAGS lets a build add flags of its own (-O0 -g); they come after the sanitizers' -O1.
    return _sanitize_flags() + os.environ.get("PYSWITCH_CFLAGS", "").split()


def make_ffibuilder(absolute_sources=False):
    """The builder of pyswitch._fastpath, with the flags the environment asks for (read now)."""
    builder = FFI()
    builder.cdef(_cdef())
    builder.set_source(
        "pyswitch._fastpath",
        "".join(f'#include "{name}"\n' for name in CDEF_HEADERS),
        sources=_sources(absolute_sources),
        include_dirs=[HERE],
        define_macros=[("PS_VERSION_STR", '"%s"' % _version()), ("_GNU_SOURCE", "1")],
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"] + _extra_cflags(),
        extra_link_args=_extra_cflags(),
    )
    return builder


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
