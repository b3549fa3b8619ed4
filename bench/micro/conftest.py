"""Fixtures of the micro-benchmarks (bench/micro.py runs them; see its docstring).

The modules here are named bench_*.py, not test_*.py, so that no test run collects them, even one pointed at
bench/ by mistake; this conftest makes pytest collect them when it is pointed at bench/micro itself.
"""
import pytest

from pyswitch import fastpath, refpath

IMPLEMENTATIONS = {"c": fastpath, "python": refpath}     # name in the table -> the module with that API


def pytest_collect_file(file_path, parent):
    # A file named on the command line pytest collects by itself, whatever its name: collecting it here too would
    # run it twice.
    if parent.session.isinitpath(file_path):
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request, benchmark):
    """pyswitch.fastpath (C through cffi) or pyswitch.refpath (its Python twin): the same functions and classes."""
    benchmark.extra_info["implementation"] = request.param
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def timed(benchmark):
    """benchmark(fn, *args) filed under `operation`, the row of bench/micro.py's table it belongs to.

    Returns fn's result, so that a benchmark can check it timed the case it names (a hit is a hit).
    """
    def run(operation, fn, *args):
        benchmark.group = operation
        benchmark.extra_info["operation"] = operation
        return benchmark(fn, *args)
    return run
