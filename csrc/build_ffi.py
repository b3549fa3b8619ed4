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


def _cdef():
    header = _read(os.path.join(HERE, "pyswitch.h"))
    match = re.search(r"/\* cdef begin \*/(.*)/\* cdef end \*/", header, re.S)
    if match is None:
        raise RuntimeError("csrc/pyswitch.h has no cdef markers")
    return match.group(1)


def _version():
    init = _read(os.path.join(ROOT, "pyswitch", "__init__.py"))
    return re.search(r'__version__ = "([^"]+)"', init).group(1)


def _sources():
    return sorted(os.path.join("csrc", name) for name in os.listdir(HERE) if name.endswith(".c"))


def _extra_cflags():
    # PYSWITCH_CFLAGS lets a build add sanitizers (-fsanitize=address,undefined) or -O0 -g.
    return os.environ.get("PYSWITCH_CFLAGS", "").split()


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "pyswitch._fastpath",
    '#include "pyswitch.h"\n',
    sources=_sources(),
    include_dirs=[HERE],
    define_macros=[("PS_VERSION_STR", '"%s"' % _version()), ("_GNU_SOURCE", "1")],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"] + _extra_cflags(),
    extra_link_args=_extra_cflags(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
