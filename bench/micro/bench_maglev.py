"""Maglev table build (pyswitch/lb/maglev.py), 65537 slots. Python only: as in Katran, the control plane builds the
table and the datapath only indexes it, so there is no C twin to compare with."""
import pytest

from pyswitch.lb import maglev
from pyswitch.lb.backend import Backend


@pytest.mark.parametrize("n_backends", [10, 100])
def test_build(benchmark, timed, n_backends):
    benchmark.extra_info["implementation"] = "python"
    backends = [Backend(f"10.{i // 250}.0.{i % 250 + 1}", 8080) for i in range(n_backends)]
    table = timed(f"Maglev build, {n_backends} backends", maglev.build, backends)
    assert len(table) == maglev.TABLE_SIZE and maglev.EMPTY not in table
