"""What the request-head parsers answer, the same objects from C (pyswitch.fastpath) and its twin (refpath).

Constants mirror csrc/http.h; tests/test_l7_parse.py checks them against the compiled module.  Spans are
(offset, length) pairs into the bytes that were parsed: the parsers copy nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

HTTP_HEAD_MAX = 16384       # default bound on a request head, request line to blank line
HTTP_MAX_HEADERS = 64       # header fields in one head; more is malformed
HTTP_ABSENT = 0xFFFFFFFF    # C's offset of a span that is not there

HTTP_NEED_MORE = 0          # no error so far, the blank line not yet received
HTTP_COMPLETE = 1           # a whole, well-formed head
HTTP_MALFORMED = 2          # refused: reason says why

HTTP_OK = 0
HTTP_E_TOO_LARGE = 1        # no blank line within max_head bytes
HTTP_E_LINE_ENDING = 2      # a LF without its CR
HTTP_E_REQUEST_LINE = 3     # not "method SP target SP version" with single spaces
HTTP_E_METHOD = 4           # the method is not a token
HTTP_E_TARGET = 5           # not origin-form, absolute-form (http/https, no userinfo) or OPTIONS *
HTTP_E_VERSION = 6          # not HTTP/1.x
HTTP_E_HEADER_NAME = 7      # empty or not a token, no colon, or whitespace before the colon
HTTP_E_HEADER_VALUE = 8     # a control byte in a value
HTTP_E_OBS_FOLD = 9         # a line that starts with SP or HTAB
HTTP_E_TOO_MANY_HEADERS = 10  # more than HTTP_MAX_HEADERS fields
HTTP_E_HOST = 11            # Host missing in HTTP/1.1, given twice, or not host[:port]
HTTP_E_CONTENT_LENGTH = 12  # Content-Length not digits, too large, or given twice
HTTP_E_TRANSFER_ENCODING = 13  # Transfer-Encoding not exactly "chunked", twice, or with Content-Length
HTTP_E_COUNT = 14
HTTP_REASON_NAMES = ("ok", "too_large", "line_ending", "request_line", "method", "target", "version",
                     "header_name", "header_value", "obs_fold", "too_many_headers", "host", "content_length",
                     "transfer_encoding")

TLS_NEED_MORE = 0           # a handshake record so far, not all of it received
TLS_SNI = 1                 # a ClientHello with a server_name host_name
TLS_NO_SNI = 2              # a well-formed ClientHello without one
TLS_NOT_TLS = 3             # the first bytes are not a TLS handshake record
TLS_MALFORMED = 4           # a handshake record whose contents lie: reason says where

TLS_OK = 0
TLS_E_RECORD_LEN = 1        # record length 0 or above 2^14
TLS_E_NOT_CLIENT_HELLO = 2  # the handshake message is not a ClientHello
TLS_E_FRAGMENTED = 3        # the ClientHello continues in a later record (not supported)
TLS_E_LENGTH = 4            # a length inside the ClientHello runs past its end
TLS_E_SERVER_NAME = 5       # server_name twice, empty, or a host_name that is not printable ASCII
TLS_E_COUNT = 6
TLS_REASON_NAMES = ("ok", "record_len", "not_client_hello", "fragmented", "length", "server_name")

Span = tuple[int, int]      # (offset, length)


class HttpHeader(NamedTuple):     # a tuple, not a dataclass: a head has up to 64 and each parse makes them
    name: Span              # the field name as sent
    value: Span             # the value without the whitespace around it


@dataclass(slots=True)     # not frozen: a frozen dataclass's __init__ costs 2 us, as much as the C parse and more
class HttpRequest:
    """A request head.  Every field but verdict and reason is meaningful only when verdict is HTTP_COMPLETE.

    Treat it as read-only: the spans point into the parsed bytes, and `native` (C) must agree with them."""
    verdict: int
    reason: int = HTTP_OK
    head_size: int = 0                  # bytes up to and including the blank line
    method: Span = (0, 0)
    path: Span = (0, 0)                 # "/a/b", "*", or empty for "http://h"
    query: Optional[Span] = None        # after '?'; None when the target has no '?'
    host: Optional[Span] = None         # absolute-form authority, else Host's value; None without either
    version_minor: int = 0
    content_length: int = -1            # -1 without Content-Length
    chunked: bool = False
    headers: tuple[HttpHeader, ...] = ()
    native: Any = field(default=None, compare=False, repr=False)   # C: the struct find_* read again

    @property
    def complete(self) -> bool:
        return self.verdict == HTTP_COMPLETE


@dataclass(frozen=True)
class TlsSni:
    """A ClientHello's server name.  hello_size is set for TLS_SNI and TLS_NO_SNI, name for TLS_SNI."""
    verdict: int
    reason: int = TLS_OK
    hello_size: int = 0                 # bytes of the record that holds the ClientHello
    name: Optional[Span] = None


def text(data: bytes, span: Optional[Span]) -> Optional[bytes]:
    """The bytes a span points at, or None for an absent span."""
    if span is None:
        return None
    return bytes(data[span[0]:span[0] + span[1]])
