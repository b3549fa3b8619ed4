"""The pieces of the L7 engine's own handshake: SYN cookies and the TCP options both halves agree on."""
import struct

import pytest

from pyswitch.l7 import tcp_options as opt
from pyswitch.l7.syncookie import MSS_TABLE, PERIOD_S, SynCookies
from pyswitch.pipeline import packets as pk

FOUR = bytes([198, 51, 100, 11, 203, 0, 113, 20]) + struct.pack("!HH", 40000, 80)
OTHER = bytes([198, 51, 100, 12, 203, 0, 113, 20]) + struct.pack("!HH", 40000, 80)


def test_a_cookie_comes_back_with_the_mss_and_options():
    cookies = SynCookies(b"k" * 32)
    isn = cookies.isn(FOUR, 1460, now=1000.0)
    tsval = cookies.tsval(123456, wscale=7, sack_permitted=True)
    back = cookies.check(FOUR, (isn + 1) & 0xFFFFFFFF, tsval, now=1001.0)
    assert (back.mss, back.wscale, back.sack_permitted) == (1460, 7, True)
    assert cookies.check(FOUR, (isn + 1) & 0xFFFFFFFF, None, now=1001.0).wscale is None   # no TS: no options


@pytest.mark.parametrize("client_mss, kept", [(1460, 1460), (1400, 1400), (1459, 1452), (500, 536), (9000, 8960)])
def test_the_mss_is_the_largest_table_entry_not_above_the_clients(client_mss, kept):
    cookies = SynCookies(b"k" * 32)
    isn = cookies.isn(FOUR, client_mss, now=50.0)
    assert cookies.check(FOUR, isn + 1, None, now=50.0).mss == kept
    assert kept in MSS_TABLE


def test_forged_stale_and_foreign_cookies_are_refused():
    cookies = SynCookies(b"k" * 32)
    isn = cookies.isn(FOUR, 1460, now=10 * PERIOD_S)
    assert cookies.check(FOUR, isn + 1, None, now=11 * PERIOD_S + 1) is not None     # the next period: good
    assert cookies.check(FOUR, isn + 1, None, now=12 * PERIOD_S + 1) is None         # two periods on: stale
    assert cookies.check(OTHER, isn + 1, None, now=10 * PERIOD_S) is None            # another client's
    assert cookies.check(FOUR, isn + 2, None, now=10 * PERIOD_S) is None             # not cookie + 1
    assert SynCookies(b"j" * 32).check(FOUR, isn + 1, None, now=10 * PERIOD_S) is None   # another secret


def test_the_cookie_tsval_keeps_the_clock_and_carries_no_window_scale():
    tsval = SynCookies.tsval(0x12345678, wscale=None, sack_permitted=False)
    assert tsval >> 5 == 0x12345678 >> 5
    back = SynCookies(b"k" * 32)
    isn = back.isn(FOUR, 1460, now=0.0)
    assert back.check(FOUR, isn + 1, tsval, now=0.0).wscale is None


def test_syn_options_round_trip_in_every_combination():
    for mss in (None, 1460):
        for wscale in (None, 0, 7, 14):
            for sack in (False, True):
                for tsval in (None, 0xDEADBEEF):
                    options = opt.TcpOptions(mss, wscale, sack, tsval, 7 if tsval is not None else 0)
                    raw = opt.build_syn(options)
                    assert len(raw) % 4 == 0
                    segment = pk.tcp(b"\x01" * 4, b"\x02" * 4, 1, 2, 0, 0, pk.TCP_SYN, options=raw)
                    assert opt.parse(segment) == options


def test_parse_stops_at_a_bad_length_and_clamps_the_window_scale():
    segment = pk.tcp(b"\x01" * 4, b"\x02" * 4, 1, 2, 0, 0, pk.TCP_SYN, options=bytes([3, 3, 20, 2, 0, 0, 0, 0]))
    assert opt.parse(segment).wscale == opt.MAX_WSCALE and opt.parse(segment).mss is None
    stamps = opt.build_timestamps(5, 6)
    segment = pk.tcp(b"\x01" * 4, b"\x02" * 4, 1, 2, 0, 0, pk.TCP_ACK, options=stamps)
    assert (opt.parse(segment).tsval, opt.parse(segment).tsecr) == (5, 6)
