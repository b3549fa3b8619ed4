"""The C LPM (csrc/lpm.c, DIR-24-8): the shared cases in lpm_cases.py, plus what only the table layout can get wrong."""
import pytest

from lpm_cases import *  # noqa: F401,F403 - the shared test functions
from lpm_cases import a
from pyswitch import fastpath


@pytest.fixture
def Lpm():
    return fastpath.Lpm


def test_a_slash_24_boundary_is_exact():
    lpm = fastpath.Lpm()
    lpm.add(a("192.0.2.0"), 23, 1)
    assert [lpm.lookup(a(x)) for x in ("192.0.1.255", "192.0.2.0", "192.0.3.255", "192.0.4.0")] == [0, 1, 1, 0]


def test_group_folds_back_into_its_covering_route():
    """After the last long rule of a /24 goes, every address of it answers the covering route again."""
    lpm = fastpath.Lpm(max_tbl8=1)
    lpm.add(a("203.0.0.0"), 8, 7)
    lpm.add(a("203.0.113.64"), 27, 8)
    lpm.add(a("203.0.113.0"), 16, 9)
    assert lpm.delete(a("203.0.113.64"), 27)
    assert {lpm.lookup(bytes([203, 0, 113, i])) for i in range(256)} == {9}
