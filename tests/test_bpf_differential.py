"""csrc/bpf.c against its twin and against libpcap: hypothesis programs (valid by construction, and anything at all)
where the checkers must refuse the same first instruction and the interpreters return the same value; then real
tcpdump expressions, compiled by libpcap, run on scapy frames by C, the twin and pcap_offline_filter()."""
import ctypes.util

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpf_oracle
from bpf_inputs import (CAPTURES, EXPECTED, EXPRESSIONS, any_programs, frames, mutated_captures, valid_programs,
                        wirelens)
from pyswitch import bpf
from pyswitch._fastpath import lib
from pyswitch.refpath import bpf as twin

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
needs_libpcap = pytest.mark.skipif(ctypes.util.find_library("pcap") is None, reason="libpcap is not installed")


def c_check(program) -> int:
    """ps_bpf_check's index of the first bad instruction, or -1 when it accepts."""
    return -1 - lib.ps_bpf_check(bpf.to_c(program), len(program))


def twin_check(program) -> int:
    found = twin.problem(program)
    return -1 if found is None else found[0]


def c_execute(program, frame: bytes, wirelen: int) -> int:
    """ps_bpf_run without the check first, on a buffer of exactly len(frame) bytes (for ASan)."""
    return lib.ps_bpf_run(bpf.to_c(program), len(program), bpf.exact_buffer(frame), wirelen, len(frame))


@SETTINGS
@given(valid_programs())
def test_valid_programs_are_accepted_by_both(program):
    assert c_check(program) == twin_check(program) == -1, program


@SETTINGS
@given(any_programs)
def test_the_checkers_refuse_the_same_instruction(program):
    assert c_check(program) == twin_check(program), program


@SETTINGS
@given(any_programs)
def test_refusals_say_the_same(program):
    results = []
    for impl in (bpf, twin):
        try:
            impl.check(program)
            results.append(None)
        except ValueError as err:
            results.append(str(err))
    assert results[0] == results[1], program


@SETTINGS
@given(valid_programs(), frames, wirelens)
def test_valid_programs_run_the_same(program, frame, wirelen):
    assert bpf.run(program, frame, wirelen) == twin.run(program, frame, wirelen), (program, frame, wirelen)


@SETTINGS
@given(any_programs, frames, st.integers(0, 2000))
def test_unchecked_programs_run_the_same(program, frame, wirelen):
    # Refused programs too: ps_bpf_run must stay inside its arrays whatever it is given (the sanitized suite).
    assert c_execute(program, frame, wirelen) == twin.execute(program, frame, wirelen), (program, frame)


@needs_libpcap
@SETTINGS
@given(valid_programs(), frames, wirelens)
def test_valid_programs_run_as_libpcap_runs_them(program, frame, wirelen):
    wirelen = len(frame) if wirelen is None else wirelen
    expected = bpf.run(program, frame, wirelen)
    assert bpf_oracle.offline_filter(bpf_oracle.zeroing_prefix() + program, frame, wirelen) == expected, program


# The opcodes and operands on which libpcap 1.10's bpf_validate() and ours mean the same (docs/BPF.md says where
# its validator is looser: opcodes spelled another way, shifts by a constant >= 32, wrapped backward jumps).
_comparable = st.lists(st.tuples(st.sampled_from(sorted(twin.OPCODES)), st.integers(0, 6), st.integers(0, 6),
                                 st.integers(0, 40) | st.integers(0, 0x7FFFFFFF)), min_size=1, max_size=12).filter(
    lambda prog: all(k < 32 for code, _, _, k in prog if code in (twin.ALU | twin.LSH, twin.ALU | twin.RSH)))


@needs_libpcap
@SETTINGS
@given(_comparable | valid_programs())
def test_the_checker_decides_as_libpcaps_validator(program):
    assert (c_check(program) == -1) == bpf_oracle.validate(program), program


@pytest.fixture(scope="module")
def compiled():
    if ctypes.util.find_library("pcap") is None:
        pytest.skip("libpcap is not installed")
    return {expression: bpf.compile_filter(expression) for expression in EXPRESSIONS}


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_expressions_on_real_frames(compiled, expression):
    program = compiled[expression]
    bpf.check(program)
    twin.check(program)
    results = {name: (bpf.run(program, frame, wirelen), twin.run(program, frame, wirelen),
                      bpf_oracle.offline_filter(program, frame, wirelen))
               for name, (frame, wirelen) in CAPTURES.items()}
    disagree = {name: r for name, r in results.items() if len(set(r)) != 1}
    assert not disagree, disagree
    matched = {name for name, (c, _, _) in results.items() if c}
    assert matched and matched != set(CAPTURES), "an expression that tells no frames apart tests nothing"
    assert all(c in (0, 262144) for c, _, _ in results.values())
    if expression in EXPECTED:
        assert {name for name in matched if "/" not in name} == EXPECTED[expression]


def test_truncated_captures_are_compared():
    assert sum(len(frame) < wirelen for frame, wirelen in CAPTURES.values()) >= 40


@needs_libpcap
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(EXPRESSIONS), mutated_captures())
def test_expressions_on_damaged_frames(compiled, expression, capture):
    frame, wirelen = capture
    program = compiled[expression]
    c = bpf.run(program, frame, wirelen)
    assert c == twin.run(program, frame, wirelen) == bpf_oracle.offline_filter(program, frame, wirelen), \
        (expression, frame, wirelen)
