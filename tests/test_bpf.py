"""The classic BPF engine (csrc/bpf.c, its twin pyswitch/refpath/bpf.py, pyswitch/bpf.py): hand-written programs
for every opcode and edge, the checker's refusals by index, and compile_filter's use of libpcap."""
import ctypes.util

import pytest

import bpf_oracle
from pyswitch import bpf
from pyswitch._fastpath import ffi, lib
from pyswitch.refpath import bpf as twin
from pyswitch.refpath.bpf import (ABS, ADD, ALU, AND, B, DIV, H, IMM, IND, JA, JEQ, JGE, JGT, JMP, JSET, LD, LDX,
                                  LEN, LSH, MEM, MISC, MOD, MSH, MUL, NEG, OR, RET, RSH, ST, STX, SUB, TAX, TXA, XOR,
                                  A, K, W, X)

IMPLS = pytest.mark.parametrize("impl", [bpf, twin], ids=["c", "python"])
FRAME = bytes(range(0x10, 0x30))        # 32 bytes: 0x10 0x11 ... 0x2f


def i(code, k=0, jt=0, jf=0):
    return (code, jt, jf, k)


RET_A = i(RET | A)


def test_constants_equal_c():
    names = ["LD", "LDX", "ST", "STX", "ALU", "JMP", "RET", "MISC", "W", "H", "B", "IMM", "ABS", "IND", "MEM", "LEN",
             "MSH", "ADD", "SUB", "MUL", "DIV", "OR", "AND", "LSH", "RSH", "NEG", "MOD", "XOR", "JA", "JEQ", "JGT",
             "JGE", "JSET", "K", "X", "A", "TAX", "TXA", "MAXINSNS", "MEMWORDS"]
    assert {n: getattr(twin, n) for n in names} == {n: getattr(lib, "PS_BPF_" + n) for n in names}
    assert ffi.sizeof("struct ps_bpf_insn") == 8 and ffi.offsetof("struct ps_bpf_insn", "k") == 4
    assert len(twin.OPCODES) == 49


def test_c_and_the_twin_know_the_same_opcodes():
    # k = 1 is a good operand for every opcode here (memory index, divisor, shift, ja), so only the code decides.
    known = {code for code in range(1 << 16)
             if lib.ps_bpf_check(bpf.to_c([i(code, 1), i(RET | K), i(RET | K)]), 3) == 0}
    assert known == twin.OPCODES
    assert all(twin.problem([i(code, 1), i(RET | K), i(RET | K)]) is None for code in known)


