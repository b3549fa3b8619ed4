"""The L7 sections of a [[vip]] (pyswitch/config_l7.py): the issue's config loads as written, every mistake names
its key, and a switch takes it."""
import re
import tomllib

import pytest

from pyswitch.config import ConfigError, from_dict, load

VLANS = """
[[vlan]]
id = 10
address = "203.0.113.1/24"

[[vlan]]
id = 20
address = "192.0.2.1/24"
"""

# The issue's interface, as written there.
ISSUE_VIP = """
[[vip]]
name = "site"
address = "203.0.113.20"
port = 80
protocol = "tcp"
mode = "l7"                       # l7 = HTTP; "l7-tls" routes TLS by SNI without decrypting
default_pool = "web"

[[vip.rule]]                      # first match wins
host = "api.example.test"
path_prefix = "/v1/"
pool = "api"

[[vip.rule]]
cookie = "canary=1"               # also: header = "X-Tenant: blue", path_regex = "^/static/"
pool = "canary"

[[vip.pool]]
name = "api"
scheduler = "lc"
backends = ["192.0.2.21:8080", "192.0.2.22:8080"]
health = { type = "http", http_path = "/health", interval_s = 1.0 }

[[vip.pool]]
name = "web"
backends = ["192.0.2.31:80"]

[[vip.pool]]
name = "canary"
backends = ["192.0.2.41:80"]

[vip.persistence]                 # optional: the same client keeps its backend
cookie = "PSWID"                  # route by this cookie's value; "insert = true" adds it to the first response
"""


def issue_config():
    return from_dict(tomllib.loads(VLANS + ISSUE_VIP))


def test_the_issue_config_loads():
    vip = issue_config().vips[0]
    l7 = vip.l7
    assert vip.mode == "l7" and l7.default_pool == "web"
    assert [(r.pool, r.host, r.path_prefix, r.cookie) for r in l7.rules] == [
        ("api", "api.example.test", "/v1/", None), ("canary", None, None, ("canary", "1"))]
    api = l7.pool("api")
    assert api.scheduler == "lc" and [(str(a), p) for a, p in api.backends] == [("192.0.2.21", 8080),
                                                                               ("192.0.2.22", 8080)]
    assert (api.health.type, api.health.http_path, api.health.interval_s) == ("http", "/health", 1.0)
    assert l7.pool("web").scheduler == "rr" and l7.pool("web").health.type == "none"
    assert (l7.persistence.cookie, l7.persistence.insert) == ("PSWID", False)
    assert (l7.max_request_bytes, l7.request_timeout_s) == (16384, 5.0)
    assert vip.backends == []


def test_the_other_match_keys_parse():
    text = ISSUE_VIP.replace('cookie = "canary=1"', 'header = "X-Tenant:  blue "\npath_regex = "^/static/"')
    rule = from_dict(tomllib.loads(VLANS + text)).vips[0].l7.rules[1]
    assert rule.header == ("x-tenant", "blue") and rule.path_regex.search("/static/a.css")
    assert not rule.path_regex.search("/api/static/")


def test_limits_insert_and_host_case():
    text = (ISSUE_VIP.replace('host = "api.example.test"', 'host = "API.Example.Test."')
            .replace('default_pool = "web"', 'default_pool = "web"\nmax_request_bytes = 4096\nrequest_timeout_s = 2.5')
            + "insert = true\n")
    vip = from_dict(tomllib.loads(VLANS + text)).vips[0]
    assert vip.l7.rules[0].host == "api.example.test"
    assert (vip.l7.max_request_bytes, vip.l7.request_timeout_s, vip.l7.persistence.insert) == (4096, 2.5, True)


def test_l7_tls_routes_by_sni_and_default_pool_is_optional():
    text = (VLANS + '[[vip]]\nname = "tls"\naddress = "203.0.113.21"\nport = 443\nmode = "l7-tls"\n'
            '[[vip.rule]]\nhost = "a.example.test"\npool = "a"\n'
            '[[vip.pool]]\nname = "a"\nbackends = ["192.0.2.21:443"]\n')
    vip = from_dict(tomllib.loads(text)).vips[0]
    assert vip.mode == "l7-tls" and vip.l7.default_pool is None and vip.l7.rules[0].host == "a.example.test"


