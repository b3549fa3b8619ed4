"""Every constant in pyswitch/consts.py that has a PS_ twin in csrc/pyswitch.h equals the compiled one."""
import pytest

from pyswitch import consts
from pyswitch.fastpath import ffi, lib

TWINS = sorted(name for name in vars(consts)
               if name.isupper() and isinstance(getattr(consts, name), int) and hasattr(lib, "PS_" + name))


def test_there_are_twins():
    assert len(TWINS) >= 30


@pytest.mark.parametrize("name", TWINS)
def test_constant_equals_c(name):
    assert getattr(consts, name) == getattr(lib, "PS_" + name)


def test_sizes():
    assert ffi.sizeof("struct ps_flow_key") == consts.KEY_SIZE
    assert ffi.sizeof("struct ps_vnet_hdr") == consts.VNET_HDR_SIZE
    assert ffi.sizeof("struct ps_action") == 32
    assert len(consts.PARSE_ERROR_NAMES) == lib.PS_PE_COUNT


def test_port_kinds():
    assert consts.PORT_KINDS == {"afpacket": lib.PS_PORT_AFPACKET, "tap": lib.PS_PORT_TAP,
                                 "memory": lib.PS_PORT_MEMORY}


def test_compiled_version_is_the_package_version():
    from pyswitch import __version__, fastpath

    assert fastpath._BUILT_VERSION == __version__


def test_a_stale_build_fails_loudly(monkeypatch):
    """A .so built for another version must not load quietly: the import names both versions."""
    import importlib
    import sys

    import pyswitch

    monkeypatch.setattr(pyswitch, "__version__", "0.0.0-stale")
    monkeypatch.delitem(sys.modules, "pyswitch.fastpath")
    with pytest.raises(ImportError, match="built for pyswitch .* but this is pyswitch 0.0.0-stale"):
        importlib.import_module("pyswitch.fastpath")
