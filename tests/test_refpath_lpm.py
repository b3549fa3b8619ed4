"""The twin's LPM (pyswitch/refpath/lpm.py): the shared cases in lpm_cases.py."""
import pytest

from lpm_cases import *  # noqa: F401,F403 - the shared test functions
from pyswitch import refpath


@pytest.fixture
def Lpm():
    return refpath.Lpm
