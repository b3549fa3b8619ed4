/* bpf.c: a classic BPF checker and interpreter (contract in csrc/bpf.h and docs/BPF.md).
 *
 * The checker accepts exactly the opcodes libpcap's interpreter and the kernel's checker know, each spelled
 * one way (BPF_LD|BPF_B|BPF_IMM, say, is not a way to write BPF_LD|BPF_IMM); jumps only forward and inside
 * the program, so every run ends within n instructions.  The interpreter is libpcap's bpf_filter(): unsigned
 * 32-bit arithmetic, big-endian loads, and a frame rejected (0) by a load outside it or a division by X == 0.
 * It checks anew what the checker promised (the instruction index, scratch indexes, constant divisors), so a
 * program that never went through the checker still cannot read or write outside its arrays.  The twin is
 * pyswitch/refpath/bpf.py.
 */
#include "bpf.h"

#define OP_LD_W_ABS (PS_BPF_LD | PS_BPF_W | PS_BPF_ABS)
#define OP_LD_H_ABS (PS_BPF_LD | PS_BPF_H | PS_BPF_ABS)
#define OP_LD_B_ABS (PS_BPF_LD | PS_BPF_B | PS_BPF_ABS)
#define OP_LD_W_IND (PS_BPF_LD | PS_BPF_W | PS_BPF_IND)
#define OP_LD_H_IND (PS_BPF_LD | PS_BPF_H | PS_BPF_IND)
#define OP_LD_B_IND (PS_BPF_LD | PS_BPF_B | PS_BPF_IND)
#define OP_LD_LEN (PS_BPF_LD | PS_BPF_W | PS_BPF_LEN)
#define OP_LD_IMM (PS_BPF_LD | PS_BPF_W | PS_BPF_IMM)
#define OP_LD_MEM (PS_BPF_LD | PS_BPF_W | PS_BPF_MEM)
#define OP_LDX_LEN (PS_BPF_LDX | PS_BPF_W | PS_BPF_LEN)
#define OP_LDX_IMM (PS_BPF_LDX | PS_BPF_W | PS_BPF_IMM)
#define OP_LDX_MEM (PS_BPF_LDX | PS_BPF_W | PS_BPF_MEM)
#define OP_LDX_MSH (PS_BPF_LDX | PS_BPF_B | PS_BPF_MSH)
#define OP_ST PS_BPF_ST
#define OP_STX PS_BPF_STX
#define ALU(op, src) (PS_BPF_ALU | PS_BPF_##op | PS_BPF_##src)
#define JMP(op, src) (PS_BPF_JMP | PS_BPF_##op | PS_BPF_##src)
#define OP_JA (PS_BPF_JMP | PS_BPF_JA)
#define OP_NEG (PS_BPF_ALU | PS_BPF_NEG)
#define OP_RET_K (PS_BPF_RET | PS_BPF_K)
#define OP_RET_A (PS_BPF_RET | PS_BPF_A)
#define OP_TAX (PS_BPF_MISC | PS_BPF_TAX)
#define OP_TXA (PS_BPF_MISC | PS_BPF_TXA)

/* Whether the opcode is one of the 49 the interpreter runs (the twin has them as OPCODES). */
static int known_opcode(uint16_t code)
{
    switch (code) {
    case OP_LD_W_ABS: case OP_LD_H_ABS: case OP_LD_B_ABS:
    case OP_LD_W_IND: case OP_LD_H_IND: case OP_LD_B_IND:
    case OP_LD_LEN: case OP_LD_IMM: case OP_LD_MEM:
    case OP_LDX_LEN: case OP_LDX_IMM: case OP_LDX_MEM: case OP_LDX_MSH:
    case OP_ST: case OP_STX:
    case ALU(ADD, K): case ALU(SUB, K): case ALU(MUL, K): case ALU(DIV, K): case ALU(MOD, K):
    case ALU(AND, K): case ALU(OR, K): case ALU(XOR, K): case ALU(LSH, K): case ALU(RSH, K):
    case ALU(ADD, X): case ALU(SUB, X): case ALU(MUL, X): case ALU(DIV, X): case ALU(MOD, X):
    case ALU(AND, X): case ALU(OR, X): case ALU(XOR, X): case ALU(LSH, X): case ALU(RSH, X):
    case OP_NEG:
    case OP_JA:
    case JMP(JEQ, K): case JMP(JGT, K): case JMP(JGE, K): case JMP(JSET, K):
    case JMP(JEQ, X): case JMP(JGT, X): case JMP(JGE, X): case JMP(JSET, X):
    case OP_RET_K: case OP_RET_A:
    case OP_TAX: case OP_TXA:
        return 1;
    default:
        return 0;
    }
}

