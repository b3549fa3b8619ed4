"""The parsers read what real clients send: curl's request and openssl s_client's ClientHello, captured live in
a test namespace and compared with the fixtures kept in tests/fixtures/l7 (which the unit tests also read).

PSW_L7_WRITE_FIXTURES=1 makes a run write what it captured into tests/fixtures/l7 (curl_get.bin,
openssl_client_hello.bin): that is how they were made.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyswitch import fastpath, refpath
from pyswitch.l7 import http_types as l7
from pyswitch.l7.http_types import text

pytestmark = pytest.mark.netns

HERE = Path(__file__).resolve().parent
SERVER = HERE / "l7_capture_server.py"
ADDRESS = "198.51.100.31"
ONE_HOST = {"host": [{"name": "c"}],
            "link": [{"host": "c", "name": "eth0", "peer": "psw-{id}l7c", "address": [ADDRESS + "/24"]}]}
CURL = ["curl", "-s", "-m", "3", "-H", "X-Tenant: blue", "-b", "canary=1; PSWID=abc",
        "--resolve", f"api.example.test:8080:{ADDRESS}", "http://api.example.test:8080/v1/items?id=7"]
OPENSSL = ["timeout", "5", "openssl", "s_client", "-connect", f"{ADDRESS}:8443", "-servername", "api.example.test"]


def capture(topo, tmp_path, port, mode, client):
    """The bytes `client` sent to a capture server on port `port`."""
    out = tmp_path / f"{mode}.bin"
    server = topo.popen("c", [sys.executable, str(SERVER), ADDRESS, str(port), mode, str(out)],
                        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        topo.exec("c", client, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    data = out.read_bytes()
    if os.environ.get("PSW_L7_WRITE_FIXTURES") == "1":
        name = {"http": "curl_get.bin", "tls": "openssl_client_hello.bin"}[mode]
        (HERE / "fixtures/l7" / name).write_bytes(data)
    return data


@pytest.mark.parametrize("impl", [fastpath, refpath], ids=["c", "python"])
def test_curl_request_parses(topology, tmp_path, impl):
    topo = topology(ONE_HOST)
    data = capture(topo, tmp_path, 8080, "http", CURL)
    request = impl.http_parse_request(data)
    assert request.verdict == l7.HTTP_COMPLETE, request
    assert request.head_size == len(data)
    assert text(data, request.method) == b"GET"
    assert text(data, request.path) == b"/v1/items" and text(data, request.query) == b"id=7"
    assert text(data, request.host) == b"api.example.test:8080"
    assert text(data, request.headers[impl.http_find_header(data, request, b"x-tenant")].value) == b"blue"
    assert text(data, impl.http_find_cookie(data, request, b"canary")) == b"1"
    assert text(data, impl.http_find_cookie(data, request, b"PSWID")) == b"abc"
    # The fixture was captured the same way; only curl's version can differ between it and now.
    fixture = (HERE / "fixtures/l7/curl_get.bin").read_bytes()
    assert data.split(b"User-Agent")[0] == fixture.split(b"User-Agent")[0]


@pytest.mark.parametrize("impl", [fastpath, refpath], ids=["c", "python"])
def test_openssl_client_hello_sni(topology, tmp_path, impl):
    topo = topology(ONE_HOST)
    data = capture(topo, tmp_path, 8443, "tls", OPENSSL)
    sni = impl.tls_client_hello_sni(data)
    assert sni.verdict == l7.TLS_SNI, sni
    assert text(data, sni.name) == b"api.example.test"
    assert sni.hello_size == len(data)
    assert impl.tls_client_hello_sni(data[:-1]).verdict == l7.TLS_NEED_MORE
