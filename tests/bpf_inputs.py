"""Inputs for the classic BPF tests (tests/test_bpf_differential.py): hypothesis strategies of programs, valid
by construction or anything at all, and realistic frames built with scapy, with the tcpdump expressions run on them.
Addresses are the documentation ranges only (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)."""
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from pyswitch.refpath import bpf as twin
from pyswitch.refpath.bpf import ALU, DIV, JA, JMP, LD, LDX, LSH, MEM, MOD, RET, RSH, ST, STX, A, K, X

U32 = 0xFFFFFFFF

# Offsets near a frame's end, and the edges of 32 bits (wrap-around of X + k, ancillary offsets).
ks = st.one_of(st.just(0), st.integers(0, 80), st.integers(0, U32),
               st.sampled_from([0, 1, 2, 3, 4, 14, 15, 16, 31, 32, 33, 0x7FFFFFFF, 0x80000000, 0xFFFFF000,
                                0xFFFFF02C, U32 - 3, U32 - 1, U32]))
_RET_CODES = (RET | K, RET | A)
_BODY_CODES = sorted(twin.OPCODES - set(_RET_CODES))
_MEMORY = {LD | MEM, LDX | MEM, ST, STX}
_CONDITIONAL = {JMP | op | src for op in (0x10, 0x20, 0x30, 0x40) for src in (K, X)}


@st.composite
def valid_programs(draw, max_body=24):
    """A program ps_bpf_check accepts: operands drawn inside the checker's bounds, jumps inside the program,
    a RET at the end and now and then before it."""
    body = draw(st.integers(0, max_body))
    n = body + 1
    prog = []
    for pc in range(body):
        room = n - pc - 2                               # the most a jump from pc may skip
        code = draw(st.sampled_from(_BODY_CODES) | st.sampled_from(_RET_CODES))
        k = draw(ks)
        jt = jf = 0
        if code in _MEMORY:
            k = draw(st.integers(0, twin.MEMWORDS - 1))
        elif code in (ALU | DIV | K, ALU | MOD | K):
            k = k or 1
        elif code in (ALU | LSH | K, ALU | RSH | K):
            k = draw(st.integers(0, 31))
        elif code == JMP | JA:
            k = draw(st.integers(0, room))
        elif code in _CONDITIONAL:
            jt, jf = draw(st.integers(0, min(room, 255))), draw(st.integers(0, min(room, 255)))
        prog.append((code, jt, jf, k))
    prog.append((draw(st.sampled_from(_RET_CODES)), 0, 0, draw(ks)))
    return prog


# Any instruction at all: mostly known opcodes with any operands, so that each of the checker's rules is reached.
any_insns = st.tuples(st.sampled_from(sorted(twin.OPCODES)) | st.integers(0, 0xFFFF),
                      st.integers(0, 4) | st.integers(0, 255), st.integers(0, 4) | st.integers(0, 255), ks)
any_programs = st.lists(any_insns, max_size=12) | valid_programs().flatmap(
    lambda prog: st.tuples(st.integers(0, len(prog) - 1), any_insns).map(
        lambda change: prog[:change[0]] + [change[1]] + prog[change[0] + 1:]))

frames = st.binary(max_size=96)
wirelens = st.none() | st.integers(0, 2000) | st.integers(0, U32)

MAC_A, MAC_B, MAC_C = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def _frames():
    e = Ether(src=MAC_B, dst=MAC_C)
    v4 = dict(src="192.0.2.10", dst="198.51.100.20")
    v6 = dict(src="2001:db8::10", dst="2001:db8:1::20")
    built = {
        "icmp": e / IP(**v4) / ICMP(),
        "tcp-syn-80": e / IP(src="192.0.2.10", dst="203.0.113.5") / TCP(sport=40000, dport=80, flags="S"),
        "tcp-ack-from-80-big": e / IP(src="203.0.113.5", dst="192.0.2.10") / TCP(sport=80, dport=40000, flags="A")
        / Raw(b"x" * 200),
        "tcp-syn-443": e / IP(**v4) / TCP(sport=40001, dport=443, flags="S"),
        "tcp-80-ip-options": e / IP(options=[IPOption(b"\x01\x01\x01\x01"), IPOption(b"\x01\x01\x01\x01")], **v4)
        / TCP(sport=40002, dport=80, flags="PA"),
        "tcp-later-fragment": e / IP(frag=100, proto=6, **v4) / Raw(b"\x00\x50\x00\x50" + b"\x00" * 16),
        "udp-dns-query": e / IP(src="192.0.2.10", dst="198.51.100.53") / UDP(sport=33333, dport=53) / Raw(b"\0" * 12),
        "udp-dns-reply": e / IP(src="198.51.100.53", dst="192.0.2.10") / UDP(sport=53, dport=33333) / Raw(b"\0" * 12),
        "udp-55": e / IP(**v4) / UDP(sport=1055, dport=55),
        "arp-request": Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC_A, psrc="192.0.2.1",
                                                                       pdst="192.0.2.2"),
        "vlan10-icmp": e / Dot1Q(vlan=10) / IP(**v4) / ICMP(),
        "vlan20-icmp": e / Dot1Q(vlan=20) / IP(**v4) / ICMP(),
        "vlan10-dns": e / Dot1Q(vlan=10) / IP(**v4) / UDP(sport=33334, dport=53),
        "ipv6-icmp": e / IPv6(**v6) / ICMPv6EchoRequest(),
        "ipv6-tcp-syn-80": e / IPv6(**v6) / TCP(sport=40003, dport=80, flags="S"),
        "ipv6-dns": e / IPv6(**v6) / UDP(sport=33335, dport=53),
        "from-mac-a": Ether(src=MAC_A, dst=MAC_B) / IP(src="203.0.113.7", dst="192.0.2.99") / UDP(sport=1000,
                                                                                                 dport=2000),
        "to-mac-a-ttl1": Ether(src=MAC_B, dst=MAC_A) / IP(ttl=1, **v4) / UDP(sport=1001, dport=2001),
        "other-ethertype": Ether(src=MAC_B, dst=MAC_C, type=0x88B5) / Raw(b"\x45" + b"\0" * 45),
    }
    out = {name: bytes(pkt) for name, pkt in built.items()}
    out["runt"] = bytes(Ether(src=MAC_A, dst=MAC_B))[:6]
    return out


