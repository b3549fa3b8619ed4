"""Content rules of an L7 VIP: which pool a parsed request (or a ClientHello's SNI) goes to.

A rule holds one or more conditions, all of which must hold (host AND path_prefix, as the issue's example
reads); rules are tried in order, the first that matches wins, and a request no rule matches goes to the
VIP's default pool.  This is HAProxy's `use_backend ... if` list with a `default_backend`, and F5's ordered
LTM policy rules with a default.  Mechanism only: the parsing is pyswitch.fastpath / refpath
(http_parse_request, tls_client_hello_sni); the config sections that build these rules live elsewhere and
call rule_from_table().

Matching semantics (docs/L7.md):
- host: the request's host (absolute-form authority, else Host) without its port and trailing dot, compared
  ignoring case; "*.example.test" matches any name that ends in ".example.test".  For l7-tls the SNI name.
- path_prefix: the raw path (before '?', not percent-decoded) starts with it.
- path_regex: Python `re.search` on the raw path (anchor it with ^ yourself).
- header = "Name: value": some field of that name (any case) has exactly that value (OWS trimmed).
- cookie = "name=value": the first cookie of that name (case-sensitive) has exactly that value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .http_types import HttpRequest, text

HTTP_RULE_KEYS = ("host", "path_prefix", "path_regex", "header", "cookie")     # conditions of mode "l7"
TLS_RULE_KEYS = ("host",)                                                        # of mode "l7-tls": SNI only
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")                           # RFC 9110 field name
_HOST = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?\Z")


class RuleError(ValueError):
    """A rule table that cannot be a rule; the message starts with the key at fault."""


@dataclass(frozen=True)
class Rule:
    pool: str
    name: str                                   # how `show conns` names it: "rule 1" (1-based) unless given
    host: Optional[str] = None                  # lower case, no trailing dot; may start with "*."
    path_prefix: Optional[bytes] = None
    path_regex: Optional[re.Pattern] = None
    header: Optional[tuple[bytes, bytes]] = None
    cookie: Optional[tuple[bytes, bytes]] = None


@dataclass(frozen=True)
class Match:
    pool: str
    rule: Optional[str]                         # the rule's name, None for the default pool


def normal_host(raw: Optional[bytes]) -> Optional[str]:
    """A Host value or SNI name as rules compare it: lower case, without port or trailing dot."""
    if raw is None:
        return None
    host = raw.decode("latin-1").lower()
    if host.startswith("["):                    # an IP literal: "[2001:db8::1]:8080"
        end = host.find("]")
        host = host[:end + 1] if end > 0 else host
    elif ":" in host:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def host_matches(pattern: str, host: Optional[str]) -> bool:
    if host is None:
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _string(table, key, where) -> str:
    value = table[key]
    if not isinstance(value, str) or not value:
        raise RuleError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _pair(text_value: str, separator: str, key: str, where: str, example: str) -> tuple[bytes, bytes]:
    name, sep, value = text_value.partition(separator)
    name, value = name.strip(), value.strip()
    if not sep or not name or not _TOKEN.match(name):
        raise RuleError(f"{where}.{key}: expected {example!r}, got {text_value!r}")
    return name.encode(), value.encode("latin-1")


def rule_from_table(table: dict, index: int, mode: str = "l7", where: str = "vip.rule") -> Rule:
    """The rule of a [[vip.rule]] table, the index-th (0-based) of its VIP; RuleError names the key at fault."""
    where = f"{where}[{index}]"
    allowed = HTTP_RULE_KEYS if mode == "l7" else TLS_RULE_KEYS
    for key in table:
        if key not in allowed and key not in ("pool", "name"):
            raise RuleError(f"{where}.{key}: not a rule condition of mode {mode!r} (use {', '.join(allowed)})")
    if "pool" not in table:
        raise RuleError(f"{where}.pool: missing")
    if not any(key in table for key in allowed):
        raise RuleError(f"{where}: a rule needs at least one of {', '.join(allowed)}")
    fields = {"pool": _string(table, "pool", where),
              "name": _string(table, "name", where) if "name" in table else f"rule {index + 1}"}
    if "host" in table:
        host = _string(table, "host", where).lower().rstrip(".")
        if not _HOST.match(host):
            raise RuleError(f"{where}.host: {table['host']!r} is not a host name (or *.domain)")
        fields["host"] = host
    if "path_prefix" in table:
        prefix = _string(table, "path_prefix", where)
        if not prefix.startswith("/"):
            raise RuleError(f"{where}.path_prefix: {prefix!r} does not start with '/'")
        fields["path_prefix"] = prefix.encode("latin-1")
    if "path_regex" in table:
        try:
            fields["path_regex"] = re.compile(_string(table, "path_regex", where).encode("latin-1"))
        except re.error as exc:
            raise RuleError(f"{where}.path_regex: {exc}") from None
    if "header" in table:
        fields["header"] = _pair(_string(table, "header", where), ":", "header", where, "X-Tenant: blue")
    if "cookie" in table:
        fields["cookie"] = _pair(_string(table, "cookie", where), "=", "cookie", where, "canary=1")
    return Rule(**fields)


class HttpView:
    """A complete request as rules see it, looked up through `impl` (pyswitch.fastpath or pyswitch.refpath)."""

    def __init__(self, data: bytes, request: HttpRequest, impl):
        if not request.complete:
            raise ValueError("rules match complete requests only")
        self.data, self.request, self.impl = data, request, impl
        self.host = normal_host(text(data, request.host))
        self.path = text(data, request.path)

    def header_values(self, name: bytes):
        i = self.impl.http_find_header(self.data, self.request, name)
        while i >= 0:
            yield text(self.data, self.request.headers[i].value)
            i = self.impl.http_find_header(self.data, self.request, name, i + 1)

    def cookie(self, name: bytes) -> Optional[bytes]:
        return text(self.data, self.impl.http_find_cookie(self.data, self.request, name))


class RuleSet:
    """The ordered rules of one VIP and its default pool."""

    def __init__(self, rules, default_pool: str):
        self.rules = tuple(rules)
        self.default_pool = default_pool

    def match_http(self, view: HttpView) -> Match:
        for rule in self.rules:
            if rule.host is not None and not host_matches(rule.host, view.host):
                continue
            if rule.path_prefix is not None and not view.path.startswith(rule.path_prefix):
                continue
            if rule.path_regex is not None and rule.path_regex.search(view.path) is None:
                continue
            if rule.header is not None and rule.header[1] not in view.header_values(rule.header[0]):
                continue
            if rule.cookie is not None and view.cookie(rule.cookie[0]) != rule.cookie[1]:
                continue
            return Match(rule.pool, rule.name)
        return Match(self.default_pool, None)

    def match_sni(self, name: Optional[bytes]) -> Match:
        """The pool of a ClientHello whose server name is `name` (None: no SNI, the default pool)."""
        host = normal_host(name) if name is not None else None
        for rule in self.rules:
            if rule.host is not None and host_matches(rule.host, host):
                return Match(rule.pool, rule.name)
        return Match(self.default_pool, None)
