"""Twin of csrc/http.c and csrc/tls_sni.c: an HTTP/1.x request head and a ClientHello's SNI, read in place.

Same verdicts, reasons and spans as the C parsers (docs/L7.md is the contract); the checks run in the
same order, so that a malformed input is refused for the same reason by both.
"""
from __future__ import annotations

from typing import Optional

from ..l7.http_types import (HTTP_COMPLETE, HTTP_E_CONTENT_LENGTH, HTTP_E_HEADER_NAME, HTTP_E_HEADER_VALUE,
                             HTTP_E_HOST, HTTP_E_LINE_ENDING, HTTP_E_METHOD, HTTP_E_OBS_FOLD,
                             HTTP_E_REQUEST_LINE, HTTP_E_TARGET, HTTP_E_TOO_LARGE, HTTP_E_TOO_MANY_HEADERS,
                             HTTP_E_TRANSFER_ENCODING, HTTP_E_VERSION, HTTP_HEAD_MAX, HTTP_MALFORMED,
                             HTTP_MAX_HEADERS, HTTP_NEED_MORE, TLS_E_FRAGMENTED, TLS_E_LENGTH,
                             TLS_E_NOT_CLIENT_HELLO, TLS_E_RECORD_LEN, TLS_E_SERVER_NAME, TLS_MALFORMED,
                             TLS_NEED_MORE, TLS_NO_SNI, TLS_NOT_TLS, TLS_SNI, HttpHeader, HttpRequest, Span,
                             TlsSni)

_ALNUM = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TCHAR = _ALNUM | frozenset(b"!#$%&'*+-.^_`|~")             # RFC 9110 5.6.2
_HOST_CHAR = _ALNUM | frozenset(b"-._~!$&'()*+,;=%:[]")      # uri-host [":" port], by character
_OWS = (0x20, 0x09)
_TLS_RECORD_MAX = 16384


