"""Capture filters: a tcpdump expression compiled to classic BPF by libpcap, checked and run by csrc/bpf.c.

compile_filter() asks libpcap (through ctypes: no interface is opened, no privilege needed) for the program an
expression means on Ethernet; check() and run() are the C engine's, and to_c() is the array the datapath runs.
The pure-Python twin, with the text of every refusal, is pyswitch/refpath/bpf.py; docs/BPF.md is the contract.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from typing import Optional, Sequence

from .fastpath import ffi, lib     # the one module that loads the build (and checks its version)
from .refpath import bpf as _twin

DLT_EN10MB = 1                      # libpcap's link type for Ethernet
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF   # "ip broadcast" is then refused; nothing else needs the netmask
DEFAULT_SNAPLEN = 262144            # tcpdump's: the value an accepting RET returns

Program = list[tuple[int, int, int, int]]


class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


# libpcap before 1.8 kept pcap_compile's parser state in globals; a lock costs nothing here and covers them.
_compile_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def libpcap() -> ctypes.CDLL:
    """libpcap, loaded once, with the prototypes compile_filter uses; RuntimeError when it is not installed."""
    name = ctypes.util.find_library("pcap")
    if name is None:
        raise RuntimeError("libpcap is not installed; capture filters need it: apt-get install libpcap0.8")
    pcap = ctypes.CDLL(name)
    pcap.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    pcap.pcap_open_dead.restype = ctypes.c_void_p
    pcap.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p, ctypes.c_int,
                                  ctypes.c_uint32]
    pcap.pcap_compile.restype = ctypes.c_int
    pcap.pcap_geterr.argtypes = [ctypes.c_void_p]
    pcap.pcap_geterr.restype = ctypes.c_char_p
    pcap.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    pcap.pcap_freecode.restype = None
    pcap.pcap_close.argtypes = [ctypes.c_void_p]
    pcap.pcap_close.restype = None
    return pcap


def compile_filter(expression: str, snaplen: int = DEFAULT_SNAPLEN) -> Program:
    """The optimised classic BPF program of a tcpdump expression on Ethernet frames, as (code, jt, jf, k)
    tuples; an accepted frame makes it return snaplen.  ValueError with libpcap's message when the expression
    does not compile."""
    if "\0" in expression:
        raise ValueError(f"filter expression {expression!r}: a NUL byte would end it early")
    if not 1 <= snaplen <= 0x7FFFFFFF:
        raise ValueError(f"a snap length is 1..{0x7FFFFFFF}, not {snaplen}")
    pcap = libpcap()
    with _compile_lock:
        handle = pcap.pcap_open_dead(DLT_EN10MB, snaplen)
        if not handle:
            raise RuntimeError("pcap_open_dead failed (out of memory?)")
        try:
            prog = _BpfProgram()
            if pcap.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, PCAP_NETMASK_UNKNOWN) != 0:
                message = (pcap.pcap_geterr(handle) or b"pcap_compile failed").decode(errors="replace")
                raise ValueError(f"filter expression {expression!r}: {message}")
            try:
                return [(i.code, i.jt, i.jf, i.k) for i in prog.bf_insns[:prog.bf_len]]
            finally:
                pcap.pcap_freecode(ctypes.byref(prog))
        finally:
            pcap.pcap_close(handle)


def to_c(program: Sequence) -> "ffi.CData":
    """The program as a `struct ps_bpf_insn[]` (what ps_bpf_check and ps_bpf_run take); ValueError naming the
    first instruction that is not a (code, jt, jf, k) tuple that fits."""
    return ffi.new("struct ps_bpf_insn[]", _twin.instructions(program))


def _check_c(program: Sequence):
    prog = to_c(program)
    n = len(prog)
    rc = lib.ps_bpf_check(prog, n)
    if rc < 0:
        index = -rc - 1
        found = _twin.problem(program)
        # The reasons are written once, in the twin; the two disagreeing is a bug the differential tests catch.
        why = found[1] if found is not None and found[0] == index else "refused by ps_bpf_check"
        raise ValueError(f"instruction {index}: {why}")
    return prog, n


def check(program: Sequence) -> None:
    """Returns when ps_bpf_check accepts the program; else ValueError("instruction I: why")."""
    _check_c(program)


def run(program: Sequence, frame: bytes, wirelen: Optional[int] = None) -> int:
    """ps_bpf_run of a checked program on the frame: what its RET returned, 0 when it rejects the frame.
    wirelen (the frame's length on the wire) defaults to len(frame); a refused program raises ValueError."""
    prog, n = _check_c(program)
    wirelen = _twin.wire_length(frame, wirelen)
    return lib.ps_bpf_run(prog, n, exact_buffer(frame), wirelen, len(frame))


def exact_buffer(frame: bytes) -> "ffi.CData":
    """A copy of the frame in a `uint8_t[]` of exactly len(frame) bytes.  Both a bytes object and
    ffi.new("uint8_t[]", some_bytes) have a NUL past the end, which would hide a read one byte too far from
    ASan (tests/run_sanitized.py)."""
    buf = ffi.new("uint8_t[]", len(frame))
    ffi.memmove(buf, frame, len(frame))
    return buf
