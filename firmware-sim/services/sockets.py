"""Free local ports for the services Ruche starts itself (tests, demo, benchmarks), and
waiting for one to accept connections."""

from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now, for TCP and UDP alike.

    Chosen below the kernel's ephemeral range: a port from that range can be taken as the
    source port of any outgoing connection while its server is briefly down (a restart in
    a test), and the server then cannot come back on it.
    """
    low, high = _unclaimed_range()
    for _ in range(200):
        port = secrets.randbelow(high - low) + low
        if _bindable(host, port):
            return port
    # A crowded range: let the kernel pick, as before.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _unclaimed_range() -> tuple[int, int]:
    """Ports above the well-known ones and below the ephemeral range."""
    try:
        first = int(EPHEMERAL_RANGE.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768
    return 10000, max(first, 10001)


def _bindable(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def wait_for_port(host: str, port: int, *, timeout: float) -> bool:
    """True once something accepts TCP connections on host:port, False after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False
