"""A `memory` port: the datapath's in-memory queues, for unit tests and benchmarks that drive a whole switch
without namespaces.  Frames go in with `dp.inject(port_no, frame)` and come out with `dp.take(port_no)`.

The config file does not offer this type (a user's port is a real interface); code that builds a Config for a
test sets `PortConfig.type = "memory"` itself.
"""
from __future__ import annotations

from .base import Port


class MemoryPort(Port):
    kind = "memory"

    def open(self) -> None:
        """Nothing to open: the datapath makes the queues in add_port."""

    def attach(self, datapath) -> None:
        datapath.add_port(self.port_no, "memory")
