"""The background thread that keeps the state layer tidy, off every request thread.

Every ``expiry_every`` seconds it forgets idle conversations (``Registry.expire_idle``) and tells
their providers to let them go (*release*); with
leases, every third of their ttl it renews this instance's leases (the heartbeat other instances
judge it alive by); with a token counter that lets its tables go when idle, it does so once they
are (``TokenCounter.release_if_idle``). The composition root starts it and stops it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import StoreError
from .leases import Leases
from .registry import Registry
from .usage import TokenCounter

__all__ = ["EXPIRY_EVERY", "Housekeeper"]

log = logging.getLogger(__name__)

EXPIRY_EVERY = 60.0


class Housekeeper:
    """Runs the registry's expiry and the leases' heartbeat on a thread of its own."""

    def __init__(self, registry: Registry, leases: Leases | None = None, *, tokens: TokenCounter | None = None,
                 release: Callable[[str, str], None] | None = None,
                 expiry_every: float = EXPIRY_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._release = release
        self._leases = leases
        self._tokens = tokens
        self._expiry_every = expiry_every
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="roogab-housekeeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        next_expiry = self._clock()
        next_beat = next_expiry if self._leases is not None else float("inf")
        while True:
            if self._leases is not None and self._clock() >= next_beat:
                self._guarded("renew leases", self._leases.renew)
                self.beats += 1
                next_beat = self._clock() + self._leases.settings.ttl / 3
            if self._clock() >= next_expiry:
                self._guarded("expire idle conversations", self.expire)
                next_expiry = self._clock() + self._expiry_every
            if self._tokens is not None:
                self._tokens.release_if_idle()
            now = self._clock()
            wait = min(max(next_beat - now, 0.0), max(next_expiry - now, 0.0), self._tokens_wait())
            if self._stop.wait(wait):
                return

    def expire(self) -> list[str]:
        """Forget the idle conversations now and let their providers release them (the thread
        does this every ``expiry_every`` seconds); their ids."""
        return self._registry.expire_idle(self._release)

    def _tokens_wait(self) -> float:
        """Seconds until the token counter's tables may be let go; at most its idle time while
        none are held, so tables loaded meanwhile are looked at soon enough."""
        tokens = self._tokens
        if tokens is None or tokens.idle_release <= 0:
            return float("inf")
        left = tokens.release_in()
        return tokens.idle_release if left is None else max(left, 0.0)

    @staticmethod
    def _guarded(what: str, job: Callable[[], object]) -> None:
        try:
            job()
        except StoreError as exc:
            log.warning("housekeeping: could not %s: %s", what, exc)
