/* bpf.h: classic BPF (cBPF), the filter language of tcpdump expressions, checked once and run per frame.
 *
 * A capture's filter is compiled by libpcap (pyswitch/bpf.py) into the instructions below and run on every
 * frame of the captured port.  ps_bpf_check refuses a program that could misbehave; ps_bpf_run has libpcap's
 * bpf_filter() semantics (docs/BPF.md says which, and where the kernel differs).  Our own code, written from
 * the documented semantics; the Python twin is pyswitch/refpath/bpf.py.  The part between the cdef markers is
 * handed to cffi by csrc/build_ffi.py, like pyswitch.h's.
 */
#ifndef PS_BPF_HEADER_H      /* not PS_BPF_H: that is the 16-bit load size */
#define PS_BPF_HEADER_H 1

#include <stdint.h>

/* cdef begin */

#define PS_BPF_MAXINSNS 4096        /* the kernel's BPF_MAXINSNS: longer programs are refused */
#define PS_BPF_MEMWORDS 16          /* scratch memory words M[0..15] */

/* The opcode is class | size | mode (loads), class | op | src (ALU, jumps), class | rval (RET) or
 * class | miscop; the values are the ABI's (linux/bpf_common.h, pcap/bpf.h). */
#define PS_BPF_LD 0x00
#define PS_BPF_LDX 0x01
#define PS_BPF_ST 0x02
#define PS_BPF_STX 0x03
#define PS_BPF_ALU 0x04
#define PS_BPF_JMP 0x05
#define PS_BPF_RET 0x06
#define PS_BPF_MISC 0x07

#define PS_BPF_W 0x00               /* 32-bit load */
#define PS_BPF_H 0x08               /* 16-bit */
#define PS_BPF_B 0x10               /* 8-bit */

#define PS_BPF_IMM 0x00             /* k itself */
#define PS_BPF_ABS 0x20             /* the packet at k */
#define PS_BPF_IND 0x40             /* the packet at X + k */
#define PS_BPF_MEM 0x60             /* M[k] */
#define PS_BPF_LEN 0x80             /* the packet's length on the wire */
#define PS_BPF_MSH 0xa0             /* LDX only: 4 * (pkt[k] & 0xf), an IPv4 header's length */

#define PS_BPF_ADD 0x00
#define PS_BPF_SUB 0x10
#define PS_BPF_MUL 0x20
#define PS_BPF_DIV 0x30
#define PS_BPF_OR 0x40
#define PS_BPF_AND 0x50
#define PS_BPF_LSH 0x60
#define PS_BPF_RSH 0x70
#define PS_BPF_NEG 0x80
#define PS_BPF_MOD 0x90
#define PS_BPF_XOR 0xa0

#define PS_BPF_JA 0x00
#define PS_BPF_JEQ 0x10
#define PS_BPF_JGT 0x20
#define PS_BPF_JGE 0x30
#define PS_BPF_JSET 0x40

#define PS_BPF_K 0x00               /* the operand is k */
#define PS_BPF_X 0x08               /* the operand is X */
#define PS_BPF_A 0x10               /* RET only: return A */

#define PS_BPF_TAX 0x00
#define PS_BPF_TXA 0x80

/* One instruction, laid out as struct bpf_insn (libpcap) and struct sock_filter (Linux). */
struct ps_bpf_insn {
    uint16_t code;                  /* the opcode */
    uint8_t jt;                     /* conditional jumps: instructions skipped when true */
    uint8_t jf;                     /* ... and when false */
    uint32_t k;                     /* the constant operand */
};

/* 0 when prog[0..n) is safe to run, else -(1 + the index of its first bad instruction): an unknown opcode,
 * a jump that lands past the end (cBPF jumps only forward), a scratch index >= PS_BPF_MEMWORDS, a division,
 * modulo or shift by a constant that is undefined (0, 0, >= 32), or a last instruction that is not a RET.
 * n == 0 is refused as instruction 0 (the RET that is missing), n > PS_BPF_MAXINSNS as instruction
 * PS_BPF_MAXINSNS (the first one past the limit). */
int ps_bpf_check(const struct ps_bpf_insn *prog, uint32_t n);

/* Runs prog[0..n) on the frame pkt[0..buflen), whose length on the wire was wirelen, and returns what its
 * RET returned: 0 rejects the frame, anything else accepts it and is the snap length.  A load outside the
 * frame, or a division or modulo by X == 0, rejects.  Meant for a program ps_bpf_check accepted; any other
 * program still runs safely, returning 0 where it would go wrong (docs/BPF.md). */
uint32_t ps_bpf_run(const struct ps_bpf_insn *prog, uint32_t n, const uint8_t *pkt, uint32_t wirelen,
                    uint32_t buflen);

/* cdef end */

#endif
