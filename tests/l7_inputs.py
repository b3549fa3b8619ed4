"""Inputs for the L7 parsers' tests: ClientHellos built field by field, and hypothesis strategies of requests
and ClientHellos with their mutations (used by tests/test_l7_parse*.py and bench/micro/bench_l7.py)."""
import struct

from hypothesis import strategies as st


def server_name_ext(*names, name_type=0) -> bytes:
    """A server_name extension (type 0) listing `names` as entries of `name_type`."""
    entries = b"".join(struct.pack("!BH", name_type, len(n)) + n for n in names)
    body = struct.pack("!H", len(entries)) + entries
    return struct.pack("!HH", 0, len(body)) + body


def extension(ext_type: int, body: bytes = b"") -> bytes:
    return struct.pack("!HH", ext_type, len(body)) + body


def client_hello(extensions=(), session_id=b"\x11" * 32, suites=(0x1301, 0x1302, 0xC02F), compression=b"\x00",
                 with_extensions=True, record_version=0x0301) -> bytes:
    """A TLS record holding one ClientHello with these fields; `extensions` are already encoded."""
    body = (struct.pack("!H", 0x0303) + bytes(range(32)) + bytes([len(session_id)]) + session_id
            + struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
            + bytes([len(compression)]) + compression)
    if with_extensions:
        exts = b"".join(extensions)
        body += struct.pack("!H", len(exts)) + exts
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", 22, record_version, len(handshake)) + handshake


# Pieces of requests, chosen to reach every branch of the parsers: good and bad bytes side by side.
_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=12)
methods = st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "CONNECT"]) | tokens
paths = st.from_regex(r"/[A-Za-z0-9._~/%-]{0,20}", fullmatch=True)
queries = st.none() | st.from_regex(r"[A-Za-z0-9=&%._-]{0,12}", fullmatch=True)
hosts = st.sampled_from(["api.example.test", "www.example.test:8080", "[2001:db8::1]:80", "192.0.2.1", ""])
origin_forms = st.builds(lambda p, q: p + ("" if q is None else "?" + q), paths, queries)
absolute_forms = st.builds(lambda s, h, p, q: f"{s}://{h}{p}" + ("" if q is None else "?" + q),
                           st.sampled_from(["http", "HTTPS", "ftp"]),
                           st.sampled_from(["h.test", "h.test:81", "u@h.test", ""]), paths | st.just(""), queries)
versions = st.sampled_from(["HTTP/1.1"] * 8 + ["HTTP/1.0"] * 2 + ["HTTP/1.9", "HTTP/2.0", "http/1.1", "HTTP/1.1 "])
header_names = st.sampled_from(["Host", "host", "Content-Length", "Transfer-Encoding"]
                               + ["Cookie", "X-Tenant", "User-Agent", "Accept"] * 4 + ["Bad Name", ""]) | tokens
header_values = st.one_of(
    st.sampled_from(["api.example.test", "12", "chunked", "gzip, chunked"] + ["canary=1; PSWID=abc", "blue"] * 4 + [
                     " padded \t", "a\x00b", "x\ry", "007", "1" * 16, "é".encode().decode("latin-1")]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20))
separators = st.sampled_from([": "] * 6 + [":", ":\t", " : "])
line_ends = st.sampled_from(["\r\n"] * 30 + ["\n", "\r"])


@st.composite
def requests(draw) -> bytes:
    """A request head, mostly well formed, with its body start; bytes, latin-1 encoded."""
    lead = draw(st.sampled_from(["", "", "", "\r\n"]))
    form = draw(st.integers(0, 19))     # mostly the origin form, as clients send; drawn so, not by one_of
    target = "*" if form == 0 else draw(absolute_forms) if form < 4 else draw(origin_forms)
    method = "OPTIONS" if form == 0 and draw(st.booleans()) else draw(methods)
    line = f"{method} {target} {draw(versions)}"
    fields = draw(st.lists(st.tuples(header_names, separators, header_values, line_ends), max_size=6))
    if draw(st.integers(0, 4)):
        fields.insert(0, ("Host", ": ", draw(hosts), "\r\n"))
    head = lead + line + "\r\n" + "".join(n + s + v + e for n, s, v, e in fields) + "\r\n"
    return (head + draw(st.sampled_from(["", "body", "\r\n"]))).encode("latin-1")


@st.composite
def client_hellos(draw) -> bytes:
    names = draw(st.lists(st.sampled_from([b"api.example.test", b"a", b"x" * 256, b"bad name", b"www.example.test"]),
                          max_size=2))
    exts = [extension(draw(st.sampled_from([10, 13, 16, 43, 51])), draw(st.binary(max_size=12)))
            for _ in range(draw(st.integers(0, 3)))]
    if names or draw(st.booleans()):
        exts.insert(draw(st.integers(0, len(exts))), server_name_ext(*names,
                                                                       name_type=draw(st.sampled_from([0, 0, 1]))))
    if draw(st.integers(0, 9)) == 0:
        exts.append(server_name_ext(b"twice.example.test"))
    return client_hello(exts, session_id=draw(st.sampled_from([b"", b"\x22" * 32] * 4 + [b"\x33" * 33])),
                        suites=draw(st.lists(st.integers(0, 0xFFFF), min_size=draw(st.sampled_from([1] * 9 + [0])),
                                             max_size=4)),
                        compression=draw(st.sampled_from([b"\x00"] * 8 + [b"", b"\x01\x00"])),
                        with_extensions=draw(st.booleans()) or bool(exts))


@st.composite
def mutated(draw, inputs) -> bytes:
    """An input of `inputs`, then maybe truncated, a byte overwritten, a byte inserted or a byte removed."""
    data = bytearray(draw(inputs))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["truncate", "set", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[i:]
        elif kind == "set":
            data[i] = draw(st.sampled_from([0, 9, 10, 13, 32, 58, 59, 61, 63, 127, 255]) | st.integers(0, 255))
        elif kind == "insert":
            data.insert(i, draw(st.integers(0, 255)))
        else:
            del data[i]
    return bytes(data)
