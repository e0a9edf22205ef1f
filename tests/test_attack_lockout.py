"""Lockouts over raw sockets (issue 13, items 4, 5, 11 and waitress's own errors).

Clients that open connections and never finish a request, or that trickle a header line now
and then; streams held by a silent chat service; a declared 900 MB body; requests waitress
itself refuses. Real waitress servers on loopback; socket timeouts are only a safety net that
turns a hang into a failure, never a timing assertion.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from roogab.config import load_config
from roogab.demo import ScriptedReply
from roogab.runtime import Running, start_demo
from roogab.server import Server

pytestmark = pytest.mark.loopback

SAFETY = 30.0  # seconds before a socket read counts as a hang


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SAFETY)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, Any] | None]:
    """Read one whole answer (the server closes or sends Content-Length); status and JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.strip().startswith(b"{") else None


def _get(port: int, path: str = "/healthz") -> tuple[int, dict[str, Any] | None]:
    with _connect(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return _answer(sock)


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def strict_server(stack: Running) -> Iterator[Server]:
    """A second waitress server on the session stack's app, with short read and idle timeouts."""
    server = Server(stack.app, "127.0.0.1", 0, threads=4, max_body_bytes=1024 * 1024, read_timeout=1.0,
                    idle_timeout=1)
    server.start()
    yield server
    server.close()


def test_a_full_house_of_idle_connections_gets_a_quick_503_not_a_hang(stack: Running) -> None:
    server = Server(stack.app, "127.0.0.1", 0, threads=4)  # connection_limit 100, default timeouts
    server.start()
    idle = []
    try:
        for _ in range(120):  # more than the limit: the old server stopped accepting at ~99
            idle.append(_connect(server.port))
        status, body = _get(server.port)  # the old server left this in the backlog
        assert status == 503 and body is not None and body["error"]["type"] == "server_error"
        for sock in idle[:30]:
            sock.close()
        for _ in range(50):  # slots free again: /healthz is served once the loop saw the closes
            status, body = _get(server.port)
            if status == 200:
                break
        assert status == 200 and body is not None and body["status"] == "ok"
    finally:
        for sock in idle:
            sock.close()
        server.close()


def test_a_request_trickling_its_headers_is_dropped(strict_server: Server) -> None:
    with _connect(strict_server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        for i in range(200):  # one header line at a time, as a slow-loris client does
            try:
                sock.sendall(f"X-Slow-{i}: 1\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.2)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
        assert closed, "the server kept a request whose headers never ended"
    assert _get(strict_server.port)[0] == 200


def test_an_idle_connection_is_closed(strict_server: Server) -> None:
    with _connect(strict_server.port) as sock:
        assert _closed_by_server(sock)


def test_a_declared_900_mb_body_is_refused_before_it_is_sent(strict_server: Server) -> None:
    with _connect(strict_server.port) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 943718400\r\n\r\n{")
        status, body = _answer(sock)  # the old server read (or waited for) all 900 MB first
    assert status == 413 and body is not None and body["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(("raw", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n", 431),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n", 400),
])
def test_waitress_own_errors_are_openai_error_json(strict_server: Server, raw: bytes, status: int) -> None:
    with _connect(strict_server.port) as sock:
        sock.sendall(raw)
        got, body = _answer(sock)
    assert got == status
    assert body is not None and set(body["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(("raw", "status", "kind"), [
    (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 943718400\r\n\r\n{", 413,
     "request_too_large"),
    (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "api_error"),
    (b"POST /messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n", 400, "invalid_request_error"),
])
def test_waitress_own_errors_on_messages_are_anthropic_error_json(
        strict_server: Server, raw: bytes, status: int, kind: str) -> None:
    """Claude Code reads Anthropic's error shape; the route's protocol decides, as in the app."""
    with _connect(strict_server.port) as sock:
        sock.sendall(raw)
        got, body = _answer(sock)
    assert got == status
    assert body is not None and body["type"] == "error" and body["error"]["type"] == kind, body
    assert set(body["error"]) == {"type", "message"}


# -- item 5: streams held by a silent service -------------------------------------------------------

@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """RooGab with 8 worker threads (4 for turns, 4 kept for status) on the demo service."""
    config = load_config(env={}, overrides={"port": 0, "threads": 8, "store": "memory", "ping_interval": 0.2,
                                            "first_token_timeout": 600})
    running = start_demo(config)
    yield running
    running.close()


def _open_stream(port: int, text: str) -> socket.socket:
    body = json.dumps({"model": "demo/gab-1", "stream": True, "messages": [{"role": "user", "content": text}]})
    sock = _connect(port)
    sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    return sock


def test_held_streams_leave_health_and_inspection_answerable(small_stack: Running) -> None:
    assert small_stack.demo is not None
    small_stack.demo.reset()
    small_stack.demo.push(*[ScriptedReply(silent=True) for _ in range(6)])
    streams = [_open_stream(small_stack.server.port, f"held {i} {time.time_ns()}") for i in range(4)]
    try:
        for sock in streams:  # each stream has begun (its status line came): it holds a thread
            assert sock.recv(12).startswith(b"HTTP/1.1 200")
        with _open_stream(small_stack.server.port, "one too many") as extra:
            status, body = _answer(extra)
        assert status == 503 and body is not None and body["error"]["code"] == "server_busy"
        for path in ("/healthz", "/v1/models", "/inspect/turns.json"):  # 16.9 s before, or never
            assert _get(small_stack.server.port, path)[0] == 200
        prompts = [r.prompt for r in small_stack.demo.received if r.prompt]
        assert sum(1 for p in prompts if "held " in p) == 4 and not any("one too many" in p for p in prompts)
    finally:
        for sock in streams:
            sock.close()
