"""pyswitch: a userspace L2/L3/L4 switch and load balancer for Linux network namespaces."""

__version__ = "0.1.0"
