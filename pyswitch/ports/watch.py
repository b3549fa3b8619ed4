"""Ports whose interface disappears while the switch runs, and comes back.

An AF_PACKET socket is bound to an ifindex.  When its interface is deleted the kernel unhooks the socket for
good (one ENETDOWN, then silence), and an interface created later under the same name has a new ifindex the
old socket never hears of.  A TAP fd whose device is deleted is detached: every read fails and poll(2) reports
POLLERR for ever.  So the switch looks at its ports' devices on every housekeeping tick, the way Open vSwitch's
bridge reconfigures a port whose netdev went away and reappeared:

    present     nothing to do
    gone        logged once; the port leaves the datapath (no socket or fd of it is polled, outputs to it are
                counted as bad_port and dropped), the MACs learned on it are forgotten with the flows that
                sent to them, so the rest of the VLAN floods toward it and learns again, and so are the
                neighbors (ARP) behind it, so routed packets ask again
    back        the interface of that name exists again (afpacket, afxdp) or can be made again (tap, whose
                device pyswitch owns): the port is opened on the new ifindex or fd and attached under its
                old number, so every flow that names the port (the L3 and VIP stages' permanent flows,
                the neighbors) holds again; it is logged once

Counters survive: what the port counted before it left is kept and added to what it counts after.

Each tick also reads whether each attached port's interface is running (its operational state: `ip link set
down`, the peer of a veth gone down), and a change is an event: port_down / port_up with reason "link", as
are a device gone and back (reason "gone", "back").  A port is taken to be up when it is attached (pyswitch
brings its interface up), so a port that is down at start says so at the first tick.  A link that goes down
and up again between two ticks (0.5 s) is not seen.
"""
from __future__ import annotations

import logging

from .. import mirrors
from .base import PortError

log = logging.getLogger("pyswitch")

STAT_KEYS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "rx_errors", "tx_dropped")


class PortWatch:
    def __init__(self, switch):
        self.switch = switch                # ports, dp, l2; the port objects are replaced on reopen
        self.missing: dict[int, str] = {}   # port_no -> why it is detached (logged once)
        self.retry_errors: dict[int, str] = {}   # port_no -> the last reopen failure logged
        self.base_stats: dict[int, dict] = {}    # port_no -> counters of earlier attachments
        self.reattached: dict[int, int] = {}     # port_no -> times it came back
        self.detached = 0                        # times any port left the datapath
        self.link_up: dict[int, bool] = {}       # port_no -> running at the last tick (absent: taken as up)

    def check(self) -> None:
        """Detaches ports whose device went away and reattaches those whose device is back."""
        for port_no, port in list(self.switch.ports.items()):
            if port_no in self.missing:
                self._try_reopen(port_no, port)
            elif not port.present():
                self._detach(port_no, port)
                self._try_reopen(port_no, port)     # deleted and made again between two ticks
            else:
                self._check_link(port_no, port)

    def _check_link(self, port_no: int, port) -> None:
        up = port.running()
        if up != self.link_up.get(port_no, True):
            self.switch.events.emit("port_up" if up else "port_down", port=port.name, device=port.device,
                                    reason="link")
        self.link_up[port_no] = up

    def _detach(self, port_no: int, port) -> None:
        dp = self.switch.dp
        try:
            self._keep_stats(port_no, dp.port_stats(port_no))
            dp.del_port(port_no)
        except OSError:
            pass
        port.close()
        self.detached += 1
        self.missing[port_no] = f"interface {port.device!r} is gone"
        self.switch.events.emit("port_down", port=port.name, device=port.device, reason="gone")
        log.error("port %s: interface %s disappeared; the port is detached until an interface of that name "
                  "comes back", port.name, port.device)
        self.switch.l2.forget_port(port_no)
        self.switch.l3.forget_port(port_no)

    def _try_reopen(self, port_no: int, port) -> None:
        if not port.reopenable():
            return
        try:
            port.open()
            port.attach(self.switch.dp)
        except (PortError, OSError) as exc:
            port.close()
            message = str(exc)
            if self.retry_errors.get(port_no) != message:      # a new reason is worth a line, a repeat is not
                self.retry_errors[port_no] = message
                log.warning("port %s: %s is back but cannot be reopened yet: %s", port.name, port.device, message)
            return
        del self.missing[port_no]
        self.retry_errors.pop(port_no, None)
        mirrors.install(self.switch.dp, self.switch.config, only_port=port_no)   # the datapath forgot them
        self.reattached[port_no] = self.reattached.get(port_no, 0) + 1
        # Back but not running (its link is down): port_up comes from _check_link once the link is up.
        self.link_up[port_no] = port.running()
        if self.link_up[port_no]:
            self.switch.events.emit("port_up", port=port.name, device=port.device, reason="back")
        log.info("port %s: interface %s is back%s; the port is attached again", port.name, port.device,
                 f" (ifindex {port.ifindex})" if getattr(port, "ifindex", 0) else "")

    def _keep_stats(self, port_no: int, stats: dict) -> None:
        base = self.base_stats.setdefault(port_no, dict.fromkeys(STAT_KEYS, 0))
        for key in STAT_KEYS:
            base[key] += stats[key]

    def stats(self, port_no: int) -> dict:
        """The port's counters over all its attachments."""
        total = dict(self.base_stats.get(port_no) or dict.fromkeys(STAT_KEYS, 0))
        if port_no not in self.missing:
            current = self.switch.dp.port_stats(port_no)
            for key in STAT_KEYS:
                total[key] += current[key]
        return total

    def state(self, port_no: int, port) -> str:
        """'missing' (detached, waiting for its interface), 'down' (the interface is there but not running)
        or 'up'."""
        if port_no in self.missing:
            return "missing"
        return "up" if port.running() else "down"

    def show(self, port_no: int, port) -> dict:
        return {"state": self.state(port_no, port), "reattached": self.reattached.get(port_no, 0)}

