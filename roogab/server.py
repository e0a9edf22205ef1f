"""The HTTP server: waitress, started and stopped in one place (the only waitress importer).

Waitress is hardened here against clients that hold connections without finishing a request:
the request body limit is the configured ``max_body_bytes`` (waitress refuses a larger declared
body before reading it); a request whose headers and body are not all in after
``read_timeout`` seconds is dropped, and so is a connection idle for ``idle_timeout``; and when
every connection slot is taken a new client gets a quick 503 instead of waiting unanswered in
the listen backlog. Waitress's own error answers (400, 413, 431, 501 ...) are error JSON in the
shape of the protocol the request's path is served by (OpenAI's, or Anthropic's under
``/v1/messages``).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

from flask import Flask
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

from .dispatch import dispatcher
from .errors import ConfigError, RequestError, RooGabError
from .protocols import protocol_for

__all__ = ["Server", "bind_sockets"]

log = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.2
READ_TIMEOUT_SECONDS = 30.0   # headers and body of one request must be in by then
IDLE_TIMEOUT_SECONDS = 60     # a keep-alive connection with no request is closed after this
CHECK_SECONDS = 1             # how often slow and idle connections are looked for


def _error_json(code: int, reason: str, detail: str, path: str = "") -> bytes:
    """Waitress's error *code* as the error body of the protocol served at *path* (OpenAI's when
    the request line was never read)."""
    message = f"{reason}: {detail}" if detail else reason
    name = reason.lower().replace(" ", "_")
    if code == 413:  # as the app says it (errors.PayloadTooLarge)
        message, name = f"the request body is larger than max_body_bytes ({detail})", "request_too_large"
    error = (RequestError if code < 500 else RooGabError)(message, code=name)
    error.status = code
    _, body = protocol_for(path).error(error)
    return json.dumps(body).encode()


class _JsonErrorTask(ErrorTask):  # type: ignore[misc]
    """Waitress's own error answers, as OpenAI error JSON instead of plain text."""

    def execute(self) -> None:
        error = self.request.error
        body = _error_json(error.code, error.reason, str(error.body), getattr(self.request, "path", "") or "")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):  # type: ignore[misc]
    """An HTTP connection that notes when the request it is reading began."""

    error_task_class = _JsonErrorTask
    reading: object = None        # the request parser being filled
    reading_since = 0.0

    def received(self, data: bytes) -> bool:
        result: bool = super().received(data)
        if self.request is not None and self.request is not self.reading:
            self.reading, self.reading_since = self.request, time.monotonic()
        return result


class _Listener(TcpWSGIServer):  # type: ignore[misc]
    """A waitress listener that answers 503 when full and drops slow requests."""

    channel_class = _Channel
    read_timeout = READ_TIMEOUT_SECONDS

    def readable(self) -> bool:
        super().readable()  # runs maintenance; its "stop accepting when full" is replaced below
        return bool(self.accepting)

    def handle_accept(self) -> None:
        if len(self.active_channels) < self.adj.connection_limit:
            super().handle_accept()
            return
        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is not None:
            _refuse(accepted[0])

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        cutoff = time.monotonic() - self.read_timeout
        for channel in list(self.active_channels.values()):
            request = channel.request
            if request is not None and request is channel.reading and not request.completed \
                    and channel.reading_since < cutoff:
                log.info("closing a connection from %s: its request was not in after %.0f s",
                         channel.addr[0] if channel.addr else "?", self.read_timeout)
                channel.will_close = True  # closed by the loop once it polls again (never mid-poll)


def _refuse(conn: socket.socket) -> None:
    """Answer a connection over the limit with a 503 at once, and close it."""
    body = _error_json(503, "Service Unavailable", "too many open connections; retry shortly")
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
    try:
        conn.setblocking(False)
        conn.send(head + body)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(65536)  # what the client sent, so that closing does not reset the connection
    except OSError:
        pass
    finally:
        conn.close()


def bind_sockets(host: str, port: int, backlog: int = 1024) -> list[socket.socket]:
    """Listening sockets for *host*:*port*, resolved as waitress resolves them (one per address
    family of *host*; port 0 picks a free port, the same for each): the parent of several worker
    processes binds once, and every worker serves these sockets (``Server(sockets=...)``).

    Raises:
        ConfigError: the address cannot be listened on (in use, not local, no permission).
    """
    try:
        wanted = Adjustments(host=host, port=port).listen
    except ValueError as exc:
        raise ConfigError("host", f"cannot listen on {host}:{port}: {exc}") from exc
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, address in wanted:
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], bound[0].getsockname()[1] if len(bound) > 1 else address[1],
                       *address[2:]))
            sock.listen(backlog)
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise ConfigError("port", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return bound


class Server:
    """A waitress server for *app* on *host*:*port* (0 picks a free port), or on the already
    listening *sockets* (several worker processes sharing them).

    Raises:
        ConfigError: the address cannot be listened on (in use, not local, no permission).
    """

    def __init__(self, app: Flask, host: str, port: int, *, threads: int = 64,
                 max_body_bytes: int = 32 * 1024 * 1024, read_timeout: float = READ_TIMEOUT_SECONDS,
                 idle_timeout: int = IDLE_TIMEOUT_SECONDS, sockets: list[socket.socket] | None = None) -> None:
        self._map: dict[int, object] = {}
        where: dict[str, Any] = {"sockets": sockets} if sockets else {"host": host, "port": port}
        settings: dict[str, Any] = {
            **where, "threads": threads, "ident": "roogab",
            # waitress's default of 100 counts its own sockets too; every open stream needs one
            "connection_limit": max(100, threads + 32),
            "clear_untrusted_proxy_headers": True, "channel_timeout": idle_timeout,
            "cleanup_interval": CHECK_SECONDS, "max_request_body_size": max_body_bytes,
        }
        try:
            adj = Adjustments(**settings)
            self._dispatcher = dispatcher()  # idle workers woken last-idle-first: see dispatch.py
            self._dispatcher.set_thread_count(threads)
            self._listeners = [_Listener(app, self._map, dispatcher=self._dispatcher, adj=adj, sockinfo=info)
                               for info in adj.listen] if not sockets else [
                _Listener(app, self._map, _sock=sock, dispatcher=self._dispatcher, adj=adj, bind_socket=False,
                          sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))
                for sock in sockets]
        except OSError as exc:
            raise ConfigError("port", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        for listener in self._listeners:
            listener.read_timeout = read_timeout
        self.host = host
        self.port = int(self._listeners[0].effective_port)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        """The base URL clients use."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve until ``close()``; then close every connection, from this (the loop's) thread."""
        try:
            while not self._stopping.is_set():
                # One poll at a time, so a stop request is seen within STOP_POLL_SECONDS. Output
                # is not delayed: waitress wakes the poll through its trigger when a worker writes.
                wasyncore.loop(timeout=STOP_POLL_SECONDS, map=self._map, count=1)
        finally:
            wasyncore.close_all(self._map)

    def start(self) -> None:
        """Serve on a background thread (tests, embedding)."""
        self._thread = threading.Thread(target=self.serve_forever, name="roogab-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving: the loop thread closes every connection and the listener (no other
        thread touches its descriptors), then the worker threads stop."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        else:
            wasyncore.close_all(self._map)
        self._dispatcher.shutdown(timeout=3)
