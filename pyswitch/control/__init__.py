"""The control socket: one JSON request per connection, one JSON answer."""
import os

DEFAULT_DIR = "/run/pyswitch"
MAX_REQUEST = 64 * 1024     # bytes; a larger request is refused


def socket_path(name: str, directory: str = DEFAULT_DIR) -> str:
    return os.path.join(directory, f"{name}.sock")
