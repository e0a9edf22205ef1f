"""Services that come back: a provider that could not be reached at start-up is started again in
the background, with exponential backoff and full jitter (the ``backoff`` package's wait
generators), until it answers or RooGab stops. No restart of RooGab is needed.

Only ``ProviderUnavailable`` (unreachable, not answering like the service) is retried; a refused
login (``ProviderRejected``) is a configuration problem that waiting does not fix, so it stays
reported in ``/healthz`` instead of hammering the login form.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import backoff

from .errors import ConfigError, ProviderUnavailable, UpstreamError
from .providers.base import Provider

__all__ = ["Revival", "RevivalState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RevivalState:
    """One provider's retries, as ``/healthz`` and ``/`` show them."""

    retrying: bool
    attempts: int
    next_attempt_in: float | None
    last_error: str | None


@dataclass
class _Watch:
    provider: Provider
    attempts: int = 0
    next_at: float | None = None
    last_error: str | None = None
    done: bool = False
    back: threading.Event | None = None
    thread: threading.Thread | None = None


class Revival:
    """The background retries of every provider that was down at start-up."""

    def __init__(self, *, first_delay: float = 1.0, max_delay: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._first = first_delay
        self._max = max_delay
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}

    def watch(self, provider: Provider, error: str) -> None:
        """Keep starting *provider* (whose start failed with *error*) until it succeeds."""
        watch = _Watch(provider, attempts=1, last_error=error, back=threading.Event())
        watch.thread = threading.Thread(target=self._run, args=(watch,), name=f"roogab-revive-{provider.name}",
                                        daemon=True)
        with self._lock:
            self._watches[provider.name] = watch
        watch.thread.start()

    def state(self, name: str) -> RevivalState | None:
        """The retries of provider *name*; None when it never needed any."""
        with self._lock:
            watch = self._watches.get(name)
            if watch is None:
                return None
            wait = None if watch.next_at is None else max(0.0, watch.next_at - self._clock())
            return RevivalState(not watch.done, watch.attempts, wait, watch.last_error)

    def wait(self, name: str, timeout: float) -> bool:
        """Wait until provider *name* has come back (True), or *timeout* seconds passed."""
        with self._lock:
            watch = self._watches.get(name)
        return watch is not None and watch.back is not None and watch.back.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop retrying; waits a little for an attempt in progress."""
        self._stop.set()
        with self._lock:
            threads = [w.thread for w in self._watches.values() if w.thread is not None]
        for thread in threads:
            thread.join(timeout)

    def _run(self, watch: _Watch) -> None:
        delays = backoff.expo(factor=self._first, max_value=self._max)
        delays.send(None)  # prime the generator, as the backoff decorators do
        name = watch.provider.name
        while True:
            delay = backoff.full_jitter(next(delays))
            with self._lock:
                watch.next_at = self._clock() + delay
            if self._stop.wait(delay):
                return
            with self._lock:
                watch.attempts += 1
                watch.next_at = None
            try:
                watch.provider.start()
            except ProviderUnavailable as exc:
                with self._lock:
                    watch.last_error = str(exc)
                log.info("%s is still unavailable (attempt %d): %s", name, watch.attempts, exc)
                continue
            except (UpstreamError, ConfigError) as exc:  # a refused login, a bad cookie file: health says why
                with self._lock:
                    watch.last_error, watch.done = str(exc), True
                log.error("%s: giving up retrying: %s", name, exc)
                return
            with self._lock:
                watch.done = True
            assert watch.back is not None
            watch.back.set()
            log.info("%s is back after %d attempts", name, watch.attempts)
            return