FRAMES = _frames()
# Truncated captures of whole frames (buflen < wirelen): cut inside each header in turn.
TRUNCATED = {f"{name}/{cut}": (FRAMES[name][:cut], len(FRAMES[name]))
             for name in ("tcp-syn-80", "vlan10-icmp", "ipv6-tcp-syn-80", "udp-dns-query", "tcp-80-ip-options")
             for cut in (13, 14, 20, 23, 24, 34, 37, 38, 40, 54)}
CAPTURES = {**{name: (frame, len(frame)) for name, frame in FRAMES.items()}, **TRUNCATED}

# Expressions, and for the first ones the whole frames that they must match (truncated ones are compared only).
EXPECTED = {
    "icmp": {"icmp"},
    "tcp port 80": {"tcp-syn-80", "tcp-ack-from-80-big", "tcp-80-ip-options", "ipv6-tcp-syn-80"},
    "udp and dst port 53": {"udp-dns-query", "ipv6-dns"},       # port primitives cover IPv4 and IPv6
    "arp": {"arp-request"},
    "vlan 10 and icmp": {"vlan10-icmp"},
    "ip6": {"ipv6-icmp", "ipv6-tcp-syn-80", "ipv6-dns"},
    "ether host 02:00:00:00:00:01": {"arp-request", "from-mac-a", "to-mac-a-ttl1"},    # the runt's source is cut
    "tcp[tcpflags] & tcp-syn != 0": {"tcp-syn-80", "tcp-syn-443"},
    "greater 100": {"tcp-ack-from-80-big"},
    "net 192.0.2.0/24": {"icmp", "tcp-syn-80", "tcp-ack-from-80-big", "tcp-syn-443", "tcp-80-ip-options",
                         "tcp-later-fragment", "udp-dns-query", "udp-dns-reply", "udp-55", "from-mac-a",
                         "to-mac-a-ttl1", "arp-request"},
    "not ip": {"arp-request", "vlan10-icmp", "vlan20-icmp", "vlan10-dns", "ipv6-icmp", "ipv6-tcp-syn-80", "ipv6-dns",
               "other-ethertype"},                 # not the runt: reading its EtherType rejects it
}
EXPRESSIONS = list(EXPECTED) + [
    "vlan", "vlan 20", "icmp6", "ip6 and tcp dst port 80", "ip6 net 2001:db8:1::/48", "ether broadcast",
    "udp portrange 50-60", "less 64", "len - 14 > 50", "tcp[13] = 2", "ether[12:2] = 0x86dd", "ether proto 0x88b5",
    "ip[6:2] & 0x1fff != 0", "src host 192.0.2.10 and dst net 198.51.100.0/24", "ip[8] = 1", "udp[8:2] = 0",
    # Arithmetic, for the ALU: constants and, through scratch memory, X.
    "ip[2:2] / 4 > 10", "ip[2:2] % 7 = 0", "ip[8] * 3 > 100", "(ip[0] & 0xf) << 2 = 20", "ip[0] >> 4 = 4",
    "ip[8] - 1 = 63", "ip[8] + 1 = 65", "ip[8] ^ 0xff = 0xbf", "ip[8] | 1 = 65", "-ip[8] = 0xffffffc0",
    "ip[2:2] - ip[8] > 10", "ip[2:2] / ip[8] > 0", "ip[2:2] % ip[8] = 0", "ip[8] << ip[9] > 100",
    # ip[0] is 0x45 (69) or 0x46: shifts by X of 32 or more, where C alone would be undefined.
    "ip[2:2] >> ip[0] = 0", "ip[2:2] << ip[0] = 0", "ip[8] >> (ip[0] - 60) = 0",
]


def mutated_captures():
    """A capture of FRAMES, then cut short and with a few bytes changed."""
    @st.composite
    def build(draw):
        frame = bytearray(FRAMES[draw(st.sampled_from(sorted(FRAMES)))])
        for _ in range(draw(st.integers(0, 3))):
            if frame:
                frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
        wirelen = len(frame)
        cut = draw(st.none() | st.integers(0, len(frame)))
        return bytes(frame[:cut]), wirelen
    return build()
