"""Pacing one chat service: a bound on concurrent turns (a queue, never a refusal) and a minimum
interval between two messages sent to it, so an agent's fast loop does not hammer a personal
account (``max_concurrent_turns``, ``min_interval`` in a provider's profile).

Waiting is done in ticks: ``Pacer.admit`` and ``Pacer.space`` are generators that yield ``None``
after each tick spent waiting, so the caller can keep its client's stream alive; closing one
while it waits gives its place up. No IO; the clock and the way to wait are injectable.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["PaceState", "Pacer"]


@dataclass(frozen=True)
class PaceState:
    """What ``/healthz`` shows: turns running and waiting, and the limits in force (0 = none)."""

    running: int
    queued: int
    max_concurrent_turns: int
    min_interval: float


class Pacer:
    """The turn slots and the send spacing of one provider; safe across request threads."""

    def __init__(self, min_interval: float = 0.0, max_concurrent: int = 0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval = min_interval
        self.max_concurrent = max_concurrent
        self._clock = clock
        self._cond = threading.Condition()
        self._running = 0
        self._queue: deque[object] = deque()
        self._next_send = float("-inf")

    def state(self) -> PaceState:
        """A snapshot of the slots and the queue."""
        with self._cond:
            return PaceState(self._running, len(self._queue), self.max_concurrent, self.min_interval)

    def admit(self, tick: float) -> Iterator[None]:
        """Take a turn slot, waiting in line (first come, first served) while all are taken.

        Yields ``None`` after each *tick* of waiting. Once it returns, the caller holds a slot
        and must give it back with ``leave()``; closed before that, it holds none.
        """
        ticket = object()
        admitted = False
        with self._cond:
            self._queue.append(ticket)
        try:
            while True:
                with self._cond:
                    admitted = self._try_enter(ticket)
                    if not admitted:
                        self._cond.wait(tick)
                        admitted = self._try_enter(ticket)
                if admitted:
                    return
                yield None
        finally:
            if not admitted:
                with self._cond:
                    self._queue.remove(ticket)
                    self._cond.notify_all()

    def leave(self) -> None:
        """Give a slot back (the turn ended, whatever its outcome)."""
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def space(self, tick: float, wait: Callable[[float], object] | None = None) -> Iterator[None]:
        """Wait until ``min_interval`` has passed since the previous message, then claim the send.

        Yields ``None`` after each wait of at most *tick* seconds. *wait* (default: sleep on the
        pacer's condition) is how a test lets its own clock move.
        """
        while True:
            with self._cond:
                now = self._clock()
                if now >= self._next_send:
                    self._next_send = now + self.min_interval
                    return
                delay = min(tick, self._next_send - now)
                if wait is None:
                    self._cond.wait(delay)
            if wait is not None:
                wait(delay)
            yield None

    def _try_enter(self, ticket: object) -> bool:
        """Enter when *ticket* is first in line and a slot is free (called holding the lock)."""
        free = self.max_concurrent <= 0 or self._running < self.max_concurrent
        if free and self._queue and self._queue[0] is ticket:
            self._queue.popleft()
            self._running += 1
            self._cond.notify_all()
            return True
        return False
