"""[[mirror]]: the config's port mirrors, written into the datapath (csrc/tap.c does the copying).

A mirror's target port takes no part in the switching, as an Open vSwitch mirror's output port: it is flooded
nothing and learns nothing (PortConfig.carries), and what its host sends is dropped by one flow above every
stage's, so it does not even come up to the slow path.  The drops are counted in that flow's packets
(`show flows --explain` names it).
"""
from __future__ import annotations

import logging

from .config import Config
from .flowkey import FlowKey

log = logging.getLogger("pyswitch")

MIRROR_PRIORITY = 2000          # above every stage's flows (HA's adverts sit at 1100)
COOKIE_MIRROR = 0x4D49 << 48    # "MI": a mirror target's drop flow
MATCH_IN_PORT = FlowKey.mask_of("in_port")


def bitmaps(config: Config) -> dict[int, tuple[set[int], set[int]]]:
    """Per source port number: (the targets of what it receives, the targets of what it sends)."""
    numbers = {p.name: no for no, p in enumerate(config.ports)}
    out: dict[int, tuple[set[int], set[int]]] = {}
    for m in config.mirrors:
        for name in m.sources:
            on_in, on_out = out.setdefault(numbers[name], (set(), set()))
            if m.direction in ("in", "both"):
                on_in.add(numbers[m.to])
            if m.direction in ("out", "both"):
                on_out.add(numbers[m.to])
    return out


def targets(config: Config) -> list[int]:
    return sorted({no for no, p in enumerate(config.ports) if p.mirror_target})


def install(dp, config: Config, only_port: int | None = None) -> None:
    """Writes the mirrors into `dp` (only those that involve `only_port`, for a port attached again), and the
    drop flow of each target."""
    for source, (on_in, on_out) in bitmaps(config).items():
        if only_port is None or only_port == source or only_port in on_in | on_out:
            dp.mirror_set(source, sorted(on_in), sorted(on_out))
    for target in targets(config):
        if only_port is None or only_port == target:
            dp.flow_put(FlowKey(in_port=target).pack(), MATCH_IN_PORT, MIRROR_PRIORITY, [],
                        cookie=COOKIE_MIRROR | target)
    if only_port is None and config.mirrors:
        for m in config.mirrors:
            log.info("mirror: what %s %s is copied to %s", ", ".join(m.sources),
                     {"in": "receives", "out": "sends", "both": "receives and sends"}[m.direction], m.to)

