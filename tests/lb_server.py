"""A backend for the load-balancing tests: HTTP and UDP servers that answer with their own name.

    python lb_server.py NAME ADDRESS PORT [--delay S] [--udp] [--sick-file PATH]

HTTP: every GET answers 200 with "NAME\\n" after `--delay` seconds (an artificially slow backend);
GET /hold answers at once and keeps the connection open, echoing every line the client sends, until the
client closes it (open connections for least-connection and drain tests).  GET /health answers 503 while
the --sick-file exists, else 200: a health check can fail while the server and its connections live on.
UDP: every datagram is answered with "NAME\\n".  Prints "ready" once listening.
"""
import argparse
import os
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--udp", action="store_true")
    parser.add_argument("--sick-file")
    args = parser.parse_args()
    body = f"{args.name}\n".encode()
    if args.udp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((args.address, args.port))
        print("ready", flush=True)
        while True:
            _data, peer = sock.recvfrom(2048)
            sock.sendto(body, peer)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            if self.path == "/health":
                sick = args.sick_file is not None and os.path.exists(args.sick_file)
                self.send_response(503 if sick else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == "/hold":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)
                for line in self.rfile:     # ends when the client closes
                    self.wfile.write(line)
                return
            time.sleep(args.delay)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((args.address, args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
