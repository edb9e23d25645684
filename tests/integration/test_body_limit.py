"""Request bodies over the limit are refused before they are read, by a real `ruche server
run` over real sockets: with a `Content-Length`, before a byte of the body is sent; chunked,
at the first chunk past the limit; and the process's memory stays flat under a flood."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ruche.server.storage.db import run_migrations
from ruche.sim.bench.access import BodyFlood, RssSampler
from ruche.sim.services.sockets import free_port, wait_for_port

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int

    def refused(self, reason: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        line = f'ruche_http_body_refused_total{{reason="{reason}"}}'
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line))

    def raw(self, head: str) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(head.encode())
        return sock


@pytest.fixture
def server(site, tmp_path) -> Iterator[Server]:
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    port = free_port()
    account = site.broker.server
    config = tmp_path / "server.toml"
    config.write_text(
        f'database_url = "{url}"\n[mqtt]\nhost = "{site.broker.host}"\n'
        f'port = {site.broker.port}\nusername = "{account.username}"\n'
        f'password = "{account.password.get_secret_value()}"\n'
        f"[http]\nport = {port}\nmax_body_bytes = {LIMIT}\n"
    )
    process = subprocess.Popen([sys.executable, "-m", "ruche", "server", "run", "--config",
                                str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30), "the API never came up"
        yield Server(process, port)
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _answer(sock: socket.socket) -> bytes:
    """Everything the server says until it hangs up (it closes after refusing)."""
    got = b""
    with sock:
        while chunk := sock.recv(4096):
            got += chunk
    return got


def post(length_header: str) -> str:
    return (f"POST /members HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"{length_header}\r\n\r\n")  # fmt: skip


class TestBodyLimit:
    def test_declared_length_over_the_limit_is_refused_before_the_body(self, server):
        started = time.monotonic()
        answer = _answer(server.raw(post(f"Content-Length: {32 * 1024 * 1024}")))
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert b"at most 65536 bytes" in answer
        assert time.monotonic() - started < 5, "answered without waiting for the body"
        assert server.refused("too_large") == 1

    def test_chunked_body_is_cut_off_past_the_limit(self, server):
        sock = server.raw(post("Transfer-Encoding: chunked"))
        chunk = b"x" * 16 * 1024
        sent = 0
        with sock:
            try:
                for _ in range(400):  # 6.4 MB, far more than the limit
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
            except OSError:
                pass  # the server hung up after its answer
            answer = sock.recv(4096)  # its status line, whatever else was lost
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert sent < 6 * 1024 * 1024, "the server stopped reading long before the end"
        assert server.refused("too_large") == 1

    def test_length_that_is_not_a_number(self, server):
        answer = _answer(server.raw(post("Content-Length: many")))
        assert answer.startswith(b"HTTP/1.1 400"), answer

    def test_under_the_limit_reaches_authentication(self, server):
        body = b'{"name": "Ada", "email": "ada@example.org"}'
        answer = httpx.post(f"http://127.0.0.1:{server.port}/members", content=body,
                            headers={"content-type": "application/json"}, timeout=5)  # fmt: skip
        assert answer.status_code == 401
        assert server.refused("too_large") == 0

    def test_memory_stays_flat_under_twenty_32_mb_bodies(self, server):
        with RssSampler(server.process.pid) as memory, BodyFlood("127.0.0.1", server.port, 20):
            pass
        assert server.refused("too_large") == 20
        grew = memory.max_mb - memory.first_mb
        assert grew < 30, f"the server grew by {grew:.0f} MB ({memory.first_mb} -> {memory.max_mb})"
