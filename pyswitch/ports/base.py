"""What every port kind shares: its configuration, its number, and how it fails."""
from __future__ import annotations

import os

ETH_HLEN = 14               # Ethernet header
VLAN_HLEN = 4               # one 802.1Q tag; frames may carry two (QinQ)


class PortError(RuntimeError):
    """A port that cannot be opened; the message is one sentence for the user."""


class Port:
    kind = ""

    def __init__(self, config, port_no: int):
        self.config = config
        self.port_no = port_no
        self.max_frame = 0  # the longest non-GSO frame the parser accepts from this port

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def device(self) -> str:
        return self.config.device

    @staticmethod
    def max_frame_for(mtu: int) -> int:
        return mtu + ETH_HLEN + 2 * VLAN_HLEN

    def open(self) -> None:
        raise NotImplementedError

    def attach(self, datapath) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Gives back what open() created."""

    def present(self) -> bool:
        """Whether the device this port opened is still there (pyswitch/ports/watch.py asks every tick)."""
        return True

    def reopenable(self) -> bool:
        """Whether open() may succeed again after the device went away."""
        return False

    def running(self) -> bool:
        """Whether the device can carry frames now (an interface that is down cannot)."""
        return True

    def details(self) -> dict:
        """What `show ports` adds for this kind, beyond the counters every port has."""
        return {}


def operstate(device: str) -> str | None:
    """The kernel's RFC 2863 operational state of a root-namespace interface ("up", "down", ...), or None."""
    try:
        with open(os.path.join("/sys/class/net", device, "operstate")) as f:
            return f.read().strip()
    except OSError:
        return None