def test_vip_scheduler_and_health_are_the_pools_defaults():
    text = ISSUE_VIP.replace('default_pool = "web"', 'default_pool = "web"\nscheduler = "wrr"\n'
                                                     'health = { type = "tcp", interval_s = 2.0 }')
    l7 = from_dict(tomllib.loads(VLANS + text)).vips[0].l7
    assert (l7.pool("web").scheduler, l7.pool("web").health.type, l7.pool("web").health.interval_s) == \
        ("wrr", "tcp", 2.0)
    assert (l7.pool("api").scheduler, l7.pool("api").health.type) == ("lc", "http")


def _sub(old, new, count=1):
    assert old in ISSUE_VIP, old
    return ISSUE_VIP.replace(old, new, count)


# (what is wrong, the [[vip]] text, the key the message must start with)
BAD_L7 = [
    ("unknown default pool", _sub('default_pool = "web"', 'default_pool = "wbe"'), "vip[0].default_pool"),
    ("rule names an unknown pool", _sub('pool = "api"\n\n[[vip.rule]]', 'pool = "apl"\n\n[[vip.rule]]'),
     "vip[0].rule[0].pool"),
    ("rule without a pool", _sub('pool = "canary"\n', ''), "vip[0].rule[1].pool"),
    ("rule without a match key", _sub('cookie = "canary=1"', ''), "vip[0].rule[1]"),
    ("misspelt rule key", _sub('path_prefix = "/v1/"', 'path_prefx = "/v1/"'), "vip[0].rule[0].path_prefx"),
    ("bad regex", _sub('cookie = "canary=1"', 'path_regex = "^/(static"'), "vip[0].rule[1].path_regex"),
    ("regex not a string", _sub('cookie = "canary=1"', 'path_regex = 5'), "vip[0].rule[1].path_regex"),
    ("path prefix without slash", _sub('path_prefix = "/v1/"', 'path_prefix = "v1/"'), "vip[0].rule[0].path_prefix"),
    ("path prefix with a space", _sub('path_prefix = "/v1/"', 'path_prefix = "/v 1/"'),
     "vip[0].rule[0].path_prefix"),
    ("host with a slash", _sub('host = "api.example.test"', 'host = "api.example.test/v1"'), "vip[0].rule[0].host"),
    ("host empty", _sub('host = "api.example.test"', 'host = ""'), "vip[0].rule[0].host"),
    ("header without colon", _sub('cookie = "canary=1"', 'header = "X-Tenant blue"'), "vip[0].rule[1].header"),
    ("header name with space", _sub('cookie = "canary=1"', 'header = "X Tenant: blue"'), "vip[0].rule[1].header"),
    ("cookie without =", _sub('cookie = "canary=1"', 'cookie = "canary"'), "vip[0].rule[1].cookie"),
    ("cookie value with ;", _sub('cookie = "canary=1"', 'cookie = "canary=1;x"'), "vip[0].rule[1].cookie"),
    ("pool without backends", _sub('backends = ["192.0.2.31:80"]', 'backends = []'), "vip[0].pool[1].backends"),
    ("pool missing backends", _sub('backends = ["192.0.2.31:80"]\n', ''), "vip[0].pool[1].backends"),
    ("backend without port", _sub('"192.0.2.22:8080"', '"192.0.2.22"'), "vip[0].pool[0].backends[1]"),
    ("backend port 0", _sub('"192.0.2.22:8080"', '"192.0.2.22:0"'), "vip[0].pool[0].backends[1]"),
    ("backend port too big", _sub('"192.0.2.22:8080"', '"192.0.2.22:65536"'), "vip[0].pool[0].backends[1]"),
    ("backend not an address", _sub('"192.0.2.22:8080"', '"backend2:8080"'), "vip[0].pool[0].backends[1]"),
    ("backend multicast", _sub('"192.0.2.22:8080"', '"224.0.0.1:8080"'), "vip[0].pool[0].backends[1]"),
    ("backend not a string", _sub('"192.0.2.22:8080"', '8080'), "vip[0].pool[0].backends[1]"),
    ("backend twice", _sub('"192.0.2.22:8080"', '"192.0.2.21:8080"'), "vip[0].pool[0].backends[1]"),
    ("backend is the VIP", _sub('"192.0.2.22:8080"', '"203.0.113.20:8080"'), "vip[0].pool[0].backends[1]"),
    ("backend is the switch", _sub('"192.0.2.22:8080"', '"192.0.2.1:8080"'), "vip[0].pool[0].backends[1]"),
    ("backend unreachable", _sub('"192.0.2.22:8080"', '"198.51.100.9:8080"'), "vip[0].pool[0].backends[1]"),
    ("pool scheduler unknown", _sub('scheduler = "lc"', 'scheduler = "quickest"'), "vip[0].pool[0].scheduler"),
    ("pool health bad", _sub('http_path = "/health"', 'http_path = "health"'), "vip[0].pool[0].health.http_path"),
    ("pool name twice", _sub('name = "canary"', 'name = "web"'), "vip[0].pool[2].name"),
    ("pool name bad", _sub('name = "canary"', 'name = "can ary"'), "vip[0].pool[2].name"),
    ("misspelt pool key", _sub('scheduler = "lc"', 'schedular = "lc"'), "vip[0].pool[0].schedular"),
    ("no pools", re.sub(r"\[\[vip\.pool\]\].*?(?=\[vip\.persistence\])", "", ISSUE_VIP, flags=re.S),
     "vip[0].pool"),
    ("persistence without cookie", _sub('cookie = "PSWID"', 'insert = true'), "vip[0].persistence.cookie"),
    ("persistence cookie bad", _sub('cookie = "PSWID"', 'cookie = "PS ID"'), "vip[0].persistence.cookie"),
    ("persistence insert not bool", _sub('cookie = "PSWID"', 'cookie = "PSWID"\ninsert = "yes"'),
     "vip[0].persistence.insert"),
    ("max_request_bytes too small", _sub('default_pool = "web"', 'default_pool = "web"\nmax_request_bytes = 10'),
     "vip[0].max_request_bytes"),
    ("max_request_bytes too big", _sub('default_pool = "web"', 'default_pool = "web"\nmax_request_bytes = 1e9'),
     "vip[0].max_request_bytes"),
    ("request_timeout_s zero", _sub('default_pool = "web"', 'default_pool = "web"\nrequest_timeout_s = 0'),
     "vip[0].request_timeout_s"),
    ("l7 over udp", _sub('protocol = "tcp"', 'protocol = "udp"'), "vip[0].protocol"),
    ("l7 with [[vip.backend]]", ISSUE_VIP + '[[vip.backend]]\naddress = "192.0.2.50"\n', "vip[0].backend"),
    ("rules on a nat vip", _sub('mode = "l7"', 'mode = "nat"'), "vip[0].default_pool"),
    ("l7-tls with a path", _sub('mode = "l7"', 'mode = "l7-tls"'), "vip[0].rule[0].path_prefix"),
    ("l7-tls with persistence", re.sub(r"\[\[vip\.rule\]\].*?(?=\[\[vip\.pool\]\])", "",
                                       _sub('mode = "l7"', 'mode = "l7-tls"'), flags=re.S), "vip[0].persistence"),
    ("mode misspelt", _sub('mode = "l7"', 'mode = "l7tls"'), "vip[0].mode"),
]


