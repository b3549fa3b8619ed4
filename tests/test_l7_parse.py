"""The L7 request parsers (csrc/http.c, csrc/tls_sni.c and their twin refpath/http.py): a table of requests
and ClientHellos with the verdict, reason and fields each must give, run through both."""
from pathlib import Path

import pytest

from l7_inputs import client_hello, extension, server_name_ext
from pyswitch import fastpath, refpath
from pyswitch.fastpath import ffi, lib
from pyswitch.l7 import http_types as l7
from pyswitch.l7.http_types import text

FIXTURES = Path(__file__).resolve().parent / "fixtures/l7"
IMPLS = pytest.mark.parametrize("impl", [fastpath, refpath], ids=["c", "python"])
GOOD = b"GET /v1/items?id=7 HTTP/1.1\r\nHost: api.example.test\r\nCookie: a=1; canary=1\r\n\r\n"


def test_constants_equal_c():
    names = [n for n in vars(l7) if n.isupper() and isinstance(getattr(l7, n), int)]
    assert len(names) >= 30
    assert {n: getattr(l7, n) for n in names} == {n: getattr(lib, "PS_" + n) for n in names}
    assert len(l7.HTTP_REASON_NAMES) == lib.PS_HTTP_E_COUNT and len(l7.TLS_REASON_NAMES) == lib.PS_TLS_E_COUNT
    assert len(ffi.new("struct ps_http_request *").headers) == lib.PS_HTTP_MAX_HEADERS


def head(*lines, version="HTTP/1.1", target="/"):
    return (f"GET {target} {version}\r\n" + "".join(line + "\r\n" for line in lines) + "\r\n").encode("latin-1")


