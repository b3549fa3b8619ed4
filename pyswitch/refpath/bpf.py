"""Twin of csrc/bpf.c: the classic BPF checker and interpreter, one instruction at a time (docs/BPF.md).

A program is a sequence of (code, jt, jf, k) tuples.  check() refuses what ps_bpf_check refuses, for the same
first instruction, and says why; run() returns what ps_bpf_run returns.  The reasons are written here only:
pyswitch/bpf.py takes its error text from problem() when the C checker has refused a program.
"""
from __future__ import annotations

import operator
from typing import Optional, Sequence

MAXINSNS = 4096             # PS_BPF_MAXINSNS
MEMWORDS = 16               # PS_BPF_MEMWORDS

# Opcode parts, the ABI's values (csrc/bpf.h has them as PS_BPF_*; tests/test_bpf.py compares).
LD, LDX, ST, STX, ALU, JMP, RET, MISC = range(8)
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
K, X, A = 0x00, 0x08, 0x10
TAX, TXA = 0x00, 0x80

_MASK = 0xFFFFFFFF
_SIZES = {W: 4, H: 2, B: 1}
_PACKET_LOADS = {LD | size | mode: _SIZES[size] for size in (W, H, B) for mode in (ABS, IND)}
_MEMORY = frozenset((LD | MEM, LDX | MEM, ST, STX))
_ALU_OPS = (ADD, SUB, MUL, DIV, MOD, AND, OR, XOR, LSH, RSH)
_CONDITIONAL = frozenset(JMP | op | src for op in (JEQ, JGT, JGE, JSET) for src in (K, X))
# Each opcode spelled the one way the interpreter knows (as csrc/bpf.c's known_opcode()).
OPCODES = frozenset(set(_PACKET_LOADS) | _MEMORY | _CONDITIONAL | {ALU | op | src for op in _ALU_OPS for src in (K, X)}
                    | {LD | LEN, LD | IMM, LDX | LEN, LDX | IMM, LDX | B | MSH, ALU | NEG, JMP | JA, RET | K,
                       RET | A, MISC | TAX, MISC | TXA})

Insn = tuple[int, int, int, int]


def instructions(program: Sequence) -> list[Insn]:
    """The program as a list of (code, jt, jf, k) tuples of ints that fit struct ps_bpf_insn, or ValueError
    naming the first instruction that does not (something C cannot even be handed)."""
    out = []
    for i, insn in enumerate(program):
        try:
            code, jt, jf, k = (operator.index(v) for v in insn)     # ints only: not "1234", not 1.5
        except (TypeError, ValueError):
            raise ValueError(f"instruction {i}: not a (code, jt, jf, k) tuple of integers: {insn!r}") from None
        for name, value, bits in (("code", code, 16), ("jt", jt, 8), ("jf", jf, 8), ("k", k, 32)):
            if not 0 <= value < 1 << bits:
                raise ValueError(f"instruction {i}: {name} {value} does not fit in {bits} unsigned bits")
        out.append((code, jt, jf, k))
    return out


def _insn_problem(insn: Insn, i: int, n: int) -> Optional[str]:
    """Why instruction i of n cannot stay, or None; the order of csrc/bpf.c's insn_ok()."""
    code, jt, jf, k = insn
    if code not in OPCODES:
        return f"unknown opcode {code:#06x}"
    if code in _MEMORY and k >= MEMWORDS:
        return f"scratch memory index {k} is not below {MEMWORDS}"
    if code == ALU | DIV | K and k == 0:
        return "division by the constant 0"
    if code == ALU | MOD | K and k == 0:
        return "modulo by the constant 0"
    if code in (ALU | LSH | K, ALU | RSH | K) and k >= 32:
        return f"shift by the constant {k} (below 32 only)"
    if code == JMP | JA and i + 1 + k >= n:
        if k >= 1 << 31:    # what a wrapped 32-bit sum would make of it (libpcap's "ip6 protochain" loop)
            return f"jump past the end (ja {k} is no backward jump of {k - (1 << 32)}: cBPF jumps only forward)"
        return f"jump past the end (ja {k} lands at {i + 1 + k}; the program has {n} instructions)"
    if code in _CONDITIONAL:
        for branch, skip in (("true", jt), ("false", jf)):
            if i + 1 + skip >= n:
                return f"jump past the end ({branch} branch lands at {i + 1 + skip}; the program has {n} instructions)"
    return None