# name -> (program, frame, wirelen or None, expected return)
RUNS = {
    "ret k": ([i(RET | K, 96)], b"", None, 96),
    "ret a starts 0": ([RET_A], FRAME, None, 0),
    "ld w abs": ([i(LD | W | ABS, 4), RET_A], FRAME, None, 0x14151617),
    "ld h abs": ([i(LD | H | ABS, 4), RET_A], FRAME, None, 0x1415),
    "ld b abs": ([i(LD | B | ABS, 4), RET_A], FRAME, None, 0x14),
    "ld w abs ends at the last byte": ([i(LD | W | ABS, 28), RET_A], FRAME, None, 0x2C2D2E2F),
    "ld w abs one past": ([i(LD | W | ABS, 29), i(RET | K, 1)], FRAME, None, 0),
    "ld h abs at the last byte": ([i(LD | H | ABS, 30), RET_A], FRAME, None, 0x2E2F),
    "ld h abs one past": ([i(LD | H | ABS, 31), i(RET | K, 1)], FRAME, None, 0),
    "ld b abs the last byte": ([i(LD | B | ABS, 31), RET_A], FRAME, None, 0x2F),
    "ld b abs one past": ([i(LD | B | ABS, 32), i(RET | K, 1)], FRAME, None, 0),
    "ld b abs far past": ([i(LD | B | ABS, 0xFFFFFFFF), i(RET | K, 1)], FRAME, None, 0),
    "ld w abs k near 2^32": ([i(LD | W | ABS, 0xFFFFFFFE), i(RET | K, 1)], FRAME, None, 0),
    "a linux ancillary load is out of bounds": ([i(LD | B | ABS, 0xFFFFF000 + 44), i(RET | K, 1)], FRAME, None, 0),
    "any load from an empty frame": ([i(LD | B | ABS, 0), i(RET | K, 1)], b"", None, 0),
    "ld w ind": ([i(LDX | IMM, 2), i(LD | W | IND, 3), RET_A], FRAME, None, 0x15161718),
    "ld h ind": ([i(LDX | IMM, 2), i(LD | H | IND, 3), RET_A], FRAME, None, 0x1516),
    "ld b ind": ([i(LDX | IMM, 2), i(LD | B | IND, 3), RET_A], FRAME, None, 0x15),
    "ld b ind the last byte": ([i(LDX | IMM, 30), i(LD | B | IND, 1), RET_A], FRAME, None, 0x2F),
    "ld b ind one past": ([i(LDX | IMM, 31), i(LD | B | IND, 1), i(RET | K, 1)], FRAME, None, 0),
    "ld w ind one past": ([i(LDX | IMM, 26), i(LD | W | IND, 3), i(RET | K, 1)], FRAME, None, 0),
    # X + k wraps to 1 in 32 bits, a good offset; it is 2^32 + 1 and must reject.
    "ld b ind x + k wraps": ([i(LDX | IMM, 0xFFFFFFFF), i(LD | B | IND, 2), i(RET | K, 1)], FRAME, None, 0),
    "ld h ind x + k wraps": ([i(LDX | IMM, 2), i(LD | H | IND, 0xFFFFFFFF), i(RET | K, 1)], FRAME, None, 0),
    "ld w ind x + k wraps": ([i(LDX | IMM, 0x80000000), i(LD | W | IND, 0x80000000), i(RET | K, 1)], FRAME, None, 0),
    "ld len is wirelen": ([i(LD | W | LEN), RET_A], FRAME[:10], 1514, 1514),
    "ldx len": ([i(LDX | W | LEN), i(MISC | TXA), RET_A], FRAME, 9000, 9000),
    "ld len defaults to the buffer": ([i(LD | W | LEN), RET_A], FRAME, None, 32),
    "ld imm": ([i(LD | IMM, 0xDEADBEEF), RET_A], b"", None, 0xDEADBEEF),
    "ldx imm, txa": ([i(LDX | IMM, 7), i(MISC | TXA), RET_A], b"", None, 7),
    "tax": ([i(LD | IMM, 9), i(MISC | TAX), i(LD | IMM, 0), i(MISC | TXA), RET_A], b"", None, 9),
    "msh": ([i(LDX | B | MSH, 0), i(MISC | TXA), RET_A], b"\x46", None, 24),
    "msh of 0xff": ([i(LDX | B | MSH, 1), i(MISC | TXA), RET_A], b"\x00\xff", None, 60),
    "msh one past": ([i(LDX | B | MSH, 1), i(RET | K, 1)], b"\x45", None, 0),
    "st, ld mem": ([i(LD | IMM, 5), i(ST, 15), i(LD | IMM, 0), i(LD | MEM, 15), RET_A], b"", None, 5),
    "stx, ldx mem": ([i(LDX | IMM, 6), i(STX, 3), i(LDX | IMM, 0), i(LDX | MEM, 3), i(MISC | TXA), RET_A], b"", None,
                     6),
    "memory starts zeroed": ([i(LD | IMM, 1), i(LD | MEM, 7), RET_A], b"", None, 0),
    "add k wraps": ([i(LD | IMM, 0xFFFFFFFF), i(ALU | ADD | K, 2), RET_A], b"", None, 1),
    "sub k wraps": ([i(LD | IMM, 1), i(ALU | SUB | K, 2), RET_A], b"", None, 0xFFFFFFFF),
    "mul k wraps": ([i(LD | IMM, 0x10000), i(ALU | MUL | K, 0x10001), RET_A], b"", None, 0x10000),
    "div k": ([i(LD | IMM, 100), i(ALU | DIV | K, 7), RET_A], b"", None, 14),
    "mod k": ([i(LD | IMM, 100), i(ALU | MOD | K, 7), RET_A], b"", None, 2),
    "and or xor k": ([i(LD | IMM, 0xF0), i(ALU | AND | K, 0x3C), i(ALU | OR | K, 0x101), i(ALU | XOR | K, 0x3),
                      RET_A], b"", None, 0x132),
    "lsh k": ([i(LD | IMM, 3), i(ALU | LSH | K, 31), RET_A], b"", None, 0x80000000),
    "rsh k": ([i(LD | IMM, 0x80000000), i(ALU | RSH | K, 31), RET_A], b"", None, 1),
    "neg": ([i(LD | IMM, 1), i(ALU | NEG), RET_A], b"", None, 0xFFFFFFFF),
    "neg of 0x80000000": ([i(LD | IMM, 0x80000000), i(ALU | NEG), RET_A], b"", None, 0x80000000),
    "neg of 0": ([i(ALU | NEG), RET_A], b"", None, 0),
    "add x": ([i(LD | IMM, 5), i(LDX | IMM, 0xFFFFFFFE), i(ALU | ADD | X), RET_A], b"", None, 3),
    "sub x": ([i(LD | IMM, 5), i(LDX | IMM, 7), i(ALU | SUB | X), RET_A], b"", None, 0xFFFFFFFE),
    "mul x": ([i(LD | IMM, 0xFFFFFFFF), i(LDX | IMM, 0xFFFFFFFF), i(ALU | MUL | X), RET_A], b"", None, 1),
    "div x": ([i(LD | IMM, 0xFFFFFFFF), i(LDX | IMM, 0x10), i(ALU | DIV | X), RET_A], b"", None, 0x0FFFFFFF),
    "mod x": ([i(LD | IMM, 0xFFFFFFFF), i(LDX | IMM, 0x10), i(ALU | MOD | X), RET_A], b"", None, 0xF),
    "div by x = 0 rejects": ([i(LD | IMM, 9), i(ALU | DIV | X), i(RET | K, 1)], b"", None, 0),
    "mod by x = 0 rejects": ([i(LD | IMM, 9), i(ALU | MOD | X), i(RET | K, 1)], b"", None, 0),
    "and or xor x": ([i(LD | IMM, 0xF0), i(LDX | IMM, 0x3C), i(ALU | AND | X), i(LDX | IMM, 0x101), i(ALU | OR | X),
                      i(LDX | IMM, 3), i(ALU | XOR | X), RET_A], b"", None, 0x132),
    "lsh x 31": ([i(LD | IMM, 3), i(LDX | IMM, 31), i(ALU | LSH | X), RET_A], b"", None, 0x80000000),
    "rsh x 31": ([i(LD | IMM, 0x80000000), i(LDX | IMM, 31), i(ALU | RSH | X), RET_A], b"", None, 1),
    # By 32 or more: 0, as libpcap 1.10.3 measured (tests/test_bpf_differential.py has it as the oracle).
    "lsh x 32": ([i(LD | IMM, 1), i(LDX | IMM, 32), i(ALU | LSH | X), RET_A], b"", None, 0),
    "rsh x 32": ([i(LD | IMM, 0x80000000), i(LDX | IMM, 32), i(ALU | RSH | X), RET_A], b"", None, 0),
    "lsh x 33": ([i(LD | IMM, 1), i(LDX | IMM, 33), i(ALU | LSH | X), RET_A], b"", None, 0),
    "rsh x 2^32 - 1": ([i(LD | IMM, 0xFFFFFFFF), i(LDX | IMM, 0xFFFFFFFF), i(ALU | RSH | X), RET_A], b"", None, 0),
    "ja": ([i(JMP | JA, 1), i(RET | K, 1), i(RET | K, 2)], b"", None, 2),
    "ja 0 is the next": ([i(JMP | JA, 0), i(RET | K, 1), i(RET | K, 2)], b"", None, 1),
    "jeq k true": ([i(LD | IMM, 4), i(JMP | JEQ | K, 4, 1, 0), i(RET | K, 1), i(RET | K, 2)], b"", None, 2),
    "jeq k false": ([i(LD | IMM, 5), i(JMP | JEQ | K, 4, 1, 0), i(RET | K, 1), i(RET | K, 2)], b"", None, 1),
    "jgt k equal is false": ([i(LD | IMM, 4), i(JMP | JGT | K, 4, 1, 0), i(RET | K, 1), i(RET | K, 2)], b"", None, 1),
    "jgt k is unsigned": ([i(LD | IMM, 0x80000000), i(JMP | JGT | K, 1, 1, 0), i(RET | K, 1), i(RET | K, 2)], b"",
                          None, 2),
    "jge k equal is true": ([i(LD | IMM, 4), i(JMP | JGE | K, 4, 1, 0), i(RET | K, 1), i(RET | K, 2)], b"", None, 2),
    "jset k": ([i(LD | IMM, 6), i(JMP | JSET | K, 4, 0, 1), i(RET | K, 1), i(RET | K, 2)], b"", None, 1),
    "jset k none": ([i(LD | IMM, 6), i(JMP | JSET | K, 8, 0, 1), i(RET | K, 1), i(RET | K, 2)], b"", None, 2),
    "jeq x": ([i(LD | IMM, 4), i(LDX | IMM, 4), i(JMP | JEQ | X, 0, 1, 0), i(RET | K, 1), i(RET | K, 2)], b"", None,
              2),
    "jgt x": ([i(LD | IMM, 5), i(LDX | IMM, 4), i(JMP | JGT | X, 0, 1, 0), i(RET | K, 1), i(RET | K, 2)], b"", None,
              2),
    "jge x": ([i(LD | IMM, 3), i(LDX | IMM, 4), i(JMP | JGE | X, 0, 1, 0), i(RET | K, 1), i(RET | K, 2)], b"", None,
              1),
    "jge x equal is true": ([i(LD | IMM, 4), i(LDX | IMM, 4), i(JMP | JGE | X, 0, 1, 0), i(RET | K, 1), i(RET | K, 2)],
                            b"", None, 2),
    "jgt x equal is false": ([i(LD | IMM, 4), i(LDX | IMM, 4), i(JMP | JGT | X, 0, 1, 0), i(RET | K, 1),
                              i(RET | K, 2)], b"", None, 1),
    "jset x": ([i(LD | IMM, 3), i(LDX | IMM, 4), i(JMP | JSET | X, 0, 1, 0), i(RET | K, 1), i(RET | K, 2)], b"",
               None, 1),
    "jumps skip by jt and jf": ([i(LD | IMM, 1), i(JMP | JEQ | K, 1, 2, 0), i(RET | K, 1), i(RET | K, 2),
                                 i(RET | K, 3)], b"", None, 3),
}


