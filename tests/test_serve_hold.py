"""An overloaded slow path's defences in the serve loop (ps_dp_set_hold, the upcall queue's per-port share), C and
Python alike: while serve() holds upcalls it forwards on, and one port's flood of misses takes only its share of the
queue, the rest dropped and counted."""
import pytest

from pyswitch import actions as A, consts, fastpath, refpath
from pyswitch.flowkey import FlowKey
from test_refpath_datapath import FRAME

PORT_MASK = FlowKey.mask_of("in_port")
SHARE = 256 // consts.UPCALL_PORT_SHARES


@pytest.fixture(params=["c", "python"])
def dp(request):
    impl = fastpath if request.param == "c" else refpath
    d = impl.Datapath(max_upcalls=256)
    for p in range(4):
        d.add_port(p, "memory")
    d.flow_put(FlowKey(in_port=0).pack(), PORT_MASK, 0, [A.output(1)], now_ms=0)   # 0 -> 1; 2 and 3: misses
    yield d
    d.close()


def test_without_hold_serve_returns_after_the_first_run_with_upcalls(dp):
    for _ in range(5 * consts.BATCH):
        dp.inject(0, FRAME)
        dp.inject(2, FRAME)
    assert dp.serve(5000) == 2 * consts.BATCH
    assert len(dp.upcalls()) == consts.BATCH


def test_holding_forwards_on_and_a_flooding_port_gets_its_share(dp):
    dp.set_hold(2_000_000)                  # longer than the test: the hold ends when the ports fall idle
    for _ in range(5 * consts.BATCH):
        dp.inject(0, FRAME)
        dp.inject(2, FRAME)                 # the flood: a miss each
    dp.inject(3, FRAME)                     # a new flow on another port, behind the flood
    taken = dp.serve(5000)
    assert taken == 10 * consts.BATCH + 1, "serve stopped before the ports fell idle"
    assert len(dp.take(1)) == 5 * consts.BATCH, "the fast path's traffic was held back"
    ups = dp.upcalls()
    assert sum(u.in_port == 2 for u in ups) == SHARE
    assert [u.in_port for u in ups if u.in_port != 2] == [3], "the flood took the other port's room"
    s = dp.stats()
    assert (s["upcalls"], s["upcall_dropped"]) == (SHARE + 1, 5 * consts.BATCH - SHARE)


def test_a_new_run_gives_every_port_its_share_again(dp):
    dp.set_hold(2_000_000)
    for _ in range(2 * SHARE):
        dp.inject(2, FRAME)
    dp.serve(5000)
    assert len(dp.upcalls()) == SHARE
    dp.set_hold(0)
    dp.inject(2, FRAME)
    dp.serve(5000)
    assert len(dp.upcalls()) == 1 and dp.stats()["upcalls"] == SHARE + 1


def test_frames_the_switch_originates_have_no_share(dp):
    """execute() of an UPCALL action from no port (the switch's own frames) is limited by the queue only."""
    for _ in range(SHARE + 10):
        dp.execute(0xFFFF, FRAME, bytes(consts.VNET_HDR_SIZE), [A.upcall(1)])
    assert len(dp.upcalls()) == SHARE + 10


def test_with_workers_the_slow_path_waits_out_the_hold_while_workers_forward():
    from test_workers import udp_frame
    d = fastpath.Datapath(max_upcalls=256, workers=2)
    try:
        for p in range(3):
            d.add_port(p, "memory")
        d.flow_put(FlowKey(in_port=0).pack(), PORT_MASK, 0, [A.output(1)], now_ms=0)
        d.set_hold(5000)
        frames = [udp_frame(10000 + i) for i in range(300)]
        for frame in frames:
            d.inject(0, frame)
            d.inject(2, frame)              # misses
        taken = 0
        for _ in range(20):
            taken += d.serve(200)
            if taken == 600:
                break
        assert taken == 600 and len(d.take(1)) == 300
        s = d.stats()
        assert s["upcalls"] + s["upcall_dropped"] == 300 and s["upcall_dropped"] > 0
    finally:
        d.close()
