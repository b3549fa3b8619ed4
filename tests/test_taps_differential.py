"""Mirrors and captures (csrc/tap.c, pyswitch/refpath/taps.py): the C datapath and its twin copy the same frames
to the same ports and capture the same records, on whole datapaths with memory ports, and refuse the same rules."""
import errno

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pyswitch import consts, fastpath, refpath
from pyswitch.actions import flood, output, push_vlan

from test_differential import N_PORTS, dp_scenarios, dp_state, scenario_datapaths

# A filter for "the frame's 13th byte (the EtherType's high byte) is 0x08", as libpcap would compile a test of
# one byte: keeps IPv4 and ARP, drops IPv6 and 802.1Q; returns a snap length of 64.
ETHERTYPE_HIGH_IS_8 = ((0x30, 0, 0, 12), (0x15, 0, 1, 0x08), (0x06, 0, 0, 64), (0x06, 0, 0, 0))

mirrors = st.lists(st.tuples(st.integers(0, N_PORTS - 1), st.sets(st.integers(0, N_PORTS - 1), max_size=2),
                             st.sets(st.integers(0, N_PORTS - 1), max_size=2)), max_size=3)
captures = st.lists(st.tuples(st.integers(0, N_PORTS - 1), st.sampled_from([1, 2, 3]),
                              st.sampled_from([1, 60, consts.CAPTURE_MAX_SNAPLEN]),
                              st.sampled_from([(), ETHERTYPE_HIGH_IS_8])), max_size=4)


def outcome(call):
    try:
        return ("ok", call())
    except ValueError:
        return ("ValueError",)
    except OSError as exc:
        return ("OSError", exc.errno)


def records(dp):
    return [r._replace(ts_ns=0) for r in dp.capture_take()]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(dp_scenarios(), mirrors, captures)
