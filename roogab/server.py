"""The HTTP server: waitress, started and stopped in one place (the only waitress importer)."""

from __future__ import annotations

import logging
import threading

import waitress
from flask import Flask
from waitress import wasyncore

from .errors import ConfigError

__all__ = ["Server"]

log = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.2


class Server:
    """A waitress server for *app* on *host*:*port* (0 picks a free port).

    Raises:
        ConfigError: the address cannot be listened on (in use, not local, no permission).
    """

    def __init__(self, app: Flask, host: str, port: int, *, threads: int = 64) -> None:
        self._map: dict[int, object] = {}
        try:
            self._server = waitress.create_server(
                app, map=self._map, host=host, port=port, threads=threads, ident="roogab",
                # waitress's default of 100 counts its own sockets too; every open stream needs one
                connection_limit=max(100, threads + 32),
                clear_untrusted_proxy_headers=True, channel_timeout=300)
        except OSError as exc:
            raise ConfigError("port", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.host = host
        self.port = int(self._server.effective_port)
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
        self._server.task_dispatcher.shutdown(timeout=3)
