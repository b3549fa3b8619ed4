"""Connection sync between the two instances of an HA pair: the wire format, the master's sender and the
standby's receiver, without sockets and without a clock of its own.

The master streams its connection table to the standby over UDP.  The caller owns the socket: it sends the
payloads `SyncSender` returns and hands `SyncReceiver` the payloads it receives, passing the current time
`now` (float seconds, any monotonic origin) to every call that needs one.  One thread drives both.

Wire format: one UDP payload is a 16-byte header and `count` entries, big-endian.

    | offset | size | field   | meaning                                                              |
    |--------|------|---------|----------------------------------------------------------------------|
    | 0      | 2    | magic   | b"PS"                                                                |
    | 2      | 1    | version | 1                                                                    |
    | 3      | 1    | type    | UPDATES = 1 (entries), RESYNC_REQUEST = 2 (no entries)               |
    | 4      | 4    | epoch   | the sender's random id, new per process start                        |
    | 8      | 4    | seq     | UPDATES: 1, 2, ... 2**32-1, 1, ... (never 0); RESYNC_REQUEST: 0      |
    | 12     | 2    | count   | number of entries                                                    |
    | 14     | 2    | flags   | UPDATES: FULL = 1 (part of a full dump), FULL_END = 2 (its last one) |

Each entry starts with a 1-byte tag:

    | tag              | size after the tag | fields                                                         |
    |------------------|--------------------|----------------------------------------------------------------|
    | TAG_CONN = 1     | 52                 | client 16, reply 16, backend 4, tunnel_src 4, mode 1, state 1, |
    |                  |                    | pad 2, vip_id 4, backend_id 4                                  |
    | TAG_DEL = 2      | 16                 | client (the connection ended)                                  |
    | TAG_AFFINITY = 3 | 16                 | vip_id 4, client address 4, backend_index 2, pad 2,            |
    |                  |                    | remaining_ms 4                                                 |

Tuples are `struct ps_conn_tuple` (`ConnTuple.pack`, 16 bytes); a connection without a reply tuple (dsr, ipip,
gre) sends 16 zero bytes, which decode back to None.  Pad bytes are sent as zero and ignored on receipt, and so
are unknown flag bits.  Only what the peer needs to forward the connection travels: counters and timestamps are
local, and a decoded Conn has packets = bytes = created_ms = used_ms = flags = 0; held and spliced (L7)
connections do not travel at all (`syncable`, below).  No payload is longer than
MAX_PAYLOAD = 1400 bytes, so that with IPv4 and UDP headers (28) it fits a 1500-byte MTU with room for a
tunnel; longer batches are split over several messages (26 connections per message at most).

Loss: UDP may drop or reorder messages, and the master does not retransmit.  Every UPDATES message takes the
next sequence number, so the standby sees a gap and answers with a RESYNC_REQUEST; the master then sends a full
dump: its whole table, flagged FULL, the last message also FULL_END.  Entries are upserts (a connection's whole
state, or its deletion), so applying one twice, or applying the entries after a gap, does no harm; what a gap
loses is a deletion, hence the dump's end tells the standby which connections still exist.  A master with
nothing to send still sends an empty UPDATES message every HEARTBEAT_S, so that a gap (the sequence number
jumped) shows soon after a partition heals, and a freshly started standby learns the master's epoch.

The epoch tells a restarted master (or another instance that became master) from the one the standby was
following: its sequence numbers start again at 1, which must not read as old duplicates.  Whatever the
standby had came from another stream, so it wants a full dump, unless the new epoch's first message it hears
is already one.

Sequence numbers compare in serial number arithmetic (RFC 1982) over the 2**32 - 1 values 1..2**32-1: a
message up to 2**31 - 1 ahead of the expected one is a gap, anything else behind it a stale duplicate.  This
keeps working when the counter wraps.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from .. import consts
from ..datapath_types import CONN_TUPLE_SIZE, Conn, ConnTuple, conn_wire

MAGIC = b"PS"
VERSION = 1
UPDATES = 1
RESYNC_REQUEST = 2
FULL = 1                    # flag: this message is part of a full dump
FULL_END = 2                # flag: the last message of a full dump
TAG_CONN = 1
TAG_DEL = 2
TAG_AFFINITY = 3
MAX_PAYLOAD = 1400          # bytes of UDP payload, header included
HEARTBEAT_S = 0.5           # a sender that sent nothing for this long sends an empty UPDATES message
RESYNC_EVERY_S = 1.0        # a receiver asks for a full dump at most this often

_HEADER = struct.Struct("!2sBBIIHH")            # magic, version, type, epoch, seq, count, flags
_CONN = struct.Struct("!16s16s4s4sBB2xII")      # client, reply, backend, tunnel_src, mode, state, vip, backend id
_AFFINITY = struct.Struct("!I4sH2xI")           # vip_id, client address, backend index, remaining ms
HEADER_LEN = _HEADER.size
_ENTRY_SIZES = {TAG_CONN: _CONN.size, TAG_DEL: CONN_TUPLE_SIZE, TAG_AFFINITY: _AFFINITY.size}
_NO_REPLY = bytes(CONN_TUPLE_SIZE)
_SEQ_SPACE = (1 << 32) - 1                      # sequence numbers 1..2**32-1: 0 is never used
_U16 = (1 << 16) - 1                           # the count field


class SyncError(ValueError):
    """A payload that cannot be decoded; the message says why."""


class Affinity(NamedTuple):
    """A persistence entry: `client` of VIP `vip_id` goes to the VIP's backend number `backend_index`."""
    vip_id: int
    client: bytes           # IPv4 address, 4 bytes
    backend_index: int      # 0..65535
    remaining_ms: int       # until the entry expires, 0..2**32-1: a duration, since the two clocks differ


