"""Active/passive redundancy: VRRPv3 (RFC 5798) and connection sync."""
