"""L7 content rules (pyswitch/l7/rules.py): each kind of condition routes to its pool, first match wins, the
default pool catches the rest, SNI rules for l7-tls, and bad rule tables are refused with the key named."""
import pytest

from pyswitch import fastpath, refpath
from pyswitch.l7.rules import HttpView, Match, RuleError, RuleSet, normal_host, rule_from_table

IMPLS = pytest.mark.parametrize("impl", [fastpath, refpath], ids=["c", "python"])
# The example, plus one rule of each other kind.
TABLES = [{"host": "api.example.test", "path_prefix": "/v1/", "pool": "api"},
          {"cookie": "canary=1", "pool": "canary"},
          {"header": "X-Tenant: blue", "pool": "blue"},
          {"path_regex": "^/static/.*\\.(css|js)$", "pool": "static"},
          {"host": "*.img.example.test", "pool": "images", "name": "images"}]
RULES = RuleSet([rule_from_table(t, i) for i, t in enumerate(TABLES)], "web")


def request(target="/", host="www.example.test", *fields):
    return (f"GET {target} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f + "\r\n" for f in fields) + "\r\n").encode()


CASES = [   # (request bytes, expected match)
    (request("/v1/users", "API.Example.Test:80"), Match("api", "rule 1")),
    (request("/v1/users", "api.example.test."), Match("api", "rule 1")),
    (request("/v2/users", "api.example.test"), Match("web", None)),               # host AND prefix, not OR
    (request("/v1/users", "www.example.test"), Match("web", None)),
    (request("/v1/x", "api.example.test", "Cookie: canary=1"), Match("api", "rule 1")),   # first match wins
    (request("/", "www.example.test", "Cookie: a=b; canary=1"), Match("canary", "rule 2")),
    (request("/", "www.example.test", "Cookie: canary=10"), Match("web", None)),
    (request("/", "www.example.test", "Cookie: Canary=1"), Match("web", None)),
    (request("/", "www.example.test", "x-tenant:  blue "), Match("blue", "rule 3")),
    (request("/", "www.example.test", "X-Tenant: red", "X-Tenant: blue"), Match("blue", "rule 3")),
    (request("/", "www.example.test", "X-Tenant: Blue"), Match("web", None)),
    (request("/static/app.js?v=2"), Match("static", "rule 4")),                 # the regex sees the path only
    (request("/static/app.json"), Match("web", None)),
    (request("/a/static/app.js"), Match("web", None)),
    (request("/", "cdn.img.example.test:8080"), Match("images", "images")),
    (request("/", "img.example.test"), Match("web", None)),
    (b"GET http://api.example.test/v1/ HTTP/1.1\r\nHost: other.test\r\n\r\n", Match("api", "rule 1")),
    (b"GET /v1/ HTTP/1.0\r\n\r\n", Match("web", None)),                         # no Host at all
]


@IMPLS
@pytest.mark.parametrize("case", range(len(CASES)))
def test_http_rules(impl, case):
    data, expected = CASES[case]
    parsed = impl.http_parse_request(data)
    assert parsed.complete, parsed
    assert RULES.match_http(HttpView(data, parsed, impl)) == expected


def test_view_needs_a_complete_request():
    with pytest.raises(ValueError):
        HttpView(b"GET /", refpath.http_parse_request(b"GET /"), refpath)


def test_sni_rules():
    rules = RuleSet([rule_from_table({"host": "api.example.test", "pool": "api"}, 0, "l7-tls"),
                     rule_from_table({"host": "*.example.test", "pool": "wild"}, 1, "l7-tls")], "web")
    assert rules.match_sni(b"API.example.test") == Match("api", "rule 1")
    assert rules.match_sni(b"www.example.test") == Match("wild", "rule 2")
    assert rules.match_sni(b"example.test") == Match("web", None)
    assert rules.match_sni(None) == Match("web", None)


def test_normal_host():
    assert normal_host(b"[2001:DB8::1]:8080") == "[2001:db8::1]"
    assert normal_host(b"Example.TEST.:80") == "example.test"
    assert normal_host(b"") == "" and normal_host(None) is None


BAD = [   # (table, mode, the start of the error message: the key at fault)
    ({"host": "a.test"}, "l7", "vip.rule[3].pool: missing"),
    ({"pool": "p"}, "l7", "vip.rule[3]: a rule needs at least one of"),
    ({"pool": "p", "hots": "a"}, "l7", "vip.rule[3].hots: not a rule condition"),
    ({"pool": "p", "path_prefix": "/a"}, "l7-tls", "vip.rule[3].path_prefix: not a rule condition of mode 'l7-tls'"),
    ({"pool": "p", "path_prefix": "a/"}, "l7", "vip.rule[3].path_prefix: 'a/' does not start with '/'"),
    ({"pool": "p", "path_regex": "(["}, "l7", "vip.rule[3].path_regex:"),
    ({"pool": "p", "header": "X-Tenant blue"}, "l7", "vip.rule[3].header: expected 'X-Tenant: blue'"),
    ({"pool": "p", "header": "Bad Name: x"}, "l7", "vip.rule[3].header:"),
    ({"pool": "p", "cookie": "canary"}, "l7", "vip.rule[3].cookie: expected 'canary=1'"),
    ({"pool": "p", "host": "a b"}, "l7", "vip.rule[3].host:"),
    ({"pool": "", "host": "a"}, "l7", "vip.rule[3].pool: expected a non-empty string"),
    ({"pool": "p", "host": 7}, "l7", "vip.rule[3].host: expected a non-empty string"),
]


@pytest.mark.parametrize("table, mode, message", BAD)
def test_bad_rules_name_the_key(table, mode, message):
    with pytest.raises(RuleError) as caught:
        rule_from_table(table, 3, mode)
    assert str(caught.value).startswith(message), caught.value
