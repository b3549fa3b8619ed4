"""Connection sync (pyswitch.ha.sync): the wire format, every reason to refuse a payload, the sender's queue,
heartbeats and full dumps, the receiver's loss detection and resync requests on a fake clock, and a sender and a
receiver joined by a lossy channel."""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyswitch import consts
from pyswitch.datapath_types import Conn, ConnTuple
from pyswitch.ha import sync
from pyswitch.ha.sync import (FULL, FULL_END, MAX_PAYLOAD, RESYNC_REQUEST, UPDATES, Affinity, Deleted, Message,
                              Received, SyncError, SyncReceiver, SyncSender)

EPOCH = 0x1234ABCD
OTHER_EPOCH = 0x0BADF00D


def ip(text):
    return bytes(int(x) for x in text.split("."))


def tup(n, proto=6):
    """A distinct client tuple for each n."""
    return ConnTuple(proto, ip("10.0.0.0")[:2] + n.to_bytes(2, "big"), ip("192.0.2.1"), 1024 + n % 60000, 80)


def conn(n, state=consts.CS_ESTABLISHED, **fields):
    c = Conn(client=tup(n), reply=ConnTuple(6, ip("198.51.100.7"), tup(n).src, 8080, tup(n).sport),
             backend=ip("198.51.100.7"), tunnel_src=bytes(4), mode=consts.CONN_NAT, state=state, vip_id=3,
             backend_id=n)
    return c._replace(**fields)


def header(kind=UPDATES, epoch=EPOCH, seq=1, count=0, flags=0, magic=b"PS", version=1):
    return struct.pack("!2sBBIIHH", magic, version, kind, epoch, seq, count, flags)


def one(kind, epoch, seq, entries=(), flags_last=0, flags_all=0):
    """The single payload of a short batch."""
    messages = sync.encode_messages(kind, epoch, seq, entries, flags_last, flags_all)
    assert len(messages) == 1
    return messages[0]


def updates(seq, entries=(), epoch=EPOCH, flags=0):
    return one(UPDATES, epoch, seq, entries, flags_all=flags)


# --- wire format ---

addr4 = st.binary(min_size=4, max_size=4)
u8, u16, u32 = (st.integers(0, (1 << bits) - 1) for bits in (8, 16, 32))
conn_tuples = st.builds(ConnTuple, u8, addr4, addr4, u16, u16)
# An all-zero reply tuple is how "no reply" travels; a real one always has a protocol.
replies = st.none() | st.builds(ConnTuple, st.integers(1, 255), addr4, addr4, u16, u16)
# Only the fields that travel: the counters and timestamps keep their default 0.
conns = st.tuples(conn_tuples, replies, addr4, addr4, u8, u8, u32, u32).map(lambda fields: Conn(*fields))
affinities = st.builds(Affinity, u32, addr4, u16, u32)
entries = st.one_of(conns, st.builds(Deleted, conn_tuples), affinities)


def test_header_layout():
    payload = updates(7, epoch=EPOCH, flags=FULL)
    assert len(payload) == sync.HEADER_LEN == 16
    assert payload == b"PS\x01\x01" + EPOCH.to_bytes(4, "big") + (7).to_bytes(4, "big") + b"\0\0\0\x01"


def test_entry_layouts():
    c = conn(5, mode=consts.CONN_FULLNAT, state=consts.CS_SYN, vip_id=0x01020304, backend_id=0x0A0B0C0D,
             tunnel_src=ip("203.0.113.9"))
    raw = sync.encode_entry(c)
    assert len(raw) == 53
    assert raw[0] == sync.TAG_CONN
    assert raw[1:17] == c.client.pack() and raw[17:33] == c.reply.pack()
    assert raw[33:37] == c.backend and raw[37:41] == c.tunnel_src
    assert raw[41:45] == bytes([consts.CONN_FULLNAT, consts.CS_SYN, 0, 0])
    assert raw[45:53] == bytes.fromhex("010203040a0b0c0d")
    assert sync.encode_entry(Deleted(tup(5))) == bytes([sync.TAG_DEL]) + tup(5).pack()
    raw = sync.encode_entry(Affinity(0x01020304, ip("10.1.2.3"), 0xBEEF, 0xDEADBEEF))
    assert raw == bytes([sync.TAG_AFFINITY]) + bytes.fromhex("01020304" "0a010203" "beef" "0000" "deadbeef")