@IMPLS
@pytest.mark.parametrize("name", RUNS)
def test_run(impl, name):
    program, frame, wirelen, expected = RUNS[name]
    impl.check(program)
    assert impl.run(program, frame, wirelen) == expected


@pytest.mark.parametrize("name", RUNS)
def test_the_oracle_agrees_on_the_hand_written_programs(name):
    if bpf_oracle.pcap is None:
        pytest.skip("libpcap is not installed")
    program, frame, wirelen, expected = RUNS[name]
    assert bpf_oracle.offline_filter(bpf_oracle.zeroing_prefix() + program, frame, wirelen) == expected


BIG = [i(RET | K, 1)] * (twin.MAXINSNS + 1)
# name -> (program, index of the refused instruction, words of the reason)
REFUSED = {
    "empty": ([], 0, "empty"),
    "too long": (BIG, twin.MAXINSNS, "limit of 4096"),
    "unknown opcode": ([i(LD | IMM), i(0xFFFF), RET_A], 1, "unknown opcode 0xffff"),
    "ld b imm is not ld imm": ([i(LD | B | IMM, 1), RET_A], 0, "unknown opcode 0x0010"),
    "ldx w abs": ([i(LDX | W | ABS, 1), RET_A], 0, "unknown opcode"),
    "ldx h msh": ([i(LDX | H | MSH, 1), RET_A], 0, "unknown opcode"),
    "ld msh": ([i(LD | B | MSH, 1), RET_A], 0, "unknown opcode"),
    "neg x": ([i(ALU | NEG | X), RET_A], 0, "unknown opcode"),
    "alu op 0xb0": ([i(ALU | 0xB0), RET_A], 0, "unknown opcode"),
    "jmp op 0x50": ([i(JMP | 0x50, 0, 0, 0), RET_A], 0, "unknown opcode"),
    "ret x": ([i(RET | X)], 0, "unknown opcode"),
    "misc 0x40": ([i(MISC | 0x40), RET_A], 0, "unknown opcode"),
    "high byte set": ([i(0x100 | RET | K, 1)], 0, "unknown opcode 0x0106"),
    "ld mem 16": ([i(LD | MEM, 16), RET_A], 0, "scratch memory index 16"),
    "ldx mem 16": ([i(LD | IMM), i(LDX | MEM, 16), RET_A], 1, "scratch memory index 16"),
    "st 16": ([i(ST, 16), RET_A], 0, "scratch memory index 16"),
    "stx 2^32 - 1": ([i(STX, 0xFFFFFFFF), RET_A], 0, "scratch memory index 4294967295"),
    "div k 0": ([i(LD | IMM, 1), i(ALU | DIV | K, 0), RET_A], 1, "division by the constant 0"),
    "mod k 0": ([i(LD | IMM, 1), i(ALU | MOD | K, 0), RET_A], 1, "modulo by the constant 0"),
    "lsh k 32": ([i(ALU | LSH | K, 32), RET_A], 0, "shift by the constant 32"),
    "rsh k 99": ([i(ALU | RSH | K, 99), RET_A], 0, "shift by the constant 99"),
    "ja past the end": ([i(JMP | JA, 1), RET_A], 0, "jump past the end (ja 1 lands at 2"),
    "ja to itself": ([i(LD | IMM), i(JMP | JA, 0xFFFFFFFF), RET_A], 1, "no backward jump of -1"),
    "ja backward": ([i(LD | IMM), RET_A, i(JMP | JA, 0xFFFFFFFD), RET_A], 2, "cBPF jumps only forward"),
    "jeq jt past the end": ([i(JMP | JEQ | K, 0, 1, 0), RET_A], 0, "true branch lands at 2"),
    "jgt jf past the end": ([i(JMP | JGT | X, 0, 0, 1), RET_A], 0, "false branch lands at 2"),
    "jset 255 past the end": ([i(JMP | JSET | K, 0, 255, 255)] + [RET_A] * 255, 0, "lands at 256"),
    "a jump last": ([RET_A, i(JMP | JEQ | K, 0, 0, 0)], 1, "jump past the end"),
    "last not a ret": ([i(LD | IMM)], 0, "the last instruction is not a RET"),
    "falls off the end": ([i(RET | K, 1), i(LD | IMM), i(MISC | TAX)], 2, "not a RET"),
    "the first of two": ([i(LD | MEM, 20), i(ALU | DIV | K, 0), RET_A], 0, "scratch memory"),
}


