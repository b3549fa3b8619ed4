"""L7 switching: reading a client's first request (HTTP head or TLS ClientHello) and choosing a pool by it."""