def test_the_good_one_is_good():
    assert issue_config().vips[0].l7 is not None


@pytest.mark.parametrize("text, key", [(text, key) for _, text, key in BAD_L7], ids=[name for name, _, _ in BAD_L7])
def test_bad_l7_config_names_the_key(tmp_path, text, key):
    path = tmp_path / "sw.toml"
    path.write_text(VLANS + text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(key + ":"), message
    assert len(message) < 400 and "\n" not in message, message


def test_rows_differ():
    assert len({text for _, text, _ in BAD_L7}) == len(BAD_L7)


def test_bad_regex_message_says_why():
    text = _sub('cookie = "canary=1"', 'path_regex = "^/(static"')
    with pytest.raises(ConfigError, match=r"not a regular expression: missing \), unterminated subpattern"):
        from_dict(tomllib.loads(VLANS + text))


def test_the_switch_takes_the_issues_l7_vip():
    """Nothing of an L7 VIP is refused at start any more: Switch() builds its pools as services of their own."""
    from pyswitch.switch import Switch
    switch = Switch(issue_config())
    names = [s.name for s in switch.vips.services]
    assert names[0] == "site" and set(names[1:]) == {"site/api", "site/canary", "site/web"}, names
    assert all(s.l7_pool for s in switch.vips.services[1:]) and not switch.vips.services[0].l7_pool
