"""libpcap's own classic BPF interpreter and validator, through ctypes: the oracle csrc/bpf.c is tested against.

Only the tests use it; pyswitch/bpf.py uses libpcap to compile and nothing else.  libpcap 1.10.3 (Debian 12) is
what was measured; docs/BPF.md lists where its validator is looser than ours, and its interpreter reads scratch
memory it never zeroed, so programs() here store every word first when a run is compared.
"""
import ctypes
import ctypes.util

from pyswitch.refpath import bpf as twin


class Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(Insn))]


class Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class PktHdr(ctypes.Structure):
    _fields_ = [("ts", Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


_name = ctypes.util.find_library("pcap")
pcap = ctypes.CDLL(_name) if _name else None
if pcap is not None:
    pcap.pcap_offline_filter.argtypes = [ctypes.POINTER(Program), ctypes.POINTER(PktHdr), ctypes.c_char_p]
    pcap.pcap_offline_filter.restype = ctypes.c_uint     # declared int, but it is bpf_filter's u_int passed on
    pcap.bpf_validate.argtypes = [ctypes.POINTER(Insn), ctypes.c_int]
    pcap.bpf_validate.restype = ctypes.c_int
    pcap.pcap_lib_version.restype = ctypes.c_char_p


def _array(program):
    return (Insn * max(len(program), 1))(*[Insn(*insn) for insn in program])


def zeroing_prefix():
    """Stores A (still 0) into every scratch word: what ps_bpf_run's zeroed memory is, for libpcap 1.10.3."""
    return [(twin.ST, 0, 0, i) for i in range(twin.MEMWORDS)]


def offline_filter(program, frame: bytes, wirelen=None) -> int:
    """pcap_offline_filter(): libpcap's interpreter on frame (caplen = len(frame)).  Only for a program our
    checker accepts: libpcap 1.10.3 aborts the process on an opcode it does not know."""
    twin.check(program)
    insns = _array(program)
    prog = Program(len(program), insns)
    hdr = PktHdr(Timeval(0, 0), len(frame), len(frame) if wirelen is None else wirelen)
    return pcap.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(hdr), bytes(frame))


def validate(program) -> bool:
    """bpf_validate(): whether libpcap would install the program."""
    return pcap.bpf_validate(_array(program), len(program)) != 0


def version() -> str:
    return pcap.pcap_lib_version().decode()
