"""L7: a client's first bytes read as an HTTP request head or a TLS ClientHello, C (csrc/http.c, tls_sni.c)
against the twin (refpath/http.py).  The inputs are real: curl's request and openssl s_client's ClientHello as
tests/test_l7_capture_netns.py captured them, and a browser-sized head built from curl's."""
from pathlib import Path

import pytest

from pyswitch.l7 import http_types as l7

FIXTURES = Path(__file__).resolve().parent.parent.parent / "tests" / "fixtures" / "l7"
CURL = (FIXTURES / "curl_get.bin").read_bytes()
BROWSER = CURL[:-2] + b"".join(b"X-Header-%d: %s\r\n" % (i, b"v" * 40) for i in range(10)) + b"\r\n"
HELLO = (FIXTURES / "openssl_client_hello.bin").read_bytes()
REQUESTS = {"HTTP head, curl GET (6 lines)": CURL,
            f"HTTP head, 15 fields ({len(BROWSER)} bytes)": BROWSER}


@pytest.mark.parametrize("operation", list(REQUESTS))
def test_http_parse(impl, timed, operation):
    result = timed(operation, impl.http_parse_request, REQUESTS[operation])
    assert result.verdict == l7.HTTP_COMPLETE


def test_http_find_cookie(impl, timed):
    request = impl.http_parse_request(CURL)
    found = timed("HTTP find cookie (2nd of 2)", impl.http_find_cookie, CURL, request, b"PSWID")
    assert found is not None


def test_tls_sni(impl, timed):
    result = timed(f"TLS SNI, openssl ClientHello ({len(HELLO)} bytes)", impl.tls_client_hello_sni, HELLO)
    assert result.verdict == l7.TLS_SNI