@IMPLS
@pytest.mark.parametrize("name", REFUSED)
def test_check_refuses_naming_the_instruction(impl, name):
    program, index, words = REFUSED[name]
    with pytest.raises(ValueError) as err:
        impl.check(program)
    assert str(err.value).startswith(f"instruction {index}: "), str(err.value)
    assert words in str(err.value)
    with pytest.raises(ValueError, match=f"^instruction {index}: "):
        impl.run(program, FRAME)


@pytest.mark.parametrize("name", REFUSED)
def test_c_check_returns_minus_one_plus_the_index(name):
    program, index, _ = REFUSED[name]
    assert lib.ps_bpf_check(bpf.to_c(program), len(program)) == -(1 + index)


@IMPLS
def test_check_accepts_the_longest_program(impl):
    program = [i(JMP | JA, twin.MAXINSNS - 2)] + [i(RET | K, 1)] * (twin.MAXINSNS - 2) + [i(RET | K, 2)]
    impl.check(program)
    assert impl.run(program, b"") == 2
    assert lib.ps_bpf_check(bpf.to_c(program), len(program)) == 0


@IMPLS
@pytest.mark.parametrize("insn, words", [
    ((0x10000, 0, 0, 0), "code 65536 does not fit in 16"),
    ((RET | K, 256, 0, 0), "jt 256 does not fit in 8"),
    ((RET | K, 0, -1, 0), "jf -1 does not fit in 8"),
    ((RET | K, 0, 0, 1 << 32), "k 4294967296 does not fit in 32"),
    ((RET | K, 0, 0), "not a (code, jt, jf, k) tuple"),
    ("ret", "not a (code, jt, jf, k) tuple"),
    ("1234", "not a (code, jt, jf, k) tuple"),
    ((RET | K, 0, 0, 1.0), "not a (code, jt, jf, k) tuple"),
], ids=["code", "jt", "jf", "k", "three fields", "a string", "a string of four digits", "a float"])
def test_instructions_that_do_not_fit_the_struct(impl, insn, words):
    with pytest.raises(ValueError, match=r"^instruction 1: ") as err:
        impl.check([i(LD | IMM), insn, RET_A])
    assert words in str(err.value)


