"""[metrics]: a Prometheus endpoint, http://ADDRESS:PORT/metrics, serving the switch's own counters.

prometheus_client's HTTP server answers in threads of its own, while everything the counters come from (the
datapath, the stages' tables) belongs to the switch's one loop thread: the datapath releases the GIL inside
serve() and its workers run beside it, so reading its tables from another thread would race them.  So a scrape
never reads them itself.  It asks the loop for a snapshot and waits:

    scrape thread                                   loop thread (Switch._turn, between two serve() calls)
    SnapshotExchange.fresh(): want one, wake the    -> serve_pending(): build the snapshot (show stats, ports,
    loop (a byte on a socketpair that the datapath      vips, ha: the very answers `pyswitch show` gives),
    polls as a wake fd), wait at most WAIT_S        <-  publish it under the lock, notify
    families(snapshot) -> text

On demand rather than every housekeeping tick: a switch nobody scrapes builds nothing, and a scrape sees the
counters as they are when it asks (a test pings, then scrapes, and sees the ping).  A loop that does not answer
within WAIT_S (a long turn) gets the last snapshot served, its age in pyswitch_metrics_snapshot_age_seconds and
the scrape counted in pyswitch_metrics_stale_scrapes_total.  At most MAX_WAITING scrapes wait at once; more get
the last snapshot at once (pyswitch_metrics_busy_scrapes_total).  The loop builds at most one snapshot a turn,
however many scrapes wait: they share it.
"""
from __future__ import annotations

import logging
import socket
import threading
import time

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from .metric_families import families

log = logging.getLogger("pyswitch")

WAIT_S = 2.0                # how long a scrape waits for the loop's snapshot before it takes the last one
MAX_WAITING = 8             # scrapes waiting for a snapshot at once; more are served the last one


class SnapshotExchange:
    """Snapshots handed from the loop thread (publish) to scrape threads (fresh), under one lock."""

    def __init__(self, wake):
        self._wake = wake                   # called by a scrape thread: makes the loop run serve_pending soon
        self._cond = threading.Condition()
        self._wanted = False                # a scrape waits for a snapshot newer than the published one
        self._building = False              # the loop is building one now (begun before the newest request?)
        self._published = 0                 # snapshots published so far
        self._snapshot = None
        self._taken = 0.0                   # time.monotonic() of the published snapshot
        self._waiting = threading.BoundedSemaphore(MAX_WAITING)
        self._closed = False
        self.counters = {"snapshots": 0, "stale_scrapes": 0, "busy_scrapes": 0, "snapshot_errors": 0}
        self.build_seconds = 0.0            # how long the loop took over the last snapshot

    # -- scrape threads ----------------------------------------------------------------------------------

    def fresh(self, timeout: float = WAIT_S):
        """(snapshot, taken) of one the loop built after this call began, or the last one (None before any) when
        the loop does not answer in time, too many scrapes wait, or the switch is closing."""
        if not self._waiting.acquire(blocking=False):
            with self._cond:
                self.counters["busy_scrapes"] += 1
                return self._snapshot, self._taken
        try:
            with self._cond:
                # One being built may have read the counters before this request: wait for the one after it.
                target = self._published + (2 if self._building else 1)
                self._wanted = True
            self._wake()
            with self._cond:
                if not self._cond.wait_for(lambda: self._published >= target or self._closed, timeout) \
                        or self._published < target:
                    self.counters["stale_scrapes"] += 1
                return self._snapshot, self._taken
        finally:
            self._waiting.release()

    # -- the loop thread ---------------------------------------------------------------------------------

    def publish_with(self, build) -> None:
        """Builds a snapshot with build() if a scrape wants one, and hands it over.  Loop thread only."""
        with self._cond:
            if not self._wanted:
                return
            self._wanted = False
            self._building = True
        started = time.monotonic()
        try:
            snapshot = build()
        except Exception:       # a bug in a show function must not stop the switch: the scrape gets the last one
            log.exception("metrics: building a snapshot failed")
            snapshot = None
        took = time.monotonic() - started
        with self._cond:
            self._building = False
            self.build_seconds = took
            if snapshot is None:
                self.counters["snapshot_errors"] += 1
            else:
                self._snapshot, self._taken = snapshot, time.monotonic()
                self.counters["snapshots"] += 1
            self._published += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def own_stats(self) -> tuple[dict, float]:
        """(counters, build_seconds), read under the lock: any thread."""
        with self._cond:
            return dict(self.counters), self.build_seconds


