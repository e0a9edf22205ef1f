"""The creates a multiplexed Socket.IO provider has sent and not seen answered (its loop only).

A service that answers a create with the create's ref is matched by ref; one that answers
without it (providers.md §6) only while a single create is pending, so until a service has been
seen to echo a ref its creates go one at a time (``wait_turn``). Each pending create has a
timer that gives it up at its deadline; an answer, a drop or the connection's end cancels it (an
uncancelled timer would keep the turn, its prompt and its frames alive until the deadline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["Creates"]


class _Pending(Protocol):
    @property
    def ref(self) -> str: ...


F = TypeVar("F", bound=_Pending)


class Creates(Generic[F]):
    """The creates sent and not yet answered, by ref (loop thread only).

    A create whose request went away stays until its answer comes (that conversation is then
    deleted again) or until the provider gives it up at its deadline (and, for a service without
    refs, starts the connection over), so an answer without a ref is never taken for another
    create's.
    """

    def __init__(self) -> None:
        self.echoes_ref: bool | None = None  # does the service answer with the ref? None: not seen yet
        self._by_ref: dict[str, tuple[F, asyncio.TimerHandle]] = {}  # each create, and its give-up timer
        self._vacant: asyncio.Event | None = None  # set while nothing is pending

    def __len__(self) -> int:
        return len(self._by_ref)

    def add(self, flight: F, limit: float, expire: Callable[[F, float], None]) -> None:
        """*flight*'s create is sent; ``expire(flight, limit)`` runs in *limit* s unless it is
        answered, dropped or taken before."""
        timer = asyncio.get_running_loop().call_later(limit, expire, flight, limit)
        self._by_ref[flight.ref] = (flight, timer)
        if self._vacant is not None:
            self._vacant.clear()

    def pop(self, ref: str) -> F | None:
        found = self._by_ref.pop(ref, None)
        self._note_vacancy()
        if found is None:
            return None
        flight, timer = found
        timer.cancel()
        return flight

    def only(self) -> F | None:
        """An answer without a ref matches only when exactly one create is pending."""
        if len(self._by_ref) != 1:
            return None
        return self.pop(next(iter(self._by_ref)))

    def pending(self, flight: F) -> bool:
        found = self._by_ref.get(flight.ref)
        return found is not None and found[0] is flight

    def drop(self, flight: F) -> bool:
        """Forget *flight*'s create; True if it was pending."""
        if not self.pending(flight):
            return False
        self.pop(flight.ref)
        return True

    def take_all(self) -> list[F]:
        taken, self._by_ref = list(self._by_ref.values()), {}
        for _, timer in taken:
            timer.cancel()
        self._note_vacancy()
        return [flight for flight, _ in taken]

    async def wait_turn(self, limit: float) -> None:
        """Unless the service is known to echo refs: wait (at most *limit* s) until no other
        create is pending, so that an answer without a ref can only be this one's."""
        loop = asyncio.get_running_loop()
        until = loop.time() + limit
        while self.echoes_ref is not True and self._by_ref and loop.time() < until:  # several may wake at once
            if self._vacant is None:
                self._vacant = asyncio.Event()
            self._vacant.clear()
            try:
                await asyncio.wait_for(self._vacant.wait(), until - loop.time())
            except asyncio.TimeoutError:
                return  # the pending ones are given up by now (expire); matching stays strict anyway

    def _note_vacancy(self) -> None:
        if not self._by_ref and self._vacant is not None:
            self._vacant.set()
