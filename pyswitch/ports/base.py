"""What every port kind shares: its configuration, its number, and how it fails."""
from __future__ import annotations

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

    def details(self) -> dict:
        """What `show ports` adds for this kind, beyond the counters every port has."""
        return {}
