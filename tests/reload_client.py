"""A long-lived TCP connection through a VIP that carries data across a reload.

    python reload_client.py ADDRESS PORT LINES INTERVAL_S

Asks GET /hold (tests/lb_server.py echoes every line afterwards), prints "backend NAME" once connected, then
sends LINES numbered lines, one every INTERVAL_S, and reads each echo back.  Prints one JSON line at the end:
{"backend", "sent", "echoed", "mismatch", "error", "max_rtt_ms"} (the slowest echo).
"""
import json
import socket
import sys
import time


def main() -> int:
    address, port, lines, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    result = {"backend": None, "sent": 0, "echoed": 0, "mismatch": None, "error": None, "max_rtt_ms": 0.0}
    try:
        sock = socket.create_connection((address, port), timeout=5)
        sock.sendall(b"GET /hold HTTP/1.0\r\n\r\n")
        f = sock.makefile("rb")
        while f.readline() not in (b"\r\n", b""):      # status line and headers
            pass
        result["backend"] = f.readline().decode().strip()
        print(f"backend {result['backend']}", flush=True)
        for i in range(lines):
            line = f"{i:06d} {'x' * 1000}\n".encode()   # a kilobyte a line: several segments per echo
            started = time.monotonic()
            sock.sendall(line)
            result["sent"] += 1
            echo = f.readline()
            result["max_rtt_ms"] = max(result["max_rtt_ms"], round((time.monotonic() - started) * 1000, 2))
            if echo != line:
                result["mismatch"] = i
                break
            result["echoed"] += 1
            time.sleep(interval)
        sock.close()
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
