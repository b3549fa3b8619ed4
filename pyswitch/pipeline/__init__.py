"""Slow-path stages: each takes an upcall, decides, sends the frame and installs a flow."""
