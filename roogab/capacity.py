"""How many turns may wait at once: the rest of the HTTP threads stay free for health and inspection.

Every turn holds a waitress worker thread until it ends, and a stream waits as long as its chat
service is silent. Without a bound, streams waiting on one silent service take every thread and
``/healthz`` waits behind them. ``TurnGate`` admits at most ``total`` turns at once, and at most
``per_provider`` on any one provider; a turn over either bound is refused at once with a 503
(``ServerBusy``) that the agent retries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ServerBusy

__all__ = ["STATUS_THREADS", "TurnGate", "turn_capacity"]

STATUS_THREADS = 4  # worker threads turns never take: /healthz, /v1/models, the inspector


def turn_capacity(threads: int) -> int:
    """How many of *threads* turns may hold at once."""
    return max(1, threads - min(STATUS_THREADS, threads // 2))


class TurnGate:
    """Counts the turns in progress, in total and per provider; thread-safe."""

    def __init__(self, total: int, per_provider: int = 0) -> None:
        self.total = total
        self.per_provider = per_provider or total
        self._lock = threading.Lock()
        self._running = 0
        self._by_provider: dict[str, int] = {}

    @contextmanager
    def turn(self, provider: str) -> Iterator[None]:
        """Hold a place for one turn on *provider* for the duration of the ``with`` block.

        Raises:
            ServerBusy: the server or *provider* already runs as many turns as allowed.
        """
        with self._lock:
            if self._running >= self.total:
                raise ServerBusy(f"RooGab is running {self._running} turns, its limit; retry shortly")
            held = self._by_provider.get(provider, 0)
            if held >= self.per_provider:
                raise ServerBusy(f"{held} turns are already waiting on {provider}, its limit; retry shortly")
            self._running += 1
            self._by_provider[provider] = held + 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                self._by_provider[provider] -= 1

    def running(self) -> int:
        """Turns in progress now."""
        with self._lock:
            return self._running
