"""Records the first bytes a real client sends: run inside a test namespace, one connection, then exits.

    python tests/l7_capture_server.py ADDRESS PORT http|tls OUT_FILE

Prints "ready" once listening.  http: reads up to the blank line and answers 200; tls: reads one whole TLS
record (the ClientHello) and closes, which the client reports as a failed handshake.  Independent of the
parsers under test on purpose: it frames by CRLFCRLF and by the record header only.  Bounded: 5 s.
"""
import socket
import sys

address, port, mode, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
listener = socket.create_server((address, port))
listener.settimeout(5.0)
print("ready", flush=True)
conn, _ = listener.accept()
conn.settimeout(5.0)
data = b""
while len(data) < 65536:
    if mode == "http" and b"\r\n\r\n" in data:
        break
    if mode == "tls" and len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big"):
        break
    chunk = conn.recv(4096)
    if not chunk:
        break
    data += chunk
with open(out, "wb") as f:
    f.write(data)
if mode == "http":
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
conn.close()
listener.close()
