"""L4 load balancing: backends, the schedulers that choose among them, and Maglev's table.

Everything here is control plane.  A scheduler decides once per new connection (an upcall); the fast
path then carries the connection on the installed flow, or, for Maglev, indexes a ring this package
computes and rewrites only where it changed.
"""
