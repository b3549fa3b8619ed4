"""`pyswitch top`: a live view of a running switch, refreshed every second, in any terminal (ssh, tmux).

Each refresh asks the switch for what `show ports`, `show stats` and `show vips` answer, over the control socket
as every other command, and shows rates from the difference to the refresh before: per-port packets and bits a
second in and out, drops, upcalls a second, the flow and connection counts, and each backend's load.  The switch
keeps no state for it, so any number of views can watch one switch.  q quits.

The screen is made by `render()` from two samples, with no terminal involved (tests/test_top.py reads it);
`run()` puts it on the terminal with curses.
"""
from __future__ import annotations

import curses
import time
from dataclasses import dataclass

REFRESH_S = 1.0


@dataclass
class Sample:
    at: float               # time.monotonic() when taken
    ports: list[dict]
    stats: dict
    vips: list[dict]


def take(ask) -> Sample:
    """One sample: `ask(command)` is the control socket's request for the switch watched."""
    return Sample(time.monotonic(), ask({"cmd": "show", "what": "ports"}), ask({"cmd": "show", "what": "stats"}),
                  ask({"cmd": "show", "what": "vips"}))


def _rate(new: int, old: int | None, seconds: float) -> float:
    if old is None or seconds <= 0 or new < old:        # the first sample, or a counter that started over
        return 0.0
    return (new - old) / seconds


def _human(value: float) -> str:
    """A rate in at most 6 characters: 950, 12.3k, 4.56M, 1.2G."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


def render(now: Sample, before: Sample | None, width: int = 100) -> list[str]:
    """The screen's lines for sample `now`, with rates since `before` (None: the first screen, rates 0)."""
    seconds = now.at - before.at if before else 0.0
    old_ports = {p["name"]: p for p in before.ports} if before else {}
    s, old = now.stats, before.stats if before else {}
    lines = [f"pyswitch top - {s.get('name')}  ({s.get('datapath')} datapath, up {s.get('uptime_s', 0):.0f} s)  "
             f"q quits",
             f"flows {s.get('flows', 0)}   conns {s.get('conn_conns', 0)}   macs {s.get('macs', 0)}   "
             f"upcalls/s {_human(_rate(s.get('upcalls', 0), old.get('upcalls'), seconds))}   "
             f"drops {s.get('parse_errors_total', 0) + s.get('upcalls_shed', 0)}",
             "",
             f"{'PORT':<12}{'RX pps':>9}{'RX bps':>9}{'TX pps':>9}{'TX bps':>9}{'drops':>8}  state"]
    for p in now.ports:
        o = old_ports.get(p["name"], {})
        cells = [_rate(p[k], o.get(k), seconds) for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")]
        lines.append(f"{p['name'][:11]:<12}{_human(cells[0]):>9}{_human(cells[1] * 8):>9}{_human(cells[2]):>9}"
                     f"{_human(cells[3] * 8):>9}{p['drops']:>8}  {p.get('state', '')}")
    backends = [(v, b) for v in now.vips for b in v.get("backends", [])]
    if backends:
        lines += ["", f"{'VIP':<14}{'BACKEND':<22}{'state':<8}{'active':>7}{'total':>8}{'rtt ms':>8}"]
        for v, b in backends:
            rtt = b.get("rtt_ms")
            lines.append(f"{v['name'][:13]:<14}{b['address'] + ':' + str(b['port']):<22}{b['state']:<8}"
                         f"{b['active_conns']:>7}{b['total_conns']:>8}{'-' if rtt is None else f'{rtt:.1f}':>8}")
    return [line[:width] for line in lines]


def run(ask, refresh_s: float = REFRESH_S) -> int:
    """The live view on this terminal until q (or Ctrl-C); 0, or 1 if the switch stops answering."""
    return curses.wrapper(_loop, ask, refresh_s)


def _loop(screen, ask, refresh_s: float) -> int:
    curses.curs_set(0)
    screen.timeout(int(refresh_s * 1000))       # getch() waits a refresh at most: the clock of the view
    before = None
    while True:
        try:
            now = take(ask)
        except (OSError, RuntimeError):        # gone, or refusing (the control client's ControlError)
            return 1
        height, width = screen.getmaxyx()
        screen.erase()
        for y, line in enumerate(render(now, before, width - 1)[:height]):
            screen.addstr(y, 0, line)
        screen.refresh()
        before = now
        key = screen.getch()
        if key in (ord("q"), ord("Q")):
            return 0