@settings(max_examples=200)
@given(conns)
def test_conn_round_trip(c):
    message = sync.decode(updates(1, [c]))
    assert message == Message(UPDATES, EPOCH, 1, 0, (c,))
    assert isinstance(message.entries[0], Conn)


def test_local_fields_do_not_travel():
    c = conn(1)._replace(packets=10, bytes=5000, created_ms=123, used_ms=456)
    (decoded,) = sync.decode(updates(1, [c])).entries
    assert decoded == c._replace(packets=0, bytes=0, created_ms=0, used_ms=0)


def test_no_reply_travels_as_zeros():
    c = conn(1, reply=None, mode=consts.CONN_DSR)
    payload = updates(1, [c])
    assert payload[16 + 17:16 + 33] == bytes(16)
    assert sync.decode(payload).entries == (c,)


def test_mode_name_is_sent_as_its_number():
    (decoded,) = sync.decode(updates(1, [conn(1, mode="gre")])).entries
    assert decoded.mode == consts.CONN_GRE


@settings(max_examples=200)
@given(conn_tuples)
def test_deleted_round_trip(client):
    (decoded,) = sync.decode(updates(1, [Deleted(client)])).entries
    assert decoded == Deleted(client) and isinstance(decoded, Deleted)
    assert isinstance(decoded.client, ConnTuple)


@settings(max_examples=200)
@given(affinities)
def test_affinity_round_trip(a):
    (decoded,) = sync.decode(updates(1, [a])).entries
    assert decoded == a and isinstance(decoded, Affinity)


@settings(max_examples=100)
@given(st.lists(entries, max_size=200), st.integers(1, (1 << 32) - 1), u32)
def test_batches_round_trip(batch, first_seq, epoch):
    payloads = sync.encode_messages(UPDATES, epoch, first_seq, batch, flags_last=FULL_END, flags_all=FULL)
    decoded = [sync.decode(p) for p in payloads]
    assert all(len(p) <= MAX_PAYLOAD for p in payloads)
    assert [e for m in decoded for e in m.entries] == batch
    seq = first_seq
    for m in decoded:
        assert (m.type, m.epoch, m.seq) == (UPDATES, epoch, seq)
        seq = sync.next_seq(seq)
    assert [m.flags for m in decoded] == [FULL] * (len(decoded) - 1) + [FULL | FULL_END]


