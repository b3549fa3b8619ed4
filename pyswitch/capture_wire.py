"""What a running switch streams to `pyswitch capture` after its answer line: one record per copied frame, and a
last one when the capture ends, each a fixed header and its bytes.

    kind       1 byte   FRAME or END
    direction  1 byte   consts.TAP_IN / TAP_OUT (FRAME), 0 (END)
    wire_len   4 bytes  the frame's size on the wire (FRAME)
    length     4 bytes  bytes that follow: the copy (FRAME), a JSON object of counters and the reason (END)
    ts_ns      8 bytes  CLOCK_REALTIME when the datapath copied it (FRAME)

Network byte order.  The client reads records until END or the end of the stream.
"""
from __future__ import annotations

import json
import struct

FRAME = 1
END = 2
HEADER = struct.Struct("!BBIIQ")


def frame_record(direction: int, wire_len: int, ts_ns: int, data: bytes) -> bytes:
    return HEADER.pack(FRAME, direction, wire_len, len(data), ts_ns) + data


def end_record(reason: str, counters: dict) -> bytes:
    body = json.dumps({"reason": reason, **counters}).encode()
    return HEADER.pack(END, 0, 0, len(body), 0) + body


class RecordReader:
    """Splits a byte stream into (kind, direction, wire_len, ts_ns, body) records, whatever the chunks."""

    def __init__(self):
        self._data = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[int, int, int, int, bytes]]:
        self._data += chunk
        out = []
        while len(self._data) >= HEADER.size:
            kind, direction, wire_len, length, ts_ns = HEADER.unpack_from(self._data)
            if kind not in (FRAME, END):
                raise ValueError(f"capture stream: record kind {kind} is neither a frame nor the end")
            if len(self._data) < HEADER.size + length:
                break
            body = bytes(self._data[HEADER.size:HEADER.size + length])
            del self._data[:HEADER.size + length]
            out.append((kind, direction, wire_len, ts_ns, body))
        return out

    @property
    def pending(self) -> int:
        """Bytes of a record not yet complete (a stream that ends with some was cut)."""
        return len(self._data)