@IMPLS
@pytest.mark.parametrize("wirelen", [-1, 1 << 32])
def test_a_wire_length_must_fit_32_bits(impl, wirelen):
    with pytest.raises(ValueError, match="wire length"):
        impl.run([RET_A], b"", wirelen)


def test_exact_buffer_has_no_byte_past_the_frame():
    assert len(bpf.exact_buffer(b"ab")) == 2 and list(bpf.exact_buffer(b"ab")) == [97, 98]
    assert len(bpf.exact_buffer(b"")) == 0


def test_to_c_is_the_struct_array():
    prog = bpf.to_c([i(LD | H | ABS, 12), i(JMP | JEQ | K, 0x800, 0, 1), i(RET | K, 96), i(RET | K, 0)])
    assert ffi.typeof(prog) is ffi.typeof("struct ps_bpf_insn[]") and len(prog) == 4
    assert (prog[1].code, prog[1].jt, prog[1].jf, prog[1].k) == (0x15, 0, 1, 0x800)
    assert lib.ps_bpf_run(prog, 4, b"\0" * 12 + b"\x08\x00", 14, 14) == 96


# Programs the checker refuses, run anyway by ps_bpf_run and the twin's execute(): they must return 0, not read
# or write outside their arrays (the sanitized suite runs this too).
UNCHECKED = {
    "unknown opcode": [i(0xFFFF), i(RET | K, 1)],
    "falls off the end": [i(LD | IMM, 1)],
    "conditional past the end": [i(JMP | JEQ | K, 0, 200, 200), i(RET | K, 1)],
    "ja past the end": [i(JMP | JA, 5), i(RET | K, 1)],
    "ja backward": [i(LD | IMM), i(JMP | JA, 0xFFFFFFFE), i(RET | K, 1)],
    "ld mem past the scratch": [i(LD | MEM, 16), i(RET | K, 1)],
    "st past the scratch": [i(ST, 0xFFFFFFFF), i(RET | K, 1)],
    "div k 0": [i(ALU | DIV | K, 0), i(RET | K, 1)],
    "mod k 0": [i(ALU | MOD | K, 0), i(RET | K, 1)],
}


