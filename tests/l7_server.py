"""A backend for the L7 tests: an HTTP/1.1 server (keep-alive), optionally over TLS, that says who it is.

    python l7_server.py NAME ADDRESS PORT [--tls CERT KEY]

Every answer carries "X-Server: NAME".  GET .../bytes/N answers N bytes of a fixed pattern (the client checks
their digest); POST or PUT answers "NAME SHA256 LENGTH" of the body it read; GET /health answers 200 "ok";
any other GET answers "NAME METHOD PATH HOST COOKIE\\n" (what the switch's rules looked at).  Prints "ready"
once listening.  The listen queue is deep enough for the 200-client test.
"""
import argparse
import hashlib
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = bytes(range(256)) * 256           # 64 KiB; /bytes/N repeats it


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("X-Server", args.name)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                self._answer(b"ok\n")
            elif "/bytes/" in self.path:
                size = int(self.path.rpartition("/bytes/")[2])
                self.send_response(200)
                self.send_header("X-Server", args.name)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                while size > 0:
                    chunk = PATTERN[:min(size, len(PATTERN))]
                    self.wfile.write(chunk)
                    size -= len(chunk)
            else:
                self._answer(f"{args.name} GET {self.path} {self.headers.get('Host')} "
                             f"{self.headers.get('Cookie')}\n".encode())

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            digest = hashlib.sha256()
            left = length
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            self._answer(f"{args.name} {digest.hexdigest()} {length - left}\n".encode())

        do_PUT = do_POST

        def log_message(self, *_):
            pass

    class Server(ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 512

        def handle_error(self, request, client_address):
            if not isinstance(sys.exc_info()[1], ConnectionError):     # health checks reset once answered
                super().handle_error(request, client_address)

    server = Server((args.address, args.port), Handler)
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