def problem(program: Sequence) -> Optional[tuple[int, str]]:
    """(index, why) of the first instruction ps_bpf_check refuses, or None when it accepts the program."""
    prog = instructions(program)
    n = len(prog)
    if n == 0:
        return 0, "the program is empty (it needs at least a RET)"
    if n > MAXINSNS:
        return MAXINSNS, f"past the limit of {MAXINSNS} instructions (the program has {n})"
    for i, insn in enumerate(prog):
        why = _insn_problem(insn, i, n)
        if why is not None:
            return i, why
    if prog[-1][0] & 0x07 != RET:
        return n - 1, "the last instruction is not a RET (a run could fall off the end)"
    return None


def check(program: Sequence) -> None:
    """Returns when the program is safe to run; else ValueError("instruction I: why")."""
    found = problem(program)
    if found is not None:
        raise ValueError(f"instruction {found[0]}: {found[1]}")


def run(program: Sequence, frame: bytes, wirelen: Optional[int] = None) -> int:
    """What the program's RET returns for the frame (0: rejected); wirelen defaults to len(frame).
    A program check() refuses raises its ValueError."""
    check(program)
    frame = bytes(frame)
    return execute(instructions(program), frame, wire_length(frame, wirelen))


def wire_length(frame: bytes, wirelen: Optional[int]) -> int:
    """wirelen, or the frame's length when None; ValueError unless it fits the C uint32_t."""
    wirelen = len(frame) if wirelen is None else int(wirelen)
    if not 0 <= wirelen <= _MASK or len(frame) > _MASK:
        raise ValueError(f"a wire length is 0..{_MASK}, not {wirelen}")
    return wirelen


def _shift(a: int, by: int, left: bool) -> int:
    # By 32 or more is 0, as libpcap's interpreter has it (csrc/bpf.c says why).
    if by >= 32:
        return 0
    return (a << by) & _MASK if left else a >> by


def _alu(op: int, a: int, operand: int) -> Optional[int]:
    """A op operand, or None when the frame is rejected (division or modulo by 0)."""
    if op in (DIV, MOD):
        if operand == 0:
            return None
        return a // operand if op == DIV else a % operand
    if op in (LSH, RSH):
        return _shift(a, operand, op == LSH)
    if op == ADD:
        return (a + operand) & _MASK
    if op == SUB:
        return (a - operand) & _MASK
    if op == MUL:
        return (a * operand) & _MASK
    if op == AND:
        return a & operand
    if op == OR:
        return a | operand
    return a ^ operand          # XOR: the last of _ALU_OPS


def _condition(op: int, a: int, operand: int) -> bool:
    if op == JEQ:
        return a == operand
    if op == JGT:
        return a > operand
    if op == JGE:
        return a >= operand
    return a & operand != 0     # JSET


def execute(prog: Sequence[Insn], frame: bytes, wirelen: int) -> int:
    """ps_bpf_run without the check first: an unchecked program returns 0 where it would go wrong, as C does."""
    n, buflen = len(prog), len(frame)
    a = x = 0
    mem = [0] * MEMWORDS
    if n == 0 or n > MAXINSNS:
        return 0
    pc = 0
    while pc < n:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if code in _PACKET_LOADS:
            size = _PACKET_LOADS[code]
            ofs = k + (x if code & 0xE0 == IND else 0)      # no wrap: beyond 2^32 - 1 is outside too
            if ofs + size > buflen:
                return 0
            a = int.from_bytes(frame[ofs:ofs + size], "big")
        elif code == LDX | B | MSH:
            if k >= buflen:
                return 0
            x = (frame[k] & 0x0F) << 2
        elif code in (LD | LEN, LDX | LEN, LD | IMM, LDX | IMM):
            value = wirelen if code & 0xE0 == LEN else k
            if cls == LD:
                a = value
            else:
                x = value
        elif code in _MEMORY:
            if k >= MEMWORDS:
                return 0
            if code == LD | MEM:
                a = mem[k]
            elif code == LDX | MEM:
                x = mem[k]
            else:
                mem[k] = a if code == ST else x
        elif cls == ALU and code in OPCODES:
            if code == ALU | NEG:
                a = -a & _MASK
            else:
                result = _alu(code & 0xF0, a, x if code & X else k)
                if result is None:
                    return 0
                a = result
        elif code == JMP | JA:
            if k >= n - pc:
                return 0
            pc += k
        elif code in _CONDITIONAL:
            pc += jt if _condition(code & 0xF0, a, x if code & X else k) else jf
        elif code == RET | K:
            return k
        elif code == RET | A:
            return a
        elif code == MISC | TAX:
            x = a
        elif code == MISC | TXA:
            a = x
        else:
            return 0            # an unknown opcode
    return 0                    # ran off the end, or jumped past it