@pytest.mark.parametrize("name", UNCHECKED)
def test_an_unchecked_program_returns_0(name):
    program = UNCHECKED[name]
    assert lib.ps_bpf_check(bpf.to_c(program), len(program)) < 0
    assert lib.ps_bpf_run(bpf.to_c(program), len(program), bpf.exact_buffer(FRAME), 32, 32) == 0
    assert twin.execute(program, FRAME, 32) == 0


def test_an_unchecked_shift_by_a_constant_of_32_gives_0():
    program = [i(LD | IMM, 1), i(ALU | LSH | K, 32), i(JMP | JEQ | K, 0, 0, 1), i(RET | K, 7), RET_A]
    assert lib.ps_bpf_run(bpf.to_c(program), len(program), b"", 0, 0) == twin.execute(program, b"", 0) == 7


def test_run_past_the_length_limit_returns_0():
    assert lib.ps_bpf_run(bpf.to_c(BIG), len(BIG), b"", 0, 0) == twin.execute(BIG, b"", 0) == 0
    assert lib.ps_bpf_run(ffi.NULL, 0, b"", 0, 0) == twin.execute([], b"", 0) == 0


needs_libpcap = pytest.mark.skipif(ctypes.util.find_library("pcap") is None, reason="libpcap is not installed")