class _Malformed(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class _Head:
    """The fields gathered while the lines are read."""

    def __init__(self):
        self.method = self.path = (0, 0)
        self.query = self.host = None
        self.version_minor = 0
        self.content_length = -1
        self.chunked = False
        self.headers: list[HttpHeader] = []
        self.seen_host = False


def _parse_target(data, ofs, end, method: bytes, head: _Head) -> bool:
    target = data[ofs:end]
    if any(c < 0x21 or c > 0x7E or c == 0x23 for c in target):
        return False
    if target == b"*":
        if method != b"OPTIONS":
            return False
        head.path = (ofs, 1)
        return True
    p = ofs
    if target[:1] != b"/":
        lowered = target[:8].lower()
        if lowered[:7] == b"http://":
            scheme = 7
        elif lowered == b"https://":
            scheme = 8
        else:
            return False
        host = p = ofs + scheme
        while p < end and data[p] not in b"/?":
            p += 1
        if p == host or any(c not in _HOST_CHAR for c in data[host:p]):
            return False
        head.host = (host, p - host)
    q = data.find(b"?", p, end)
    if q < 0:
        head.path = (p, end - p)
    else:
        head.path = (p, q - p)
        head.query = (q + 1, end - q - 1)
    return True


def _parse_request_line(data, ofs, end, head: _Head) -> None:
    sp1 = data.find(b" ", ofs, end)
    if sp1 < 0:
        raise _Malformed(HTTP_E_REQUEST_LINE)
    sp2 = data.find(b" ", sp1 + 1, end)
    if sp2 < 0 or sp1 == ofs or sp2 == sp1 + 1:
        raise _Malformed(HTTP_E_REQUEST_LINE)
    method = bytes(data[ofs:sp1])
    if any(c not in _TCHAR for c in method):
        raise _Malformed(HTTP_E_METHOD)
    head.method = (ofs, sp1 - ofs)
    if not _parse_target(data, sp1 + 1, sp2, method, head):
        raise _Malformed(HTTP_E_TARGET)
    version = data[sp2 + 1:end]
    if len(version) != 8 or version[:7] != b"HTTP/1." or not 0x30 <= version[7] <= 0x39:
        raise _Malformed(HTTP_E_VERSION)
    head.version_minor = version[7] - 0x30


def _parse_field(data, ofs, end, head: _Head) -> None:
    if data[ofs] in _OWS:
        raise _Malformed(HTTP_E_OBS_FOLD)
    p = ofs
    while p < end and data[p] in _TCHAR:
        p += 1
    if p == ofs or p == end or data[p] != 0x3A:
        raise _Malformed(HTTP_E_HEADER_NAME)
    name = bytes(data[ofs:p]).lower()
    p += 1
    if any((c < 0x20 and c != 0x09) or c == 0x7F for c in data[p:end]):
        raise _Malformed(HTTP_E_HEADER_VALUE)
    while p < end and data[p] in _OWS:
        p += 1
    v_end = end
    while v_end > p and data[v_end - 1] in _OWS:
        v_end -= 1
    if len(head.headers) == HTTP_MAX_HEADERS:
        raise _Malformed(HTTP_E_TOO_MANY_HEADERS)
    head.headers.append(HttpHeader((ofs, len(name)), (p, v_end - p)))
    value = bytes(data[p:v_end])
    if name == b"host":
        if head.seen_host:
            raise _Malformed(HTTP_E_HOST)
        head.seen_host = True
        if any(c not in _HOST_CHAR for c in value):
            raise _Malformed(HTTP_E_HOST)
        if head.host is None:          # an absolute-form target's authority wins (RFC 9112 3.2.2)
            head.host = (p, v_end - p)
    elif name == b"content-length":
        if head.content_length >= 0 or not value or len(value) > 15 or not all(0x30 <= c <= 0x39 for c in value):
            raise _Malformed(HTTP_E_CONTENT_LENGTH)
        head.content_length = int(value)
    elif name == b"transfer-encoding":
        if head.chunked or value.lower() != b"chunked":
            raise _Malformed(HTTP_E_TRANSFER_ENCODING)
        head.chunked = True


def http_parse_request(data, max_head: int = 0) -> HttpRequest:
    """The request head at the start of `data`, reading at most `max_head` bytes (0: HTTP_HEAD_MAX)."""
    max_head = max_head or HTTP_HEAD_MAX
    data = bytes(data[:max_head])      # the head must fit in max_head: nothing after it is read
    limit = len(data)
    head = _Head()
    p = 0
    while p + 1 < limit and data[p] == 0x0D and data[p + 1] == 0x0A:
        p += 2
    seen_request_line = False
    try:
        while True:
            nl = data.find(b"\n", p, limit) if p < limit else -1
            if nl < 0:
                if limit == max_head:
                    raise _Malformed(HTTP_E_TOO_LARGE)
                return HttpRequest(HTTP_NEED_MORE)
            if nl == p or data[nl - 1] != 0x0D:
                raise _Malformed(HTTP_E_LINE_ENDING)
            end = nl - 1
            if not seen_request_line:
                seen_request_line = True
                _parse_request_line(data, p, end, head)
            elif end == p:
                if head.content_length >= 0 and head.chunked:
                    raise _Malformed(HTTP_E_TRANSFER_ENCODING)
                if not head.seen_host and head.version_minor >= 1:
                    raise _Malformed(HTTP_E_HOST)
                return HttpRequest(HTTP_COMPLETE, 0, nl + 1, head.method, head.path, head.query, head.host,
                                   head.version_minor, head.content_length, head.chunked, tuple(head.headers))
            else:
                _parse_field(data, p, end, head)
            p = nl + 1
    except _Malformed as bad:
        return HttpRequest(HTTP_MALFORMED, bad.reason)


def http_find_header(data, request: HttpRequest, name: bytes, start: int = 0) -> int:
    """The index in request.headers of the first field at or after `start` named `name` (any case), or -1."""
    wanted = bytes(name).lower()
    for i in range(start, len(request.headers)):
        ofs, size = request.headers[i].name
        if size == len(wanted) and bytes(data[ofs:ofs + size]).lower() == wanted:
            return i
    return -1


def http_find_cookie(data, request: HttpRequest, name: bytes) -> Optional[Span]:
    """The value of the first cookie named `name` (case-sensitive) in any Cookie field, or None."""
    name = bytes(name)
    i = http_find_header(data, request, b"cookie")
    while i >= 0:
        ofs, size = request.headers[i].value
        p, end = ofs, ofs + size
        while p < end:
            while p < end and data[p] in _OWS:
                p += 1
            pair = p
            while p < end and data[p] != 0x3B:
                p += 1
            pair_end = p
            while pair_end > pair and data[pair_end - 1] in _OWS:
                pair_end -= 1
            eq = pair
            while eq < pair_end and data[eq] != 0x3D:
                eq += 1
            if eq < pair_end and bytes(data[pair:eq]) == name:
                return (eq + 1, pair_end - eq - 1)
            p += 1
        i = http_find_header(data, request, b"cookie", i + 1)
    return None


def _be16(data, p) -> int:
    return data[p] << 8 | data[p + 1]


def tls_client_hello_sni(data) -> TlsSni:
    """The first host_name of the ClientHello in the TLS record at the start of `data`."""
    data = bytes(data[:5 + _TLS_RECORD_MAX])
    size = len(data)
    if size >= 1 and data[0] != 22:
        return TlsSni(TLS_NOT_TLS)
    if size >= 2 and data[1] != 3:
        return TlsSni(TLS_NOT_TLS)
    if size < 5:
        return TlsSni(TLS_NEED_MORE)
    record_len = _be16(data, 3)
    if record_len == 0 or record_len > _TLS_RECORD_MAX:
        return TlsSni(TLS_MALFORMED, TLS_E_RECORD_LEN)
    if record_len < 4:
        return TlsSni(TLS_MALFORMED, TLS_E_LENGTH)
    if size >= 6 and data[5] != 1:
        return TlsSni(TLS_MALFORMED, TLS_E_NOT_CLIENT_HELLO)
    if size >= 9 and (data[6] << 16 | _be16(data, 7)) + 4 > record_len:
        return TlsSni(TLS_MALFORMED, TLS_E_FRAGMENTED)
    if size < 5 + record_len:
        return TlsSni(TLS_NEED_MORE)
    end = 9 + (data[6] << 16 | _be16(data, 7))
    p = 9
    if end - p < 35:
        return TlsSni(TLS_MALFORMED, TLS_E_LENGTH)
    p += 34
    session_len = data[p]
    if session_len > 32 or end - p - 1 < session_len + 2:
        return TlsSni(TLS_MALFORMED, TLS_E_LENGTH)
    p += 1 + session_len
    suites_len = _be16(data, p)
    if suites_len < 2 or suites_len % 2 or end - p - 2 < suites_len + 1:
        return TlsSni(TLS_MALFORMED, TLS_E_LENGTH)
    p += 2 + suites_len
    compression_len = data[p]
    if compression_len < 1 or end - p - 1 < compression_len:
        return TlsSni(TLS_MALFORMED, TLS_E_LENGTH)
    p += 1 + compression_len
    hello_size = 5 + record_len
    if p == end:
        return TlsSni(TLS_NO_SNI, hello_size=hello_size)
    if end - p < 2 or _be16(data, p) != end - p - 2:
        return TlsSni(TLS_MALFORMED, TLS_E_LENGTH)
    p += 2
    name = None
    seen_server_name = False
    while p < end:
        if end - p < 4:
            return TlsSni(TLS_MALFORMED, TLS_E_LENGTH)
        ext_type, ext_len = _be16(data, p), _be16(data, p + 2)
        p += 4
        if ext_len > end - p:
            return TlsSni(TLS_MALFORMED, TLS_E_LENGTH)
        if ext_type == 0:
            if seen_server_name:
                return TlsSni(TLS_MALFORMED, TLS_E_SERVER_NAME)
            seen_server_name = True
            name, reason = _read_server_name(data, p, p + ext_len, name)
            if reason:
                return TlsSni(TLS_MALFORMED, reason)
        p += ext_len
    if name is None:
        return TlsSni(TLS_NO_SNI, hello_size=hello_size)
    return TlsSni(TLS_SNI, hello_size=hello_size, name=name)


def _read_server_name(data, p, end, name):
    """(the first host_name's span or `name`, 0) or (name, a TLS_E_* reason)."""
    if end - p < 2 or _be16(data, p) != end - p - 2:
        return name, TLS_E_LENGTH
    p += 2
    while p < end:
        if end - p < 3:
            return name, TLS_E_LENGTH
        name_type, size = data[p], _be16(data, p + 1)
        p += 3
        if size > end - p:
            return name, TLS_E_LENGTH
        if name_type == 0 and name is None:
            if size == 0 or size > 255 or any(c < 0x21 or c > 0x7E for c in data[p:p + size]):
                return name, TLS_E_SERVER_NAME
            name = (p, size)
        p += size
    return name, 0
