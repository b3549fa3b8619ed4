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


def test_connection_tables():
    assert ffi.sizeof("struct ps_conn_tuple") == 16
    assert ffi.sizeof("struct ps_conn") == 88
    assert ffi.sizeof("struct ps_conn_event") == 32
    assert ffi.sizeof("struct ps_ct_stats") == 8 * (2 + lib.PS_CS_COUNT + 11 + 6)
    assert ffi.sizeof("struct ps_splice") == 32
    assert lib.PS_UPCALL_L7 == consts.UPCALL_L7 == consts.UPCALL_CONN_MISS + 1     # the next free reason
    assert consts.CONN_F_HOLD == lib.PS_CONN_F_HOLD == 0x100 and consts.CONN_F_SPLICED == lib.PS_CONN_F_SPLICED == 0x200
    assert len(consts.CONN_STATE_NAMES) == lib.PS_CS_COUNT
    assert ffi.sizeof("struct ps_ring_backend") == 16
    assert ffi.sizeof("struct ps_ring_stats") == 8 * 4
    assert consts.CONN_MODES == {"nat": lib.PS_CONN_NAT, "fullnat": lib.PS_CONN_FULLNAT, "dsr": lib.PS_CONN_DSR,
                                 "ipip": lib.PS_CONN_IPIP, "gre": lib.PS_CONN_GRE}
    assert consts.CT_TIMEOUTS_MS == {lib.PS_CS_SYN: lib.PS_CT_SYN_TIMEOUT_MS,
                                     lib.PS_CS_ESTABLISHED: lib.PS_CT_ESTABLISHED_TIMEOUT_MS,
                                     lib.PS_CS_FIN_WAIT: lib.PS_CT_FIN_WAIT_TIMEOUT_MS,
                                     lib.PS_CS_CLOSE: lib.PS_CT_CLOSE_TIMEOUT_MS,
                                     lib.PS_CS_UDP: lib.PS_CT_UDP_TIMEOUT_MS}


def test_port_kinds():
    assert consts.PORT_KINDS == {"afpacket": lib.PS_PORT_AFPACKET, "tap": lib.PS_PORT_TAP,
                                 "memory": lib.PS_PORT_MEMORY, "afxdp": lib.PS_PORT_AFXDP}
    assert consts.XDP_MODES == {lib.PS_XDP_MODE_NATIVE: "native", lib.PS_XDP_MODE_GENERIC: "generic"}


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
