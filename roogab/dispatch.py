"""waitress's task dispatcher, waking the worker thread that went idle last rather than first.

waitress hands each request to an idle worker thread by notifying a ``threading.Condition``,
which wakes the thread that has waited longest. Requests that come one after another therefore
rotate through every worker (RooGab runs 64: one per open stream), and each thread that has run
a request keeps memory of its own: glibc's per-thread cache of freed chunks (tcache), its touched
stack pages, tiktoken's per-thread regex state (when tiktoken counted). After 100 sequential turns that was about 3 MiB of
``roogab serve``'s RSS (bench/bench_memory.py; ``threads = 4`` or tcache disabled showed the same).
Waking the most recently idle thread instead keeps the same few threads busy while traffic is
light; under load every thread still works, since a task goes to any idle one.

The only part of waitress this touches is the dispatcher's ``queue_cv``, the condition its
worker threads wait on (``wait``) and ``add_task``/``set_thread_count``/``shutdown`` notify
(``notify``, ``notify_all``), always with the dispatcher's ``lock`` held. If a waitress release
no longer has it, :func:`dispatcher` returns the plain dispatcher (and a test notices).
"""

from __future__ import annotations

import threading

from waitress.task import ThreadedTaskDispatcher

__all__ = ["LastIdleFirst", "dispatcher"]


class LastIdleFirst:
    """A condition on *lock* whose ``notify`` wakes the newest waiter first (a stack, not a queue).

    The subset of ``threading.Condition`` waitress's dispatcher uses: ``wait()`` without a timeout
    (its callers loop on their predicate, so a wake-up is only a hint), ``notify`` and
    ``notify_all``; all called with *lock* held.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._waiters: list[threading.Lock] = []

    def wait(self) -> None:
        """Release the lock, sleep until notified, take the lock again."""
        waiter = threading.Lock()
        waiter.acquire()
        self._waiters.append(waiter)
        self._lock.release()
        try:
            waiter.acquire()
        finally:
            self._lock.acquire()

    def notify(self, n: int = 1) -> None:
        """Wake up to *n* waiting threads, the most recent first."""
        for _ in range(min(n, len(self._waiters))):
            self._waiters.pop().release()

    def notify_all(self) -> None:
        """Wake every waiting thread."""
        self.notify(len(self._waiters))


def dispatcher() -> ThreadedTaskDispatcher:
    """waitress's dispatcher, its idle workers woken last-idle-first (see the module docstring)."""
    tasks = ThreadedTaskDispatcher()
    if isinstance(getattr(tasks, "queue_cv", None), threading.Condition) and not tasks.threads:
        tasks.queue_cv = LastIdleFirst(tasks.lock)
    return tasks
