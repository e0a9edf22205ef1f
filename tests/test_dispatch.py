"""The worker threads waitress wakes: the one that went idle last (roogab/dispatch.py), through a
real waitress server on loopback, and the condition itself."""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

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


def test_sequential_requests_reuse_at_most_two_of_sixteen_threads() -> None:
    # One request in flight at a time: the next one wakes the newest idle worker, which is the
    # one that served the last request or, if that one is not back yet, the one before it.
    server = Server(_app(), "127.0.0.1", 0, threads=16)
    server.start()
    try:
        names = {_get(server.port) for _ in range(40)}
    finally:
        server.close()
    assert 1 <= len(names) <= 2, names  # waitress's own dispatcher rotates through all 16


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
