"""The worker threads waitress wakes: the one that went idle last (roogab/dispatch.py), through a
real waitress server on loopback, and the condition itself."""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from waitress.task import ThreadedTaskDispatcher

from roogab.dispatch import LastIdleFirst, dispatcher
from roogab.server import Server


def _app() -> Flask:
    app = Flask(__name__)

    @app.get("/who")
    def who() -> str:
        return threading.current_thread().name

    return app


def _get(port: int, path: str = "/who") -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_the_boundary_took_waitress_dispatcher_has_the_last_idle_first_condition() -> None:
    # Fails if a waitress release renames or reshapes the condition its workers wait on.
    assert isinstance(dispatcher().queue_cv, LastIdleFirst)


class _Task:
    """What waitress's dispatcher runs: ``service()`` (and ``cancel()`` on shutdown)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.done = threading.Event()

    def service(self) -> None:
        self.names.append(threading.current_thread().name)
        self.done.set()

    def cancel(self) -> None:
        self.done.set()


def _all_idle(tasks: ThreadedTaskDispatcher) -> None:
    """Wait until every worker is back in ``wait()`` (it holds the lock until wait releases it)."""
    for _ in range(30_000):
        with tasks.lock:
            if tasks.active_count == 0:
                return
        time.sleep(0.001)
    raise AssertionError("the workers did not go idle")


def _workers_used(tasks: ThreadedTaskDispatcher, count: int) -> set[str]:
    names: list[str] = []
    tasks.set_thread_count(8)
    try:
        for _ in range(count):
            _all_idle(tasks)
            task = _Task(names)
            tasks.add_task(task)
            assert task.done.wait(30)
    finally:
        tasks.shutdown()
    return set(names)


def test_one_task_at_a_time_goes_to_the_worker_that_went_idle_last() -> None:
    assert len(_workers_used(dispatcher(), 24)) == 1
    assert len(_workers_used(ThreadedTaskDispatcher(), 24)) == 8  # waitress's own: round the pool


def test_concurrent_requests_still_spread_over_the_threads() -> None:
    gate = threading.Barrier(4, timeout=30)
    app = _app()

    @app.get("/together")
    def together() -> str:
        gate.wait()  # four requests held at once: four workers must be running
        return threading.current_thread().name

    server = Server(app, "127.0.0.1", 0, threads=8)
    server.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            names = set(pool.map(lambda _: _get(server.port, "/together"), range(4)))
    finally:
        server.close()
    assert len(names) == 4


def test_notify_wakes_the_newest_waiter_and_notify_all_the_rest() -> None:
    lock = threading.Lock()
    cond = LastIdleFirst(lock)
    woken: list[int] = []
    waiting = threading.Semaphore(0)

    def waiter(n: int) -> None:
        with lock:
            waiting.release()
            cond.wait()
            woken.append(n)

    threads = []
    for n in range(3):
        t = threading.Thread(target=waiter, args=(n,))
        t.start()
        threads.append(t)
        assert waiting.acquire(timeout=30)
        with lock:  # the waiter holds the lock until wait() releases it: now it is waiting
            pass
    with lock:
        cond.notify()
    threads[2].join(30)
    assert woken == [2]
    with lock:
        cond.notify_all()
    for t in threads:
        t.join(30)
    assert sorted(woken) == [0, 1, 2] and woken[0] == 2
