"""C against its twin on generated input: requests and ClientHellos built by hypothesis (tests/l7_inputs.py),
then truncated and damaged; both parsers must give the same verdict, reason and every field, and the same
header and cookie lookups, and a prefix of a stream must never contradict the whole."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l7_inputs import client_hellos, mutated, requests
from pyswitch import fastpath, refpath
from pyswitch.l7 import http_types as l7

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LOOKUPS = [b"host", b"HOST", b"cookie", b"x-tenant", b"Content-Length", b"nope"]
COOKIES = [b"canary", b"PSWID", b"a", b""]


def agree_on_request(data: bytes, max_head: int = 0):
    c = fastpath.http_parse_request(data, max_head)
    py = refpath.http_parse_request(data, max_head)
    assert c == py, data
    if c.complete:
        for name in LOOKUPS:
            for start in range(len(c.headers) + 1):
                assert fastpath.http_find_header(data, c, name, start) == \
                    refpath.http_find_header(data, py, name, start), (data, name, start)
        for name in COOKIES:
            assert fastpath.http_find_cookie(data, c, name) == refpath.http_find_cookie(data, py, name), (data, name)
    return c


@SETTINGS
@given(requests())
def test_generated_requests_agree(data):
    agree_on_request(data)


@SETTINGS
@given(mutated(requests()))
def test_damaged_requests_agree(data):
    agree_on_request(data)


@SETTINGS
@given(requests(), st.integers(1, 200))
def test_bounded_requests_agree(data, max_head):
    agree_on_request(data, max_head)


@settings(max_examples=150, deadline=None)
@given(requests())
def test_a_prefix_never_contradicts_the_whole(data):
    whole = agree_on_request(data)
    for n in range(len(data)):
        part = agree_on_request(data[:n])
        if part.verdict == l7.HTTP_MALFORMED:      # once refused, refused for the same reason
            assert whole == part, (data, n)
        elif part.verdict == l7.HTTP_COMPLETE:     # complete before its end: the rest was body
            assert whole == part, (data, n)


def agree_on_hello(data: bytes):
    c, py = fastpath.tls_client_hello_sni(data), refpath.tls_client_hello_sni(data)
    assert c == py, data
    return c


@SETTINGS
@given(client_hellos())
def test_generated_client_hellos_agree(data):
    agree_on_hello(data)


@SETTINGS
@given(mutated(client_hellos()))
def test_damaged_client_hellos_agree(data):
    agree_on_hello(data)


@SETTINGS
@given(st.binary(max_size=64))
def test_random_bytes_agree(data):
    agree_on_hello(data)
    agree_on_request(data)


@settings(max_examples=150, deadline=None)
@given(client_hellos())
def test_a_hello_prefix_never_contradicts_the_whole(data):
    whole = agree_on_hello(data)
    for n in range(len(data)):
        part = agree_on_hello(data[:n])
        if part.verdict != l7.TLS_NEED_MORE:
            assert part == whole, (data, n)
