"""A SYN flood from random sources, for the flood tests and bench/synflood.py: run it in a host (namespace).

    python syn_flooder.py DST PORT --seconds S --count N [--rate PPS] [--sources 198.18.0.0/15] [--seed N]

Sends TCP SYNs to DST:PORT, each from a random address of --sources and a random port with a random sequence
number, through a raw socket (IP_HDRINCL: the kernel adds the IP checksum and routes the packet as any other, the
source stays as written). It stops after --count packets or --seconds, whichever comes first, so it is bounded
in both; --rate paces it (0: as fast as it can). Prints "ready" before the first packet and, at the end, one
JSON line: {"sent": N, "seconds": T}. No scapy: the headers are packed by hand and the TCP checksum of each SYN
is the template's sum plus the words that change.
"""
import argparse
import errno
import ipaddress
import json
import random
import socket
import struct
import sys
import time

PACE_EVERY = 64                 # packets between two looks at the clock when --rate paces
TCP_SYN = 0x02
WINDOW = 64240


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _words(raw: bytes) -> int:
    return sum(struct.unpack(f"!{len(raw) // 2}H", raw))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dst")
    parser.add_argument("port", type=int)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--sources", default="198.18.0.0/15")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    sources = ipaddress.IPv4Network(args.sources)
    base, span = int(sources.network_address), sources.num_addresses
    dst = ipaddress.IPv4Address(args.dst).packed
    rng = random.Random(args.seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)   # IP_HDRINCL implied
    packet = bytearray(40)
    # IPv4: version 4, 20 bytes, length 40, TTL 64, TCP; id and checksum 0: the kernel fills them in.
    struct.pack_into("!BBHHHBBH4s4s", packet, 0, 0x45, 0, 40, 0, 0, 64, socket.IPPROTO_TCP, 0, bytes(4), dst)
    struct.pack_into("!HHIIBBHHH", packet, 20, 0, args.port, 0, 0, 5 << 4, TCP_SYN, WINDOW, 0, 0)
    # The checksum's constant part: the pseudo header's destination, protocol and length, and the TCP header
    # with its source port, sequence number and checksum zero.
    constant = _words(dst) + socket.IPPROTO_TCP + 20 + _words(bytes(packet[20:40]))
    target = (args.dst, 0)

    print("ready", flush=True)
    start = time.monotonic()
    deadline = start + args.seconds
    sent = 0
    while sent < args.count:
        if sent % PACE_EVERY == 0:
            now = time.monotonic()
            if now >= deadline:
                break
            if args.rate:
                due = start + sent / args.rate
                if due > now:
                    time.sleep(min(due - now, deadline - now))
        src = base + rng.randrange(span)
        sport = rng.randrange(1024, 65536)
        seq = rng.getrandbits(32)
        total = constant + (src >> 16) + (src & 0xFFFF) + sport + (seq >> 16) + (seq & 0xFFFF)
        struct.pack_into("!I", packet, 12, src)
        struct.pack_into("!HHI", packet, 20, sport, args.port, seq)
        struct.pack_into("!H", packet, 36, ~_fold(total) & 0xFFFF)
        try:
            sock.sendto(packet, target)
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                raise
            continue                    # the device queue is full: this one is lost, as on a wire
        sent += 1
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