/* Whether instruction i of n may stay in the program; the twin's reasons are in this order. */
static int insn_ok(const struct ps_bpf_insn *in, uint32_t i, uint32_t n)
{
    /* Targets are computed in 64 bits: k is 32 bits, and a wrapped i + 1 + k would be the backward jump cBPF
     * has no room for (libpcap 1.10's own validator lets k = 0xffffffff through that way). */
    uint64_t next = (uint64_t)i + 1;
    if (!known_opcode(in->code))
        return 0;
    switch (in->code) {
    case OP_LD_MEM: case OP_LDX_MEM: case OP_ST: case OP_STX:
        return in->k < PS_BPF_MEMWORDS;
    case ALU(DIV, K): case ALU(MOD, K):
        return in->k != 0;              /* by X == 0 is decided per frame: the frame is rejected */
    case ALU(LSH, K): case ALU(RSH, K):
        return in->k < 32;              /* refused by the kernel and libpcap's newer validator alike */
    case OP_JA:
        return next + in->k < n;
    case JMP(JEQ, K): case JMP(JGT, K): case JMP(JGE, K): case JMP(JSET, K):
    case JMP(JEQ, X): case JMP(JGT, X): case JMP(JGE, X): case JMP(JSET, X):
        return next + in->jt < n && next + in->jf < n;
    default:
        return 1;
    }
}

int ps_bpf_check(const struct ps_bpf_insn *prog, uint32_t n)
{
    if (n == 0)
        return -1;
    if (n > PS_BPF_MAXINSNS)
        return -(PS_BPF_MAXINSNS + 1);
    for (uint32_t i = 0; i < n; i++)
        if (!insn_ok(&prog[i], i, n))
            return -(int)(i + 1);
    /* Every jump lands inside, so a run ends at a RET only if the last instruction is one: the instruction
     * before the end is reached by falling through or by a jump to it. */
    if ((prog[n - 1].code & 0x07) != PS_BPF_RET)
        return -(int)n;
    return 0;
}

/* Whether size bytes at ofs lie inside a buffer of buflen bytes; 64 bits, so that ofs + size cannot wrap
 * (libpcap's separate comparisons amount to the same). */
static inline int inside(uint64_t ofs, uint32_t size, uint32_t buflen)
{
    return ofs + size <= buflen;
}

static inline uint32_t load(const uint8_t *p, uint32_t size)
{
    /* Casts before the shifts: p[0] << 24 would shift an int into its sign bit. */
    if (size == 4)
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    if (size == 2)
        return ((uint32_t)p[0] << 8) | p[1];
    return p[0];
}

/* Shifts by 32 or more give 0, as libpcap 1.10's interpreter does for a shift by X (C leaves them undefined,
 * and x86's shl would use the count mod 32).  By a constant they are refused by the checker. */
static uint32_t shift_left(uint32_t a, uint32_t by)
{
    return by < 32 ? a << by : 0;
}

static uint32_t shift_right(uint32_t a, uint32_t by)
{
    return by < 32 ? a >> by : 0;
}