class SwitchCollector:
    """The registry's one collector: each collect() is one scrape, served from one snapshot."""

    def __init__(self, exchange: SnapshotExchange):
        self.exchange = exchange

    def collect(self):
        snapshot, taken = self.exchange.fresh()
        if snapshot is not None:
            yield from families(snapshot)
        yield from self._own(taken if snapshot is not None else None)

    def _own(self, taken):
        """The endpoint's own counters: how fresh this answer is, and what the exchange refused."""
        counters, build = self.exchange.own_stats()
        age = GaugeMetricFamily("pyswitch_metrics_snapshot_age_seconds",
                                "How old the snapshot this answer comes from is (-1: none yet).")
        age.add_metric([], -1 if taken is None else max(0.0, time.monotonic() - taken))
        yield age
        took = GaugeMetricFamily("pyswitch_metrics_snapshot_build_seconds",
                                 "How long the switch's loop took to build the last snapshot.")
        took.add_metric([], build)
        yield took
        for key, help in (("snapshots", "Snapshots the loop built for scrapes."),
                          ("stale_scrapes", "Scrapes the loop did not answer in time: served the last snapshot."),
                          ("busy_scrapes", "Scrapes beyond those allowed to wait: served the last snapshot."),
                          ("snapshot_errors", "Snapshots that failed to build (the switch's log says why).")):
            family = CounterMetricFamily(f"pyswitch_metrics_{key}", help)
            family.add_metric([], counters[key])
            yield family


def read_switch(switch) -> dict:
    """What one scrape shows: the answers of `show stats`, `show ports`, `show vips` and `show ha`.  Loop thread
    only (it reads the datapath)."""
    return {"stats": switch.show_stats(), "ports": switch.show_ports(),
            "vips": switch.vips.show_vips() if switch.vips.enabled else [],
            "ha": switch.ha.show(time.monotonic()) if switch.ha is not None else None}


class MetricsEndpoint:
    """The HTTP endpoint of one switch: opened with it, served from its loop's snapshots, closed with it."""

    def __init__(self, config, build):
        self.config = config
        self._build = build                 # () -> snapshot, called on the loop thread
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.exchange = SnapshotExchange(self._wake)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SwitchCollector(self.exchange))
        try:
            self._server, self._thread = start_http_server(config.port, addr=config.host, registry=registry)
        except OSError as exc:
            self._wake_r.close()
            self._wake_w.close()
            hint = " (a port below 1024 needs CAP_NET_BIND_SERVICE)" if config.port < 1024 else ""
            raise RuntimeError(f"metrics.listen: cannot listen on {config.listen}: {exc.strerror or exc}{hint}") \
                from None
        log.info("metrics: serving http://%s/metrics", config.listen)

    def fileno(self) -> int:
        """The fd the datapath polls as a wake fd: readable when a scrape waits for a snapshot."""
        return self._wake_r.fileno()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"m")
        except OSError:         # full (the loop has been woken already) or closed (the switch is stopping)
            pass

    def serve_pending(self) -> None:
        """Loop thread: answers the scrapes that wait, if any."""
        try:
            while self._wake_r.recv(256):
                pass
        except (BlockingIOError, OSError):
            pass
        self.exchange.publish_with(self._build)

    def close(self) -> None:
        """Stops the HTTP server and its thread; scrapes still waiting are answered with the last snapshot."""
        self.exchange.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
        self._wake_r.close()
        self._wake_w.close()
