# The C fast path is built here because cffi_modules has no pyproject.toml form; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"])