def test_taps_equal(scenario, mirror_rules, capture_rules):
    frames, flows, executes, max_frame, max_upcalls = scenario
    dps = scenario_datapaths(flows, max_frame, max_upcalls)
    try:
        for source, to_in, to_out in mirror_rules:
            assert len({outcome(lambda: dp.mirror_set(source, to_in, to_out)) for dp in dps}) == 1
        for slot, (port, directions, snaplen, program) in enumerate(capture_rules):
            assert len({outcome(lambda: dp.capture_add(slot, port, directions, snaplen, program))
                        for dp in dps}) == 1
        for batch, now in ((frames[:len(frames) // 2], 10), (frames[len(frames) // 2:], 250)):
            for dp in dps:
                for port, frame, vnet in batch:
                    dp.inject(port, frame, vnet)
            assert dps[0].run(now_ms=now) == dps[1].run(now_ms=now)
            assert dp_state(dps[0]) == dp_state(dps[1])
            assert records(dps[0]) == records(dps[1])
        for in_port, frame, vnet, acts in executes:
            for dp in dps:
                dp.execute(in_port, frame, vnet, acts)
            assert dp_state(dps[0]) == dp_state(dps[1])
            assert records(dps[0]) == records(dps[1])
        for slot in range(consts.MAX_CAPTURES):
            assert dps[0].capture_counts(slot) == dps[1].capture_counts(slot)
    finally:
        for dp in dps:
            dp.close()


IMPLS = [pytest.param(fastpath, id="c"), pytest.param(refpath, id="python")]


def frame(ethertype=b"\x88\xb5", payload=b"x" * 46):      # local experimental EtherType: parses as L2 only
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + ethertype + payload


@pytest.fixture(params=IMPLS)
def dp(request):
    dp = request.param.Datapath()
    for p in range(4):
        dp.add_port(p, "memory")
    yield dp
    dp.close()


def test_mirror_copies_what_a_port_receives_as_it_came(dp):
    dp.flow_put(bytes(64), bytes(64), 1, [push_vlan(10), output(1)])
    dp.mirror_set(0, to_on_in=[3])
    dp.inject(0, frame())
    dp.run()
    assert [f for f, _v in dp.take(3)] == [frame()], "the copy is the frame before the action tagged it"
    assert dp.take(1)[0][0] != frame()


def test_mirror_copies_what_a_port_sends(dp):
    dp.flow_put(bytes(64), bytes(64), 1, [flood([1, 2])])
    dp.mirror_set(2, to_on_out=[3])
    dp.inject(0, frame())
    dp.run()
    assert [f for f, _v in dp.take(3)] == [frame()]
    assert len(dp.take(1)) == len(dp.take(2)) == 1


def test_no_mirror_no_copy(dp):
    dp.flow_put(bytes(64), bytes(64), 1, [output(1)])
    dp.mirror_set(0, to_on_in=[3])
    dp.mirror_set(0)                            # removed again
    dp.inject(0, frame())
    dp.run()
    assert dp.take(3) == [] and len(dp.take(1)) == 1


@pytest.mark.parametrize("source, to_in, to_out, then", [
    (0, [0], [], None),                         # a port mirrored to itself
    (0, [], [64], None),                        # no such port number
    (1, [2], [], (2, [3], [])),                 # a target that becomes a source
    (1, [2], [], (3, [1], [])),                 # a source that becomes a target
])
def test_mirror_refuses_loops(dp, source, to_in, to_out, then):
    if then is None:
        with pytest.raises(ValueError):
            dp.mirror_set(source, to_in, to_out)
        return
    dp.mirror_set(source, to_in, to_out)
    with pytest.raises(ValueError):
        dp.mirror_set(*then)


def test_capture_sees_both_directions_and_counts(dp):
    dp.flow_put(bytes(64), bytes(64), 1, [output(1)])
    dp.capture_add(0, 1, consts.TAP_IN | consts.TAP_OUT)
    dp.capture_add(1, 0, consts.TAP_IN, snaplen=20)
    dp.inject(0, frame())
    dp.inject(1, frame(payload=b"y" * 46))
    dp.run()
    got = [(r.capture, r.direction, r.port_no, r.wire_len, len(r.data)) for r in dp.capture_take()]
    # Port 0's frame goes out of 1; port 1's comes in on 1 and goes out of it again (OUTPUT to the in_port).
    assert sorted(got) == sorted([(1, consts.TAP_IN, 0, 60, 20), (0, consts.TAP_OUT, 1, 60, 60),
                                  (0, consts.TAP_IN, 1, 60, 60), (0, consts.TAP_OUT, 1, 60, 60)])
    assert dp.capture_take() == [], "taken once"
    assert dp.capture_counts(0) == (3, 0) and dp.capture_counts(1) == (1, 0)


def test_capture_filter_and_its_snap_length(dp):
    dp.capture_add(0, 0, consts.TAP_IN, program=ETHERTYPE_HIGH_IS_8)
    dp.inject(0, frame(b"\x86\xdd"))            # IPv6: refused by the filter
    dp.inject(0, frame(b"\x08\x06"))            # ARP: taken, 64 bytes at most
    dp.inject(0, frame(b"\x08\x00", b"z" * 200))
    dp.run()
    got = dp.capture_take()
    assert [(r.data[12:14], r.wire_len, len(r.data)) for r in got] == [(b"\x08\x06", 60, 60),
                                                                         (b"\x08\x00", 214, 64)]


def test_capture_slot_rules(dp):
    dp.capture_add(0, 0, consts.TAP_IN)
    with pytest.raises(OSError) as busy:
        dp.capture_add(0, 1, consts.TAP_IN)
    assert busy.value.errno == errno.EBUSY
    for bad in [dict(slot=consts.MAX_CAPTURES), dict(directions=0), dict(directions=4), dict(snaplen=0),
                dict(snaplen=consts.CAPTURE_MAX_SNAPLEN + 1), dict(program=[(0x06, 0, 0, 1), (0xFFFF, 0, 0, 0)])]:
        args = dict(slot=1, port_no=0, directions=consts.TAP_IN, snaplen=100, program=()) | bad
        with pytest.raises(ValueError):
            dp.capture_add(**args)
    assert dp.capture_del(0) and not dp.capture_del(0)


def test_deleting_a_port_ends_its_taps(dp):
    dp.flow_put(bytes(64), bytes(64), 1, [output(2)])
    dp.mirror_set(0, to_on_in=[3])
    dp.capture_add(0, 0, consts.TAP_IN)
    dp.del_port(3)
    dp.del_port(0)
    dp.add_port(0, "memory")
    dp.add_port(3, "memory")
    dp.inject(0, frame())
    dp.run()
    assert dp.take(3) == [] and dp.capture_take() == []
    dp.capture_add(0, 1, consts.TAP_IN)         # the slot is free again


def test_full_buffer_counts_what_it_drops(dp):
    dp.capture_add(0, 0, consts.TAP_IN)
    n = consts.CAPTURE_MAX_RECORDS + 10
    for start in range(0, n, 64):
        for _ in range(min(64, n - start)):
            dp.inject(0, frame())
        dp.run()
    assert len(dp.capture_take()) == consts.CAPTURE_MAX_RECORDS
    assert dp.capture_counts(0) == (consts.CAPTURE_MAX_RECORDS, 10)
