"""The token bucket that limits ARP per port in the slow path, with a hand-driven clock."""
from pyswitch.pipeline.rate_limit import TokenBucket


def test_burst_then_rate():
    bucket = TokenBucket(rate=10, burst=5, now=0)
    assert [bucket.allow(0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert bucket.allow(0.05) is False, "half a token is not one"
    assert bucket.allow(0.1) is True and bucket.allow(0.1) is False
    assert sum(bucket.allow(1 + i / 1000) for i in range(1000)) == 14, "5 of burst back, then 10 a second"


def test_an_idle_bucket_fills_to_its_burst_only():
    bucket = TokenBucket(rate=100, burst=3, now=0)
    for _ in range(3):
        bucket.allow(0)
    assert sum(bucket.allow(60) for _ in range(10)) == 3


def test_a_clock_going_back_takes_nothing():
    bucket = TokenBucket(rate=1, burst=1, now=10)
    assert bucket.allow(10) and not bucket.allow(5) and bucket.allow(11)
