"""The pure-Python twin of the C fast path, file for file (docs/DATAPATH.md is the contract)."""