@needs_libpcap
def test_compile_filter_gives_libpcaps_program():
    program = bpf.compile_filter("ip", snaplen=96)
    assert program == [i(LD | H | ABS, 12), i(JMP | JEQ | K, 0x800, 0, 1), i(RET | K, 96), i(RET | K, 0)]
    ipv4 = b"\0" * 12 + b"\x08\x00" + b"\x45" + b"\0" * 19
    assert bpf.run(program, ipv4) == 96 and bpf.run(program, b"\0" * 12 + b"\x86\xdd") == 0


@needs_libpcap
def test_compile_filter_default_snaplen_and_the_empty_expression():
    assert bpf.compile_filter("") == [i(RET | K, 262144)]


@needs_libpcap
@pytest.mark.parametrize("expression, message", [
    ("tcp port", "syntax error"),
    ("tcp port 99999", "illegal port number 99999 > 65535"),
    ("ip broadcast", "netmask not known"),
    ("ether host 1:2", "illegal link layer address"),
    ("vlan 5000", "VLAN tag 5000 greater than maximum 4095"),
])
def test_compile_filter_refuses_with_libpcaps_message(expression, message):
    with pytest.raises(ValueError) as err:
        bpf.compile_filter(expression)
    assert message in str(err.value) and repr(expression) in str(err.value)


@needs_libpcap
def test_compile_filter_refuses_a_nul_and_a_bad_snaplen():
    with pytest.raises(ValueError, match="NUL"):
        bpf.compile_filter("ip\0 and tcp")
    with pytest.raises(ValueError, match="snap length"):
        bpf.compile_filter("ip", snaplen=0)


def test_compile_filter_without_libpcap(monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    bpf.libpcap.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="libpcap0.8"):
            bpf.compile_filter("ip")
    finally:
        monkeypatch.undo()
        bpf.libpcap.cache_clear()


@needs_libpcap
def test_protochain_is_refused_for_its_backward_jump():
    # libpcap loops over IPv6 extension headers with a backward ja; the kernel refuses it too.
    program = bpf.compile_filter("ip6 protochain 6")
    with pytest.raises(ValueError, match="cBPF jumps only forward"):
        bpf.check(program)