class Deleted(NamedTuple):
    """The connection whose client tuple is `client` ended.  A class of its own, not a bare ConnTuple, so that a
    deletion cannot be mistaken for some other tuple."""
    client: ConnTuple


Entry = Conn | Deleted | Affinity


class Message(NamedTuple):
    """A decoded payload."""
    type: int               # UPDATES or RESYNC_REQUEST
    epoch: int
    seq: int
    flags: int
    entries: tuple[Entry, ...]


class Received(NamedTuple):
    """What `SyncReceiver.receive` makes of a payload.

    Apply `entries` in order (a Conn is an upsert, a Deleted removes, an Affinity is an upsert), then, if
    `full_done` is not None, delete every synced connection whose client tuple is not in it: it ended on the
    master while we were not listening.  If `request_resync`, send `resync_request(...)` to the master."""
    entries: tuple[Entry, ...]
    request_resync: bool
    full_done: frozenset[ConnTuple] | None


_NOTHING = Received((), False, None)


# --- encoding ---

def _check_uint(value, bits: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{what} {value!r} is not a {bits}-bit unsigned integer")
    return value


def encode_entry(entry: Entry) -> bytes:
    """One entry, tag included; ValueError for a field that does not fit, TypeError for what is no entry."""
    if isinstance(entry, Conn):
        client, reply, backend, tunnel_src, mode, state, vip_id, backend_id, _flags = conn_wire(entry)
        return bytes([TAG_CONN]) + _CONN.pack(client, reply, backend, tunnel_src, mode, state, vip_id, backend_id)
    if isinstance(entry, Deleted):
        return bytes([TAG_DEL]) + ConnTuple(*entry.client).pack()
    if isinstance(entry, Affinity):
        client = entry.client
        if not isinstance(client, (bytes, bytearray, memoryview)) or len(client) != 4:
            raise ValueError(f"affinity client address must be 4 bytes, not {client!r}")
        return bytes([TAG_AFFINITY]) + _AFFINITY.pack(
            _check_uint(entry.vip_id, 32, "VIP id"), bytes(client),
            _check_uint(entry.backend_index, 16, "backend index"),
            _check_uint(entry.remaining_ms, 32, "remaining ms"))
    # A bare ConnTuple is refused rather than taken for a deletion: a caller that meant something else must
    # not delete a connection on the peer.
    raise TypeError(f"{type(entry).__name__} is not a sync entry (Conn, Deleted or Affinity)")


def next_seq(seq: int) -> int:
    """The sequence number after `seq`: 2**32-1 wraps to 1, never 0."""
    return seq % _SEQ_SPACE + 1


def _pack(kind: int, epoch: int, first_seq: int, chunks: list[bytes], flags_last: int,
          flags_all: int) -> list[bytes]:
    """Encoded entries `chunks` as messages of at most MAX_PAYLOAD bytes; at least one, even without entries."""
    messages: list[bytes] = []
    seq = first_seq
    start = 0
    while True:
        size, end = HEADER_LEN, start
        while end < len(chunks) and size + len(chunks[end]) <= MAX_PAYLOAD and end - start < _U16:
            size += len(chunks[end])
            end += 1
        last = end == len(chunks)
        if not last and end == start:
            raise ValueError(f"an entry of {len(chunks[end])} bytes does not fit in {MAX_PAYLOAD} bytes")
        flags = flags_all | (flags_last if last else 0)
        messages.append(_HEADER.pack(MAGIC, VERSION, kind, epoch, seq, end - start, flags)
                        + b"".join(chunks[start:end]))
        if last:
            return messages
        seq, start = next_seq(seq), end


def _check_header(kind: int, epoch: int, seq: int, flags: int) -> None:
    if kind not in (UPDATES, RESYNC_REQUEST):
        raise ValueError(f"message type {kind!r} is neither UPDATES ({UPDATES}) nor RESYNC_REQUEST "
                         f"({RESYNC_REQUEST})")
    _check_uint(epoch, 32, "epoch")
    _check_uint(seq, 32, "sequence number")
    _check_uint(flags, 16, "flags")
    if kind == UPDATES and seq == 0:
        raise ValueError("sequence number 0 is never used by UPDATES")


def encode_messages(kind: int, epoch: int, first_seq: int, entries: Iterable[Entry], flags_last: int = 0,
                    flags_all: int = 0) -> list[bytes]:
    """`entries` as payloads of type `kind`, numbered first_seq, next_seq(first_seq), ...; always one at least.

    Every message carries `flags_all`, the last one also `flags_last`.  A RESYNC_REQUEST carries no entries."""
    chunks = [encode_entry(entry) for entry in entries]
    _check_header(kind, epoch, first_seq, flags_all | flags_last)
    if kind == RESYNC_REQUEST and chunks:
        raise ValueError("a resync request carries no entries")
    return _pack(kind, epoch, first_seq, chunks, flags_last, flags_all)


def resync_request(epoch: int, seq: int = 0) -> bytes:
    """The RESYNC_REQUEST payload a standby sends: "send me everything".  `epoch` is the standby's own."""
    _check_header(RESYNC_REQUEST, epoch, seq, 0)
    return _HEADER.pack(MAGIC, VERSION, RESYNC_REQUEST, epoch, seq, 0, 0)


# --- decoding ---

def _decode_entry(tag: int, body: bytes) -> Entry:
    if tag == TAG_CONN:
        client, reply, backend, tunnel_src, mode, state, vip_id, backend_id = _CONN.unpack(body)
        return Conn(ConnTuple.unpack(client), None if reply == _NO_REPLY else ConnTuple.unpack(reply),
                    backend, tunnel_src, mode, state, vip_id, backend_id)
    if tag == TAG_DEL:
        return Deleted(ConnTuple.unpack(body))
    return Affinity(*_AFFINITY.unpack(body))


def decode(payload: bytes) -> Message:
    """The message in `payload`; SyncError if it is malformed."""
    payload = bytes(payload)
    if len(payload) < HEADER_LEN:
        raise SyncError(f"payload of {len(payload)} bytes is shorter than the {HEADER_LEN}-byte header")
    magic, version, kind, epoch, seq, count, flags = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise SyncError(f"magic {magic!r}, not {MAGIC!r}")
    if version != VERSION:
        raise SyncError(f"version {version}, not {VERSION}")
    if kind not in (UPDATES, RESYNC_REQUEST):
        raise SyncError(f"unknown message type {kind}")
    if kind == UPDATES and seq == 0:
        raise SyncError("UPDATES with sequence number 0, which is never sent")
    if kind == RESYNC_REQUEST and count:
        raise SyncError(f"a resync request with {count} entries")
    entries = []
    offset = HEADER_LEN
    for i in range(count):
        if offset == len(payload):
            raise SyncError(f"count is {count} but the payload ends after {i} entries")
        tag = payload[offset]
        size = _ENTRY_SIZES.get(tag)
        if size is None:
            raise SyncError(f"unknown entry tag {tag} at byte {offset}")
        if offset + 1 + size > len(payload):
            raise SyncError(f"entry {i} (tag {tag}) needs {size} bytes after its tag, "
                            f"{len(payload) - offset - 1} remain")
        entries.append(_decode_entry(tag, payload[offset + 1:offset + 1 + size]))
        offset += 1 + size
    if offset != len(payload):
        raise SyncError(f"{len(payload) - offset} bytes after the {count} entries the count announces")
    return Message(kind, epoch, seq, flags, tuple(entries))


def is_resync_request(payload: bytes) -> bool:
    """Whether `payload` is a valid RESYNC_REQUEST: what the master's side checks before calling `full`."""
    try:
        return decode(payload).type == RESYNC_REQUEST
    except SyncError:
        return False


# --- the master's side ---

# An L7 connection is not sent: while it holds, its client talks to this switch's L7 engine, whose half of the
# handshake the peer never saw; once spliced, its packets need sequence deltas that only this switch's datapath
# holds (the wire format has no room for them, and the peer's engine chose no ISN).  On a takeover such a
# connection breaks, as a proxy's connections do: the peer does not know it and takes its next packet for a
# stranger's.
_L7_FLAGS = consts.CONN_F_HOLD | consts.CONN_F_SPLICED


def syncable(conn: Conn) -> bool:
    """Whether `conn` travels to the peer: every connection but a held or spliced (L7) one."""
    return not conn.flags & _L7_FLAGS


class SyncSender:
    """Queues the master's changes and turns them into UPDATES messages, with heartbeats and full dumps."""

    def __init__(self, epoch: int):
        self.epoch = _check_uint(epoch, 32, "epoch")
        self.seq = 1                    # the sequence number of the next message
        self.counters = {"messages": 0, "entries": 0, "full_dumps": 0}
        # Keyed by what an entry is about, so that a later change replaces the queued one where it stands: only
        # a connection's latest state travels, once per flush.  Values are already encoded, which checks every
        # entry when it is queued (the caller sees its own mistake) rather than in a later flush.
        self._queue: dict[tuple, bytes] = {}
        self._last_sent: float | None = None

    def conn(self, conn: Conn) -> None:
        """Queue `conn`'s current state (added or changed); an L7 connection (held or spliced) is not synced."""
        key = (TAG_CONN, ConnTuple(*conn.client))
        if not syncable(conn):
            self._queue.pop(key, None)      # a state queued before it began to hold must not go either
            return
        self._queue[key] = encode_entry(conn)

    def deleted(self, client: ConnTuple) -> None:
        """Queue the end of the connection whose client tuple is `client`."""
        # Same key as conn(): a deletion replaces a queued state, and a new connection with the same tuple
        # replaces a queued deletion.
        client = ConnTuple(*client)
        self._queue[(TAG_CONN, client)] = encode_entry(Deleted(client))

    def affinity(self, a: Affinity) -> None:
        """Queue a persistence entry; a later one for the same VIP and client replaces it."""
        self._queue[(TAG_AFFINITY, a.vip_id, bytes(a.client))] = encode_entry(a)

    def pending(self) -> int:
        """Entries queued and not yet flushed."""
        return len(self._queue)

    def next_deadline(self) -> float:
        """When `flush` has a heartbeat to send if nothing else is sent before; -inf if nothing was ever sent."""
        return float("-inf") if self._last_sent is None else self._last_sent + HEARTBEAT_S

    def flush(self, now: float) -> list[bytes]:
        """The queued entries as UPDATES payloads; with nothing queued, an empty one if a heartbeat is due."""
        if self._queue:
            return self._drain(now)
        if now >= self.next_deadline():
            return self._send([], 0, 0, now)
        return []

    def full(self, conns: Iterable[Conn], affinities: Iterable[Affinity], now: float) -> list[bytes]:
        """A full dump of `conns` and `affinities` (the whole table), after whatever was queued.

        Every message of the dump is flagged FULL, the last one also FULL_END; an empty table is one message
        with no entries.  The queued entries go first, unflagged, so that no older state follows the dump."""
        chunks = [encode_entry(Conn(*conn)) for conn in conns if syncable(conn)]
        chunks += [encode_entry(Affinity(*a)) for a in affinities]
        messages = self._drain(now)
        messages += self._send(chunks, FULL_END, FULL, now)
        self.counters["full_dumps"] += 1
        return messages

    def _drain(self, now: float) -> list[bytes]:
        if not self._queue:
            return []
        chunks = list(self._queue.values())
        self._queue.clear()
        return self._send(chunks, 0, 0, now)

    def _send(self, chunks: list[bytes], flags_last: int, flags_all: int, now: float) -> list[bytes]:
        messages = _pack(UPDATES, self.epoch, self.seq, chunks, flags_last, flags_all)
        for _ in messages:
            self.seq = next_seq(self.seq)
        self.counters["messages"] += len(messages)
        self.counters["entries"] += len(chunks)
        self._last_sent = now
        return messages


# --- the standby's side ---

def _seq_ahead(seq: int, expected: int) -> int | None:
    """How far `seq` is ahead of `expected` (0: it is the expected one), or None if it is behind (stale)."""
    distance = (seq - expected) % _SEQ_SPACE
    return distance if distance < 1 << 31 else None


class SyncReceiver:
    """Follows the master's stream: tells loss, asks for full dumps, and says when a dump has completed.

    It follows one epoch at a time, the latest it heard.  A RESYNC_REQUEST is not for it and is ignored (the
    master's side uses `is_resync_request`)."""

    def __init__(self) -> None:
        self.epoch: int | None = None           # the master's, once a message was heard
        self.expected_seq = 0                   # the sequence number of the next message in order
        self.counters = {"messages": 0, "entries": 0, "invalid": 0, "new_epoch": 0, "gaps": 0, "lost": 0,
                         "stale": 0, "full_dumps": 0}
        self._wants = False                     # a full dump is needed: until one completes
        self._last_request: float | None = None
        # The master is in the middle of a dump: the last message in order was FULL and not FULL_END.
        self._dump_open = False
        # The client tuples of the dump in progress, if we saw it from its first message; else None.
        self._dump_clients: set[ConnTuple] | None = None

    @property
    def wants_resync(self) -> bool:
        """Whether a full dump is needed (a gap, a new epoch): True until one completes."""
        return self._wants

    def due_resync(self, now: float) -> bool:
        """Whether to send a RESYNC_REQUEST now; True at most once per RESYNC_EVERY_S, counting those that
        `receive` asked for.  The caller must send the request each time it is True.

        Not while a dump is arriving: another request would only make the master start a second dump; if
        this one breaks, the gap (or the heartbeat after it) tells."""
        return self._wants and not self._dump_open and self._may_request(now)

    def receive(self, payload: bytes, now: float) -> Received:
        """Take one payload from the master."""
        try:
            message = decode(payload)
        except SyncError:
            self.counters["invalid"] += 1
            return _NOTHING
        if message.type != UPDATES:
            return _NOTHING
        self.counters["messages"] += 1
        in_dump = bool(message.flags & (FULL | FULL_END))      # FULL_END alone also ends a dump
        need = False
        if message.epoch != self.epoch:
            self.counters["new_epoch"] += 1
            self.epoch = message.epoch
            self._wants = True
            # A new epoch's sequence numbers start at 1: a dump whose first message is 1 is the first thing the
            # new master sent, so we see it whole.  Any other dump we join in the middle.  A dump is what a new
            # epoch needs, so none is asked for while one arrives.
            starts, in_order = message.seq == 1, False
            need = not in_dump
        else:
            ahead = _seq_ahead(message.seq, self.expected_seq)
            if ahead is None:
                self.counters["stale"] += 1
                return _NOTHING
            if ahead:
                self.counters["gaps"] += 1
                self.counters["lost"] += ahead
                self._wants = need = True
            in_order = not ahead
            # What we missed in a gap may have been the dump's first messages: only an unbroken dump counts.
            starts = in_order and not self._dump_open
        self.expected_seq = next_seq(message.seq)
        self.counters["entries"] += len(message.entries)
        full_done = None
        if not in_dump:
            # Dumps are sent without a break: an ordinary message ends (or abandons) any dump.
            self._dump_open, self._dump_clients = False, None
        else:
            if starts:
                self._dump_clients = set()
            elif not in_order:
                self._dump_clients = None       # joined in the middle, or lost part of it: abandoned
            if self._dump_clients is not None:
                self._dump_clients.update(e.client for e in message.entries if isinstance(e, Conn))
            if message.flags & FULL_END:
                if self._dump_clients is not None:
                    full_done = frozenset(self._dump_clients)
                    self.counters["full_dumps"] += 1
                    self._wants = False
                else:
                    need = self._wants      # a dump we could not use: ask for another one
                self._dump_open, self._dump_clients = False, None
            else:
                self._dump_open = True
        request = need and self._wants and self._may_request(now)
        return Received(message.entries, request, full_done)

    def _may_request(self, now: float) -> bool:
        """Whether a request may go now; if so, it counts as sent."""
        if self._last_request is not None and now - self._last_request < RESYNC_EVERY_S:
            return False
        self._last_request = now
        return True