MALFORMED = {   # id -> (bytes, reason)
    "bare LF": (b"GET / HTTP/1.1\nHost: a\n\n", l7.HTTP_E_LINE_ENDING),
    "bare LF in a field": (b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", l7.HTTP_E_LINE_ENDING),
    "bare CR in a value": (head("Host: a", "X: 1\r2"), l7.HTTP_E_HEADER_VALUE),
    "NUL in a value": (head("Host: a", "X: 1\x002"), l7.HTTP_E_HEADER_VALUE),
    "DEL in a value": (head("Host: a", "X: \x7f"), l7.HTTP_E_HEADER_VALUE),
    "double space": (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", l7.HTTP_E_REQUEST_LINE),
    "leading space": (b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", l7.HTTP_E_REQUEST_LINE),
    "two parts": (b"GET /\r\nHost: a\r\n\r\n", l7.HTTP_E_REQUEST_LINE),
    "method not a token": (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", l7.HTTP_E_METHOD),
    "target relative": (head("Host: a", target="index.html"), l7.HTTP_E_TARGET),
    "target with a fragment": (head("Host: a", target="/a#b"), l7.HTTP_E_TARGET),
    "target with userinfo": (head("Host: a", target="http://u@a/"), l7.HTTP_E_TARGET),
    "target ftp": (head("Host: a", target="ftp://a/"), l7.HTTP_E_TARGET),
    "asterisk for GET": (head("Host: a", target="*"), l7.HTTP_E_TARGET),
    "target with obs-text": (head("Host: a", target="/\xe9"), l7.HTTP_E_TARGET),
    "HTTP/2.0": (head("Host: a", version="HTTP/2.0"), l7.HTTP_E_VERSION),
    "lower-case version": (head("Host: a", version="http/1.1"), l7.HTTP_E_VERSION),
    "version with a space after": (head("Host: a", version="HTTP/1.1 "), l7.HTTP_E_VERSION),
    "space before colon": (head("Host : a"), l7.HTTP_E_HEADER_NAME),
    "no colon": (head("Host: a", "Xyz"), l7.HTTP_E_HEADER_NAME),
    "empty name": (head("Host: a", ": v"), l7.HTTP_E_HEADER_NAME),
    "obs-fold": (head("Host: a", "X: 1", " continued"), l7.HTTP_E_OBS_FOLD),
    "obs-fold with a tab": (head("Host: a", "\tX: 1"), l7.HTTP_E_OBS_FOLD),
    "too many headers": (head("Host: a", *[f"X{i}: {i}" for i in range(64)]), l7.HTTP_E_TOO_MANY_HEADERS),
    "no Host in 1.1": (head("X: 1"), l7.HTTP_E_HOST),
    "two Hosts": (head("Host: a", "host: b"), l7.HTTP_E_HOST),
    "Host with a slash": (head("Host: a/b"), l7.HTTP_E_HOST),
    "Host with a space": (head("Host: a b"), l7.HTTP_E_HOST),
    "two Content-Lengths": (head("Host: a", "Content-Length: 1", "Content-Length: 1"), l7.HTTP_E_CONTENT_LENGTH),
    "Content-Length list": (head("Host: a", "Content-Length: 1, 1"), l7.HTTP_E_CONTENT_LENGTH),
    "Content-Length negative": (head("Host: a", "Content-Length: -1"), l7.HTTP_E_CONTENT_LENGTH),
    "Content-Length empty": (head("Host: a", "Content-Length:"), l7.HTTP_E_CONTENT_LENGTH),
    "Content-Length 16 digits": (head("Host: a", "Content-Length: " + "1" * 16), l7.HTTP_E_CONTENT_LENGTH),
    "TE and CL": (head("Host: a", "Transfer-Encoding: chunked", "Content-Length: 3"),
                  l7.HTTP_E_TRANSFER_ENCODING),
    "CL and TE": (head("Host: a", "Content-Length: 3", "Transfer-Encoding: chunked"),
                  l7.HTTP_E_TRANSFER_ENCODING),
    "TE gzip, chunked": (head("Host: a", "Transfer-Encoding: gzip, chunked"), l7.HTTP_E_TRANSFER_ENCODING),
    "TE twice": (head("Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
                 l7.HTTP_E_TRANSFER_ENCODING),
    "TE with a tab inside": (head("Host: a", "Transfer-Encoding: chun\tked"), l7.HTTP_E_TRANSFER_ENCODING),
}


@IMPLS
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed(impl, case):
    data, reason = MALFORMED[case]
    assert impl.http_parse_request(data) == l7.HttpRequest(l7.HTTP_MALFORMED, reason)


@IMPLS
def test_good_request_fields(impl):
    r = impl.http_parse_request(GOOD + b"body")
    assert (r.verdict, r.reason, r.head_size) == (l7.HTTP_COMPLETE, l7.HTTP_OK, len(GOOD))
    assert [text(GOOD, s) for s in (r.method, r.path, r.query, r.host)] == [b"GET", b"/v1/items", b"id=7",
                                                                              b"api.example.test"]
    assert (r.version_minor, r.content_length, r.chunked, len(r.headers)) == (1, -1, False, 2)
    assert text(GOOD, r.headers[1].name) == b"Cookie"


@IMPLS
def test_lenient_where_clients_differ(impl):
    data = b"\r\n\r\nPOST /a?b=c&d HTTP/1.0\r\nX-Tenant:\t blue \t\r\nCONTENT-LENGTH: 0012\r\n\r\n"
    r = impl.http_parse_request(data)
    assert r.verdict == l7.HTTP_COMPLETE
    assert text(data, r.method) == b"POST" and r.host is None and r.version_minor == 0   # 1.0: Host optional
    assert r.content_length == 12
    assert text(data, r.headers[impl.http_find_header(data, r, b"x-TENANT")].value) == b"blue"
    assert impl.http_find_header(data, r, b"x-tenan") == -1
    data = head("Host: a", "Transfer-Encoding: Chunked", "X: caf\xe9")   # obs-text in a value is allowed
    r = impl.http_parse_request(data)
    assert r.verdict == l7.HTTP_COMPLETE and r.chunked


@IMPLS
def test_targets(impl):
    data = head("Host: other.test", target="HTTP://Abs.Example.test:81/p/q?x")
    r = impl.http_parse_request(data)
    assert text(data, r.host) == b"Abs.Example.test:81"           # the target's authority wins over Host
    assert text(data, r.path) == b"/p/q" and text(data, r.query) == b"x"
    data = head("Host: a", target="https://h.test?only")
    r = impl.http_parse_request(data)
    assert (text(data, r.host), text(data, r.path), text(data, r.query)) == (b"h.test", b"", b"only")
    data = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
    assert text(data, impl.http_parse_request(data).path) == b"*"
    data = head("Host: a", target="/a?")
    assert impl.http_parse_request(data).query == (data.index(b"?") + 1, 0)   # empty query, not absent
    data = head("Host:", target="/")
    assert impl.http_parse_request(data).host == (data.index(b"Host:") + 5, 0)  # empty Host is allowed


@IMPLS
def test_need_more_then_complete(impl):
    for n in range(len(GOOD)):
        assert impl.http_parse_request(GOOD[:n]) == l7.HttpRequest(l7.HTTP_NEED_MORE), n
    # A bad line is refused as soon as its LF is in, before the head is complete.
    assert impl.http_parse_request(b"GET / HTTP/1.1\r\nBad Name: 1\r\n").verdict == l7.HTTP_MALFORMED


@IMPLS
def test_size_bound(impl):
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 20000
    assert impl.http_parse_request(big) == l7.HttpRequest(l7.HTTP_MALFORMED, l7.HTTP_E_TOO_LARGE)
    assert impl.http_parse_request(big[:16383]).verdict == l7.HTTP_NEED_MORE
    assert impl.http_parse_request(GOOD, max_head=len(GOOD)).verdict == l7.HTTP_COMPLETE
    assert impl.http_parse_request(GOOD, max_head=len(GOOD) - 1).reason == l7.HTTP_E_TOO_LARGE
    assert impl.http_parse_request(b"") == l7.HttpRequest(l7.HTTP_NEED_MORE)


@IMPLS
def test_cookies(impl):
    data = head("Host: a", "Cookie: a=1;canary=0 ;  canary=1", "Cookie: late=\"q v\"; =x; flag; b=")
    r = impl.http_parse_request(data)
    assert text(data, impl.http_find_cookie(data, r, b"canary")) == b"0"        # the first of that name
    assert text(data, impl.http_find_cookie(data, r, b"a")) == b"1"
    assert text(data, impl.http_find_cookie(data, r, b"late")) == b'"q v"'
    assert text(data, impl.http_find_cookie(data, r, b"b")) == b""
    assert impl.http_find_cookie(data, r, b"flag") is None                         # a pair without '='
    assert impl.http_find_cookie(data, r, b"CANARY") is None                      # names are case-sensitive
    assert impl.http_find_cookie(data, r, b"") == (data.index(b"=x") + 1, 1)


def test_c_find_needs_a_c_request_and_its_bytes():
    with pytest.raises(ValueError):
        fastpath.http_find_header(GOOD, refpath.http_parse_request(GOOD), b"host")
    with pytest.raises(ValueError):     # C would read the spans past the end of shorter bytes
        fastpath.http_find_cookie(GOOD[:10], fastpath.http_parse_request(GOOD), b"canary")


@IMPLS
def test_any_bytes_like(impl):
    data = bytearray(GOOD)
    r = impl.http_parse_request(data)
    assert r == refpath.http_parse_request(GOOD) and impl.http_find_header(memoryview(data), r, b"host") == 0
    assert text(GOOD, impl.http_find_cookie(data, r, b"canary")) == b"1"
    hello = HELLOS["sni"][0]
    assert impl.tls_client_hello_sni(bytearray(hello)) == impl.tls_client_hello_sni(memoryview(hello))


@IMPLS
def test_curl_fixture(impl):
    data = (FIXTURES / "curl_get.bin").read_bytes()
    r = impl.http_parse_request(data)
    assert r.verdict == l7.HTTP_COMPLETE and text(data, r.host) == b"api.example.test:8080"
    assert text(data, impl.http_find_cookie(data, r, b"PSWID")) == b"abc"


SNI = server_name_ext(b"api.example.test")
HELLOS = {      # id -> (bytes, verdict, reason, name)
    "sni": (client_hello([extension(10, b"\x00\x02\x00\x1d"), SNI]), l7.TLS_SNI, 0, b"api.example.test"),
    "first host_name": (client_hello([server_name_ext(b"a.test", b"b.test")]), l7.TLS_SNI, 0, b"a.test"),
    "no extensions": (client_hello(with_extensions=False), l7.TLS_NO_SNI, 0, None),
    "other extensions": (client_hello([extension(43, b"\x02\x03\x04")]), l7.TLS_NO_SNI, 0, None),
    "only another name type": (client_hello([server_name_ext(b"x", name_type=1)]), l7.TLS_NO_SNI, 0, None),
    "empty session id, SSL 3 record": (client_hello([SNI], session_id=b"", record_version=0x0300), l7.TLS_SNI, 0,
                                       b"api.example.test"),
    "server_name twice": (client_hello([SNI, SNI]), l7.TLS_MALFORMED, l7.TLS_E_SERVER_NAME, None),
    "empty name": (client_hello([server_name_ext(b"")]), l7.TLS_MALFORMED, l7.TLS_E_SERVER_NAME, None),
    "name with a space": (client_hello([server_name_ext(b"a b")]), l7.TLS_MALFORMED, l7.TLS_E_SERVER_NAME, None),
    "name of 256 bytes": (client_hello([server_name_ext(b"a" * 256)]), l7.TLS_MALFORMED, l7.TLS_E_SERVER_NAME,
                          None),
    "session id of 33": (client_hello([SNI], session_id=b"s" * 33), l7.TLS_MALFORMED, l7.TLS_E_LENGTH, None),
    "odd suites": (client_hello([SNI], suites=()), l7.TLS_MALFORMED, l7.TLS_E_LENGTH, None),
    "no compression": (client_hello([SNI], compression=b""), l7.TLS_MALFORMED, l7.TLS_E_LENGTH, None),
    "not TLS (HTTP)": (GOOD, l7.TLS_NOT_TLS, 0, None),
    "not TLS (SSLv2 version byte)": (b"\x16\x02\x00", l7.TLS_NOT_TLS, 0, None),
    "alert record": (b"\x15\x03\x03\x00\x02\x02\x28", l7.TLS_NOT_TLS, 0, None),
    "record length 0": (b"\x16\x03\x01\x00\x00", l7.TLS_MALFORMED, l7.TLS_E_RECORD_LEN, None),
    "record length 2^14+1": (b"\x16\x03\x01\x40\x01", l7.TLS_MALFORMED, l7.TLS_E_RECORD_LEN, None),
    "record too short for a handshake": (b"\x16\x03\x01\x00\x03\x01\x00\x00", l7.TLS_MALFORMED, l7.TLS_E_LENGTH,
                                         None),
    "server hello": (b"\x16\x03\x03\x00\x30\x02", l7.TLS_MALFORMED, l7.TLS_E_NOT_CLIENT_HELLO, None),
    "fragmented": (b"\x16\x03\x01\x00\x30\x01\x00\x01\x00", l7.TLS_MALFORMED, l7.TLS_E_FRAGMENTED, None),
}


@IMPLS
@pytest.mark.parametrize("case", list(HELLOS))
def test_client_hellos(impl, case):
    data, verdict, reason, name = HELLOS[case]
    sni = impl.tls_client_hello_sni(data)
    assert (sni.verdict, sni.reason, text(data, sni.name)) == (verdict, reason, name)
    if verdict in (l7.TLS_SNI, l7.TLS_NO_SNI):
        assert sni.hello_size == len(data)


@IMPLS
def test_client_hello_arrives_in_pieces(impl):
    data = (FIXTURES / "openssl_client_hello.bin").read_bytes()
    assert [impl.tls_client_hello_sni(data[:n]).verdict for n in range(len(data))] == [l7.TLS_NEED_MORE] * len(data)
    sni = impl.tls_client_hello_sni(data + b"\x14\x03\x03")       # the next record is not read
    assert sni.verdict == l7.TLS_SNI and text(data, sni.name) == b"api.example.test"
    assert sni.hello_size == len(data)
