"""The answers an L7 VIP gives in its own name, before any backend is involved: a 400 for a request the switch
refuses to read, a 503 when no backend can take it.  Each closes the connection (HAProxy's and F5's do too):
a client that sent a bad request may have sent more that the switch cannot frame."""
from __future__ import annotations

REASONS = {400: "Bad Request", 503: "Service Unavailable"}
BODIES = {400: b"pyswitch: the request could not be read\n",
          503: b"pyswitch: no server is available for this request\n"}


def text(status: int) -> bytes:
    body = BODIES[status]
    return (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            f"Cache-Control: no-cache\r\nConnection: close\r\n\r\n").encode() + body
