"""The provider loop: one asyncio event loop on one dedicated daemon thread.

Every Socket.IO client lives on this loop (design.md §1). Request threads never touch those
clients; they hand coroutines over with ``submit``/``run`` (``asyncio.run_coroutine_threadsafe``
underneath) and read replies from thread-safe ``Turn`` inboxes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["ProviderLoop"]

T = TypeVar("T")

from ..errors import ProviderUnavailable, UpstreamError
from .base import Pace, Turn

logger = logging.getLogger(__name__)


class ProviderLoop:
    """An asyncio event loop running on its own daemon thread until ``stop()``."""

    def __init__(self, name: str = "roogab-provider-loop", *, pace: float = 0.0) -> None:
        self.name = name
        self.pace = Pace(pace)  # for the turns of its providers (0: every piece at once)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._later: list[Callable[[], None]] = []

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        loop = self._loop
        return loop is not None and loop.is_running() and not loop.is_closed()

    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def start(self) -> None:
        """Start the thread and its event loop; a no-op when already running."""
        with self._lock:
            if self._thread is not None:
                return
            ready = threading.Event()
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(target=self._main, args=(loop, ready), name=self.name,
                                            daemon=True)
            self._thread.start()
        ready.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop, cancel leftover tasks and join the thread; idempotent."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._thread = None
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule *coro* on the loop from any thread; return its future.

        Raises:
            RuntimeError: the loop is not running (the coroutine is closed, never run).
        """
        loop = self._running_loop(coro)
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run *coro* on the loop and block until its result (for request threads).

        Raises:
            TimeoutError: no result within *timeout* seconds; the coroutine is cancelled.
            RuntimeError: the loop is not running, or this is the loop's own thread.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("ProviderLoop.run() called from the loop thread would deadlock")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout:g} s") from None

    def start_turn(self, turn: Turn, coro: Coroutine[Any, Any, None]) -> None:
        """Run the coroutine that starts *turn*, never blocking the caller. A stopped loop, a
        cancelled start or a bug in *coro* ends the turn with an error instead of leaving the
        request thread waiting for its deadline."""
        try:
            future = self.submit(coro)
        except RuntimeError:
            turn.put(ProviderUnavailable(f"{turn.provider}: the provider loop is not running",
                                         provider=turn.provider))
            return
        future.add_done_callback(functools.partial(_report_start, turn))

    def fire(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run *coro* without waiting for it; after ``stop()`` it is dropped (logged as *what*)."""
        try:
            self.submit(coro)
        except RuntimeError:
            logger.debug("%s after the provider loop stopped", what)

    def finish(self, coro: Coroutine[Any, Any, None], timeout: float, what: str) -> None:
        """Run *coro* and wait up to *timeout* s; a stopped loop or a timeout is logged, not raised
        (for ``close()`` methods, which must not fail)."""
        try:
            self.run(coro, timeout=timeout)
        except RuntimeError:
            logger.debug("%s after the provider loop stopped", what)
        except TimeoutError:
            logger.warning("%s did not finish within %g s", what, timeout)

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Call ``fn(*args)`` on the loop thread as soon as possible; safe from any thread.

        A call made after ``stop()`` is dropped silently: there is nothing left to act on.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # closed between the check and the call
            logger.debug("%s: call_soon after stop dropped", self.name)

    def coalesce(self, fn: Callable[[], None], delay: float = 0.0) -> None:
        """Call *fn* once the loop has run the callbacks it has ready now, or *delay* seconds from
        now (on the loop thread); from any other thread, call it at once. Turns use it to wake
        their reader once for all the events one busy loop iteration delivered, not once per
        event, and at most once per pace."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self.in_loop_thread():
            fn()
            return
        if delay > 0:
            loop.call_later(delay, fn)
            return
        if not self._later:
            loop.call_soon(self._run_later)
        self._later.append(fn)

    def _run_later(self) -> None:
        later, self._later = self._later, []
        for fn in later:
            fn()

    def _running_loop(self, coro: Coroutine[Any, Any, object]) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed() or self._thread is None:
            coro.close()
            raise RuntimeError(f"{self.name} is not running")
        return loop

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still pending on *loop* and let them finish their cleanup."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("task %s failed during shutdown", task.get_name(), exc_info=task.exception())


def _report_start(turn: Turn, future: concurrent.futures.Future[None]) -> None:
    """Done callback of a turn's start: a cancelled start or a bug must not leave it hanging."""
    if future.cancelled():
        turn.put(ProviderUnavailable(f"{turn.provider}: the provider loop stopped", provider=turn.provider))
        return
    exc = future.exception()
    if exc is not None:
        logger.error("%s: starting a turn failed", turn.provider, exc_info=exc)
        turn.put(UpstreamError(f"{turn.provider}: internal error ({type(exc).__name__})", provider=turn.provider))