def test_max_payload_with_1000_conns():
    batch = [conn(n) for n in range(1000)]
    payloads = sync.encode_messages(UPDATES, EPOCH, 1, batch)
    assert all(len(p) <= MAX_PAYLOAD for p in payloads)
    per_message = (MAX_PAYLOAD - 16) // 53
    assert len(payloads) == -(-1000 // per_message)
    assert all(len(p) == 16 + 53 * per_message for p in payloads[:-1])     # full messages are filled
    assert [e for p in payloads for e in sync.decode(p).entries] == batch


def test_an_empty_batch_is_one_message():
    (payload,) = sync.encode_messages(UPDATES, EPOCH, 9, [], flags_last=FULL | FULL_END)
    assert sync.decode(payload) == Message(UPDATES, EPOCH, 9, FULL | FULL_END, ())


def test_next_seq_wraps_past_zero():
    assert sync.next_seq(1) == 2
    assert sync.next_seq((1 << 32) - 1) == 1
    payloads = sync.encode_messages(UPDATES, EPOCH, (1 << 32) - 1, [conn(n) for n in range(30)])
    assert [sync.decode(p).seq for p in payloads] == [(1 << 32) - 1, 1]


def test_resync_request():
    payload = sync.resync_request(OTHER_EPOCH)
    assert payload == header(RESYNC_REQUEST, OTHER_EPOCH, 0)
    assert sync.decode(payload) == Message(RESYNC_REQUEST, OTHER_EPOCH, 0, 0, ())
    assert sync.is_resync_request(payload)
    assert not sync.is_resync_request(updates(1))
    assert not sync.is_resync_request(b"junk")


@pytest.mark.parametrize("bad", [
    lambda: sync.encode_entry(tup(1)),                               # a bare tuple is no deletion
    lambda: sync.encode_entry(conn(1, vip_id=1 << 32)),
    lambda: sync.encode_entry(conn(1, backend=b"\0")),
    lambda: sync.encode_entry(Deleted(tup(1)._replace(sport=70000))),
    lambda: sync.encode_entry(Affinity(1, b"\0" * 3, 0, 0)),
    lambda: sync.encode_entry(Affinity(1, ip("10.0.0.1"), 1 << 16, 0)),
    lambda: sync.encode_entry(Affinity(1, ip("10.0.0.1"), 0, 1 << 32)),
    lambda: sync.encode_entry(Affinity(-1, ip("10.0.0.1"), 0, 0)),
    lambda: sync.encode_messages(UPDATES, EPOCH, 0, []),              # seq 0 is never used
    lambda: sync.encode_messages(UPDATES, 1 << 32, 1, []),
    lambda: sync.encode_messages(7, EPOCH, 1, []),
    lambda: sync.encode_messages(RESYNC_REQUEST, EPOCH, 0, [conn(1)]),
    lambda: sync.encode_messages(UPDATES, EPOCH, 1, [], flags_all=1 << 16),
    lambda: SyncSender(-1),
])
def test_what_cannot_be_encoded(bad):
    with pytest.raises((ValueError, TypeError)):
        bad()


# --- every reason to refuse a payload ---

GOOD = updates(5, [conn(1), Deleted(tup(2)), Affinity(3, ip("10.0.0.3"), 4, 5000)])


@pytest.mark.parametrize("payload, why", [
    (b"", "shorter than"),
    (GOOD[:15], "shorter than"),
    (b"XS" + GOOD[2:], "magic"),
    (GOOD[:2] + b"\x02" + GOOD[3:], "version"),
    (GOOD[:3] + b"\x00" + GOOD[4:], "unknown message type"),
    (GOOD[:3] + b"\x03" + GOOD[4:], "unknown message type"),
    (header(seq=0), "sequence number 0"),
    (header(RESYNC_REQUEST, count=1) + sync.encode_entry(Deleted(tup(1))), "resync request with 1"),
    (header(count=4) + GOOD[16:], "ends after 3 entries"),
    (header(count=2) + GOOD[16:], "bytes after the 2 entries"),
    (header(count=0) + b"\x01", "bytes after the 0 entries"),
    (GOOD + b"\0", "bytes after the 3 entries"),
    (header(count=1) + b"\x09" + bytes(52), "unknown entry tag 9"),
    (header(count=1) + b"\x00", "unknown entry tag 0"),
    (GOOD[:-1], "entry 2 (tag 3) needs 16 bytes"),
    (header(count=1) + sync.encode_entry(conn(1))[:40], "entry 0 (tag 1) needs 52 bytes"),
    (header(count=1) + bytes([sync.TAG_DEL]), "entry 0 (tag 2) needs 16 bytes"),
])
def test_sync_errors(payload, why):
    with pytest.raises(SyncError, match=why.replace("(", r"\(").replace(")", r"\)")):
        sync.decode(payload)
    assert issubclass(SyncError, ValueError)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_another_error(data):
    for payload in (data, GOOD[:16] + data, GOOD[:len(data) % len(GOOD)] + data):
        try:
            sync.decode(payload)
        except SyncError:
            pass


def test_unknown_flags_and_pad_bytes_are_ignored():
    payload = bytearray(updates(1, [conn(1), Affinity(1, ip("10.0.0.1"), 2, 3)], flags=0x8000))
    payload[16 + 43:16 + 45] = b"\xff\xff"          # the conn's pad
    payload[16 + 53 + 11:16 + 53 + 13] = b"\xff\xff"    # the affinity's pad
    message = sync.decode(bytes(payload))
    assert message.flags == 0x8000
    assert message.entries == (conn(1), Affinity(1, ip("10.0.0.1"), 2, 3))


# --- the sender ---

def test_sender_sends_what_is_queued_in_order():
    s = SyncSender(EPOCH)
    assert s.seq == 1 and s.pending() == 0
    s.conn(conn(1))
    s.affinity(Affinity(3, ip("10.0.0.1"), 2, 1000))
    s.deleted(tup(2))
    assert s.pending() == 3
    (payload,) = s.flush(0.0)
    assert sync.decode(payload) == Message(UPDATES, EPOCH, 1, 0,
                                           (conn(1), Affinity(3, ip("10.0.0.1"), 2, 1000), Deleted(tup(2))))
    assert s.pending() == 0 and s.seq == 2
    assert s.counters == {"messages": 1, "entries": 3, "full_dumps": 0}


def test_sender_coalesces_a_conn_in_place():
    s = SyncSender(EPOCH)
    s.conn(conn(1, state=consts.CS_SYN))
    s.conn(conn(2))
    s.conn(conn(1, state=consts.CS_ESTABLISHED))
    assert s.pending() == 2
    (payload,) = s.flush(0.0)
    assert sync.decode(payload).entries == (conn(1, state=consts.CS_ESTABLISHED), conn(2))


def test_sender_coalesces_conn_and_deleted_both_ways():
    s = SyncSender(EPOCH)
    s.conn(conn(1))
    s.conn(conn(2))
    s.deleted(tup(1))
    s.deleted(tup(3))
    s.conn(conn(3))
    assert s.pending() == 3
    (payload,) = s.flush(0.0)
    assert sync.decode(payload).entries == (Deleted(tup(1)), conn(2), conn(3))


def test_sender_takes_plain_tuples():
    s = SyncSender(EPOCH)
    s.conn(conn(1)._replace(client=tuple(tup(1))))
    s.deleted(tuple(tup(1)))
    assert s.pending() == 1
    (payload,) = s.flush(0.0)
    assert sync.decode(payload).entries == (Deleted(tup(1)),)


def test_sender_coalesces_affinities_by_vip_and_client():
    s = SyncSender(EPOCH)
    s.affinity(Affinity(1, ip("10.0.0.1"), 2, 1000))
    s.affinity(Affinity(2, ip("10.0.0.1"), 2, 1000))
    s.affinity(Affinity(1, ip("10.0.0.1"), 3, 900))
    (payload,) = s.flush(0.0)
    assert sync.decode(payload).entries == (Affinity(1, ip("10.0.0.1"), 3, 900), Affinity(2, ip("10.0.0.1"), 2, 1000))


def test_sender_refuses_a_bad_entry_when_it_is_queued():
    s = SyncSender(EPOCH)
    s.conn(conn(1))
    with pytest.raises(ValueError):
        s.conn(conn(2, backend_id=-1))
    with pytest.raises(ValueError):
        s.affinity(Affinity(1, b"", 0, 0))
    assert s.pending() == 1


def test_sender_splits_a_big_flush():
    s = SyncSender(EPOCH)
    for n in range(1000):
        s.conn(conn(n))
    payloads = s.flush(0.0)
    assert len(payloads) > 1 and all(len(p) <= MAX_PAYLOAD for p in payloads)
    assert [sync.decode(p).seq for p in payloads] == list(range(1, len(payloads) + 1))
    assert s.seq == len(payloads) + 1
    assert s.counters["messages"] == len(payloads) and s.counters["entries"] == 1000


def test_heartbeat_timing():
    s = SyncSender(EPOCH)
    # Nothing was ever sent: the first flush announces the epoch at once.
    assert s.next_deadline() == float("-inf")
    (beat,) = s.flush(10.0)
    assert sync.decode(beat) == Message(UPDATES, EPOCH, 1, 0, ())
    assert s.next_deadline() == 10.5
    assert s.flush(10.1) == [] and s.flush(10.49) == []
    s.conn(conn(1))
    (update,) = s.flush(10.3)                  # a real message resets the heartbeat timer
    assert sync.decode(update).seq == 2
    assert s.flush(10.79) == []
    (beat,) = s.flush(10.8)
    assert sync.decode(beat) == Message(UPDATES, EPOCH, 3, 0, ())
    assert s.flush(10.9) == []
    (beat,) = s.flush(20.0)                    # late: one heartbeat, no burst
    assert sync.decode(beat).seq == 4
    assert s.counters == {"messages": 4, "entries": 1, "full_dumps": 0}


def test_sender_seq_wraps_to_one():
    s = SyncSender(EPOCH)
    s.seq = (1 << 32) - 1
    assert sync.decode(s.flush(0.0)[0]).seq == (1 << 32) - 1
    assert s.seq == 1
    assert sync.decode(s.flush(1.0)[0]).seq == 1


def test_full_dump_flags():
    s = SyncSender(EPOCH)
    table = [conn(n) for n in range(100)]
    affs = [Affinity(1, ip("10.9.0.0")[:2] + n.to_bytes(2, "big"), n, 60000) for n in range(100)]
    payloads = s.full(table, affs, 0.0)
    messages = [sync.decode(p) for p in payloads]
    assert len(messages) > 1 and all(len(p) <= MAX_PAYLOAD for p in payloads)
    assert [m.flags for m in messages] == [FULL] * (len(messages) - 1) + [FULL | FULL_END]
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert [e for m in messages for e in m.entries] == table + affs
    assert s.counters == {"messages": len(messages), "entries": 200, "full_dumps": 1}
    assert s.flush(0.1) == []                  # the dump counts as sent: no heartbeat yet


def test_full_dump_of_nothing():
    s = SyncSender(EPOCH)
    (payload,) = s.full([], [], 0.0)
    assert sync.decode(payload) == Message(UPDATES, EPOCH, 1, FULL | FULL_END, ())


def test_full_dump_sends_the_queue_first():
    s = SyncSender(EPOCH)
    s.deleted(tup(7))
    s.conn(conn(8))
    payloads = s.full([conn(8), conn(9)], [], 0.0)
    messages = [sync.decode(p) for p in payloads]
    assert messages == [Message(UPDATES, EPOCH, 1, 0, (Deleted(tup(7)), conn(8))),
                        Message(UPDATES, EPOCH, 2, FULL | FULL_END, (conn(8), conn(9)))]
    assert s.pending() == 0


def test_full_dump_with_a_bad_conn_keeps_the_queue():
    s = SyncSender(EPOCH)
    s.conn(conn(1))
    with pytest.raises(ValueError):
        s.full([conn(2, state=256)], [], 0.0)
    assert s.pending() == 1 and s.seq == 1


# --- the receiver ---

def started(expected=2, epoch=EPOCH, now=0.0):
    """A receiver that heard `epoch` (an empty full dump, so it wants nothing) and expects seq `expected` next."""
    r = SyncReceiver()
    assert r.receive(updates(1, epoch=epoch, flags=FULL | FULL_END), now).full_done == frozenset()
    r.expected_seq = expected
    return r


def test_receiver_accepts_in_order():
    r = started()
    assert not r.wants_resync
    got = r.receive(updates(2, [conn(1), Deleted(tup(2))]), 1.0)
    assert got == Received((conn(1), Deleted(tup(2))), False, None)
    got = r.receive(updates(3, [Affinity(1, ip("10.0.0.1"), 0, 10)]), 1.1)
    assert got == Received((Affinity(1, ip("10.0.0.1"), 0, 10),), False, None)
    assert r.expected_seq == 4
    assert r.counters == {"messages": 3, "entries": 3, "invalid": 0, "new_epoch": 1, "gaps": 0, "lost": 0,
                          "stale": 0, "full_dumps": 1}


def test_first_message_asks_for_a_resync():
    r = SyncReceiver()
    assert not r.wants_resync and not r.due_resync(0.0)      # no master heard yet: nobody to ask
    got = r.receive(updates(41, [conn(1)]), 5.0)
    assert got == Received((conn(1),), True, None)
    assert r.epoch == EPOCH and r.expected_seq == 42
    assert r.wants_resync and r.counters["new_epoch"] == 1
    assert r.counters["gaps"] == 0


def test_new_epoch_asks_for_a_resync():
    r = started(expected=100)
    got = r.receive(updates(1, [conn(1)], epoch=OTHER_EPOCH), 10.0)     # the master restarted: seq 1 again
    assert got == Received((conn(1),), True, None)
    assert r.epoch == OTHER_EPOCH and r.expected_seq == 2 and r.wants_resync
    assert r.counters["new_epoch"] == 2 and r.counters["stale"] == 0 and r.counters["gaps"] == 0


def test_new_epoch_with_a_full_dump_asks_nothing():
    r = started(expected=100)
    got = r.receive(updates(1, [conn(1)], epoch=OTHER_EPOCH, flags=FULL), 10.0)
    assert got == Received((conn(1),), False, None)
    got = r.receive(one(UPDATES, OTHER_EPOCH, 2, [conn(2)], flags_last=FULL_END, flags_all=FULL), 10.0)
    assert got == Received((conn(2),), False, frozenset({tup(1), tup(2)}))
    assert not r.wants_resync and r.counters["full_dumps"] == 2


def test_new_epoch_joined_in_the_middle_of_a_dump():
    r = started(expected=100)
    got = r.receive(updates(5, [conn(5)], epoch=OTHER_EPOCH, flags=FULL), 10.0)
    assert got == Received((conn(5),), False, None)
    assert r.wants_resync and not r.due_resync(10.2)           # no request while the dump arrives
    got = r.receive(one(UPDATES, OTHER_EPOCH, 6, [conn(6)], flags_last=FULL_END, flags_all=FULL), 10.3)
    assert got == Received((conn(6),), True, None)               # unusable: ask for another
    assert r.wants_resync and r.counters["full_dumps"] == 1


def test_gap_asks_for_a_resync_and_counts():
    r = started(expected=10)
    got = r.receive(updates(13, [conn(1)]), 5.0)
    assert got == Received((conn(1),), True, None)               # entries are upserts: taken anyway
    assert r.counters["gaps"] == 1 and r.counters["lost"] == 3
    assert r.expected_seq == 14 and r.wants_resync
    assert r.receive(updates(14), 5.1) == Received((), False, None)
    assert r.counters["gaps"] == 1


def test_gap_across_the_wrap():
    r = started(expected=(1 << 32) - 2)
    got = r.receive(updates(2, [conn(1)]), 5.0)                  # lost 2**32-2, 2**32-1 and 1
    assert got.request_resync and r.counters["lost"] == 3 and r.expected_seq == 3


def test_stale_messages_are_ignored():
    r = started(expected=10)
    assert r.receive(updates(10), 1.0).request_resync is False
    for seq in (10, 9, 2, 1, (1 << 32) - 1, 11 + (1 << 31)):       # the last: 2**31 ahead reads as behind
        assert r.receive(updates(seq, [conn(seq % 1000)]), 1.0) == Received((), False, None)
    assert r.counters["stale"] == 6 and r.counters["gaps"] == 0 and r.expected_seq == 11
    assert not r.wants_resync
    assert r.receive(updates(11 + (1 << 31) - 1), 1.0).request_resync            # just less ahead: a gap
    assert r.counters["lost"] == (1 << 31) - 1


def test_invalid_payloads_are_counted():
    r = started(expected=10)
    assert r.receive(b"PS\x01", 1.0) == Received((), False, None)
    assert r.receive(GOOD[:-1], 1.0) == Received((), False, None)
    assert r.counters["invalid"] == 2 and r.expected_seq == 10


def test_resync_requests_are_ignored_by_the_receiver():
    r = started(expected=10)
    assert r.receive(sync.resync_request(OTHER_EPOCH), 1.0) == Received((), False, None)
    assert r.epoch == EPOCH and r.expected_seq == 10 and r.counters["messages"] == 1


def test_full_dump_returns_its_connections():
    r = started(expected=10)
    s = SyncSender(EPOCH)
    s.seq = 10
    table = [conn(n) for n in range(60)]
    payloads = s.full(table, [Affinity(1, ip("10.0.0.1"), 0, 10)], 1.0)
    results = [r.receive(p, 1.0) for p in payloads]
    assert all(res.full_done is None for res in results[:-1])
    assert results[-1].full_done == frozenset(c.client for c in table)
    assert [e for res in results for e in res.entries] == table + [Affinity(1, ip("10.0.0.1"), 0, 10)]
    assert not any(res.request_resync for res in results)
    assert r.counters["full_dumps"] == 2


def test_empty_full_dump_says_nothing_exists():
    r = started(expected=10)
    got = r.receive(updates(10, flags=FULL | FULL_END), 1.0)
    assert got == Received((), False, frozenset())


def test_deletions_in_a_dump_are_not_connections():
    r = started(expected=10)
    r.receive(updates(10, [conn(1), Deleted(tup(2))], flags=FULL), 1.0)
    got = r.receive(updates(11, [Deleted(tup(3))], flags=FULL | FULL_END), 1.0)
    assert got.full_done == frozenset({tup(1)})


def test_gap_in_the_middle_of_a_dump_abandons_it():
    r = started(expected=10)
    r.receive(updates(10, [conn(1)], flags=FULL), 1.0)
    got = r.receive(updates(12, [conn(3)], flags=FULL), 1.0)           # 11 lost
    assert got == Received((conn(3),), True, None)
    got = r.receive(updates(13, [conn(4)], flags=FULL | FULL_END), 1.2)
    assert got == Received((conn(4),), False, None)                  # abandoned; the request is rate-limited
    assert r.wants_resync and r.counters["full_dumps"] == 1
    # The dump that answers the request completes.
    r.receive(updates(14, [conn(1)], flags=FULL), 2.0)
    got = r.receive(updates(15, [conn(3)], flags=FULL | FULL_END), 2.0)
    assert got.full_done == frozenset({tup(1), tup(3)}) and not r.wants_resync


def test_dump_whose_first_message_was_lost_is_abandoned():
    r = started(expected=10)
    got = r.receive(updates(11, [conn(2)], flags=FULL), 1.0)           # 10, the dump's first, lost
    assert got.request_resync
    got = r.receive(updates(12, [conn(3)], flags=FULL | FULL_END), 1.0)
    assert got.full_done is None


def test_joined_mid_dump_gives_none():
    r = SyncReceiver()
    got = r.receive(updates(7, [conn(7)], flags=FULL), 0.0)
    assert got == Received((conn(7),), False, None)
    got = r.receive(updates(8, [conn(8)], flags=FULL | FULL_END), 0.1)
    assert got == Received((conn(8),), True, None)
    assert r.wants_resync and r.counters["full_dumps"] == 0


def test_an_ordinary_message_ends_an_unfinished_dump():
    r = started(expected=10)
    r.receive(updates(10, [conn(1)], flags=FULL), 1.0)
    r.receive(updates(11, [conn(2)]), 1.0)
    assert r.receive(updates(12, [conn(3)], flags=FULL | FULL_END), 1.0).full_done == frozenset({tup(3)})


def test_resync_requests_are_rate_limited():
    r = started(expected=10)
    assert r.receive(updates(12), 0.0).request_resync                # gap: asks
    assert not r.receive(updates(14), 0.5).request_resync            # another gap, within a second
    assert r.counters["gaps"] == 2
    assert not r.due_resync(0.9)
    assert r.due_resync(1.0)                                         # still wanted: ask again
    assert not r.due_resync(1.0) and not r.due_resync(1.99)
    assert r.due_resync(2.0)
    assert not r.receive(updates(16), 2.5).request_resync
    assert r.receive(updates(18), 3.0).request_resync
    assert r.wants_resync


def test_no_request_is_due_while_a_dump_arrives():
    r = started(expected=10)
    assert r.receive(updates(12), 0.0).request_resync
    r.receive(updates(13, [conn(1)], flags=FULL), 1.5)
    assert not r.due_resync(1.6)
    assert r.receive(updates(14, [conn(2)], flags=FULL | FULL_END), 1.7).full_done == frozenset({tup(1), tup(2)})
    assert not r.due_resync(5.0)


def test_a_completed_dump_clears_wants_resync():
    r = SyncReceiver()
    r.receive(updates(1), 0.0)
    assert r.wants_resync
    assert not r.due_resync(0.5) and r.due_resync(1.0)
    r.receive(updates(2, [conn(1)], flags=FULL), 1.2)
    assert r.wants_resync
    got = r.receive(updates(3, flags=FULL | FULL_END), 1.3)
    assert got.full_done == frozenset({tup(1)})
    assert not r.wants_resync and not r.due_resync(10.0)
    r.receive(updates(5), 11.0)                                      # a new gap wants one again
    assert r.wants_resync and not r.due_resync(11.5) and r.due_resync(12.0)


# --- the two sides together ---

class Standby:
    """A standby's connection table, kept by applying what SyncReceiver returns."""

    def __init__(self):
        self.receiver = SyncReceiver()
        self.conns = {}
        self.affinities = {}
        self.requests = 0

    def take(self, payload, now):
        got = self.receiver.receive(payload, now)
        for entry in got.entries:
            if isinstance(entry, Conn):
                self.conns[entry.client] = entry
            elif isinstance(entry, Deleted):
                self.conns.pop(entry.client, None)
            else:
                self.affinities[(entry.vip_id, entry.client)] = entry
        if got.full_done is not None:
            for client in set(self.conns) - got.full_done:
                del self.conns[client]
        if got.request_resync or self.receiver.due_resync(now):
            self.requests += 1
            return sync.resync_request(OTHER_EPOCH)
        return None


class Master:
    def __init__(self):
        self.sender = SyncSender(EPOCH)
        self.conns = {}
        self.affinities = {}

    def add(self, c):
        self.conns[c.client] = c
        self.sender.conn(c)

    def delete(self, client):
        del self.conns[client]
        self.sender.deleted(client)

    def set_affinity(self, a):
        self.affinities[(a.vip_id, a.client)] = a
        self.sender.affinity(a)

    def answer(self, request, now):
        assert sync.is_resync_request(request)
        return self.sender.full(self.conns.values(), self.affinities.values(), now)


def test_lossy_channel_then_resync():
    master, standby = Master(), Standby()
    now = 0.0
    sent = 0
    requests = []

    def deliver(payloads, drop=()):
        nonlocal sent
        for payload in payloads:
            sent += 1
            if sent in drop:
                continue
            request = standby.take(payload, now)
            if request is not None:
                requests.append(request)

    lossy = range(3, 6)                # messages 3, 4 and 5 are lost
    for step in range(12):
        now = step * 0.1
        master.add(conn(step))
        if step % 3 == 2:
            master.delete(tup(step - 1))           # some deletions fall into the lost messages
        if step % 4 == 0:
            master.set_affinity(Affinity(1, ip("10.0.0.1"), step, 60000 - step))
        deliver(master.sender.flush(now), drop=lossy)
    assert standby.receiver.counters["gaps"] == 1 and standby.receiver.counters["lost"] == 3
    assert standby.receiver.counters["new_epoch"] == 1
    # The first message asked (a new epoch); the gap at 0.5 s was within a second of it, so the request went
    # when due_resync allowed it, at 1.0 s.
    assert len(requests) == 2 and all(sync.is_resync_request(r) for r in requests)
    assert standby.receiver.wants_resync
    # Messages 3..5 carried conns 2, 3 and 4 and the deletion of conn 1.
    assert tup(1) in standby.conns and tup(1) not in master.conns
    assert not {tup(2), tup(3), tup(4)} & set(standby.conns)
    # The master answers the last request with a full dump; no loss this time.
    master.delete(tup(0))                                # queued: goes before the dump
    deliver(master.answer(requests[-1], now), drop=())
    assert standby.conns == master.conns
    assert standby.affinities == master.affinities
    assert not standby.receiver.wants_resync
    # And the stream goes on in order.
    now += 0.1
    master.add(conn(50))
    master.delete(tup(3))
    deliver(master.sender.flush(now))
    assert standby.conns == master.conns and standby.receiver.counters["gaps"] == 1


def test_partition_heals_through_a_heartbeat():
    master, standby = Master(), Standby()
    for payload in master.sender.flush(0.0):
        assert standby.take(payload, 0.0) is not None         # new epoch: asks
    for payload in master.answer(sync.resync_request(OTHER_EPOCH), 0.0):
        standby.take(payload, 0.0)
    assert not standby.receiver.wants_resync
    # Partition: the master's changes and heartbeats are lost.
    master.add(conn(1))
    master.sender.flush(0.1)
    master.delete(tup(1))
    master.add(conn(2))
    master.sender.flush(0.2)
    assert master.sender.flush(0.5) == []
    assert len(master.sender.flush(0.7)) == 1                  # a heartbeat, lost too
    # Healed: the next heartbeat shows the gap.
    (beat,) = master.sender.flush(1.3)
    request = standby.take(beat, 1.3)
    assert request is not None and standby.receiver.counters["lost"] == 3
    for payload in master.answer(request, 1.3):
        standby.take(payload, 1.3)
    assert standby.conns == master.conns == {tup(2): conn(2)}