uint32_t ps_bpf_run(const struct ps_bpf_insn *prog, uint32_t n, const uint8_t *pkt, uint32_t wirelen,
                    uint32_t buflen)
{
    uint32_t a = 0, x = 0;
    /* Zeroed, so that a load before any store reads 0: libpcap's current interpreter does so too, the kernel
     * refuses such a program, and libpcap 1.10.3's reads whatever its stack held. */
    uint32_t mem[PS_BPF_MEMWORDS] = {0};
    /* pc <= PS_BPF_MAXINSNS + 255 at all times, so it cannot wrap. */
    if (n == 0 || n > PS_BPF_MAXINSNS)
        return 0;
    for (uint32_t pc = 0; pc < n;) {
        const struct ps_bpf_insn *in = &prog[pc++];
        uint32_t k = in->k;
        switch (in->code) {
        case OP_RET_K:
            return k;
        case OP_RET_A:
            return a;

        /* One case per size and mode: the loads are most of what a tcpdump filter runs, and each is then a
         * bounds test and its bytes.  An offset past 2^32 - 1 is outside too: X + k does not wrap. */
        case OP_LD_W_ABS:
            if (!inside(k, 4, buflen))
                return 0;
            a = load(pkt + k, 4);
            break;
        case OP_LD_H_ABS:
            if (!inside(k, 2, buflen))
                return 0;
            a = load(pkt + k, 2);
            break;
        case OP_LD_B_ABS:
            if (!inside(k, 1, buflen))
                return 0;
            a = pkt[k];
            break;
        case OP_LD_W_IND:
            if (!inside((uint64_t)k + x, 4, buflen))
                return 0;
            a = load(pkt + ((uint64_t)k + x), 4);
            break;
        case OP_LD_H_IND:
            if (!inside((uint64_t)k + x, 2, buflen))
                return 0;
            a = load(pkt + ((uint64_t)k + x), 2);
            break;
        case OP_LD_B_IND:
            if (!inside((uint64_t)k + x, 1, buflen))
                return 0;
            a = pkt[(uint64_t)k + x];
            break;
        case OP_LDX_MSH:
            if (!inside(k, 1, buflen))
                return 0;
            x = (uint32_t)(pkt[k] & 0xf) << 2;
            break;
        case OP_LD_LEN:
            a = wirelen;
            break;
        case OP_LDX_LEN:
            x = wirelen;
            break;
        case OP_LD_IMM:
            a = k;
            break;
        case OP_LDX_IMM:
            x = k;
            break;
        case OP_LD_MEM:
            if (k >= PS_BPF_MEMWORDS)
                return 0;
            a = mem[k];
            break;
        case OP_LDX_MEM:
            if (k >= PS_BPF_MEMWORDS)
                return 0;
            x = mem[k];
            break;
        case OP_ST:
            if (k >= PS_BPF_MEMWORDS)
                return 0;
            mem[k] = a;
            break;
        case OP_STX:
            if (k >= PS_BPF_MEMWORDS)
                return 0;
            mem[k] = x;
            break;

        case ALU(ADD, K): a += k; break;
        case ALU(SUB, K): a -= k; break;
        case ALU(MUL, K): a *= k; break;
        case ALU(AND, K): a &= k; break;
        case ALU(OR, K): a |= k; break;
        case ALU(XOR, K): a ^= k; break;
        case ALU(LSH, K): a = shift_left(a, k); break;
        case ALU(RSH, K): a = shift_right(a, k); break;
        case ALU(ADD, X): a += x; break;
        case ALU(SUB, X): a -= x; break;
        case ALU(MUL, X): a *= x; break;
        case ALU(AND, X): a &= x; break;
        case ALU(OR, X): a |= x; break;
        case ALU(XOR, X): a ^= x; break;
        case ALU(LSH, X): a = shift_left(a, x); break;
        case ALU(RSH, X): a = shift_right(a, x); break;
        case ALU(DIV, K): case ALU(MOD, K): case ALU(DIV, X): case ALU(MOD, X): {
            uint32_t by = (in->code & PS_BPF_X) ? x : k;
            if (by == 0)
                return 0;
            a = (in->code & 0xf0) == PS_BPF_DIV ? a / by : a % by;
            break;
        }
        case OP_NEG:
            a = 0u - a;                 /* negation modulo 2^32, defined for every a */
            break;
        case OP_TAX:
            x = a;
            break;
        case OP_TXA:
            a = x;
            break;

        case OP_JA:
            if (k >= n - pc)            /* pc is the next instruction: pc + k must be < n */
                return 0;
            pc += k;
            break;
        case JMP(JEQ, K): pc += a == k ? in->jt : in->jf; break;
        case JMP(JGT, K): pc += a > k ? in->jt : in->jf; break;
        case JMP(JGE, K): pc += a >= k ? in->jt : in->jf; break;
        case JMP(JSET, K): pc += (a & k) ? in->jt : in->jf; break;
        case JMP(JEQ, X): pc += a == x ? in->jt : in->jf; break;
        case JMP(JGT, X): pc += a > x ? in->jt : in->jf; break;
        case JMP(JGE, X): pc += a >= x ? in->jt : in->jf; break;
        case JMP(JSET, X): pc += (a & x) ? in->jt : in->jf; break;

        default:
            return 0;                   /* an unknown opcode: only an unchecked program has one */
        }
    }
    return 0;                           /* ran off the end (or jumped past it): only an unchecked program can */
}
