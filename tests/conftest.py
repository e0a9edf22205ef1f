"""Fixtures shared by the whole suite, including one live demo stack per test session."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from support import ROO, captured_bodies

from roogab.config import load_config
from roogab.demo import DemoChatService
from roogab.runtime import Running, start_demo

LAZY = {"roogab-turnlog", "roogab-housekeeper"}
"""Threads a session-scoped stack starts inside whichever test first uses it (the housekeeper
starts with the stack, the turn-log writer with the first turn logged)."""


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Each test stops the threads it started and closes its sockets (Flask's suite does the same).

    Threads get a moment to finish; a socket left open surfaces here as a ResourceWarning (an
    error, by the suite's filterwarnings) in the test that leaked it, not in a later one.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive() and t.name not in LAZY]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    gc.collect()
    assert not left, f"threads still running after the test: {[t.name for t in left]}"


@pytest.fixture
def roo_body() -> dict[str, Any]:
    """Roo Code v3.52.1's first streaming request."""
    return captured_bodies(ROO)[0]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """RooGab wired to the demo chat service, as `roogab demo` runs it, on free loopback ports,
    with its SQLite store in a temporary data directory."""
    data_dir = tmp_path_factory.mktemp("data")
    running = start_demo(load_config(env={}, overrides={"port": 0, "ping_interval": 0.2, "data_dir": str(data_dir)}))
    yield running
    running.close()


@pytest.fixture
def demo(stack: Running) -> Iterator[DemoChatService]:
    """The live demo chat service, with an empty script and log.

    A test's scripted replies must all be served: one left over means a turn the test meant for
    the chat service was answered elsewhere (the retry record, an error), and the test fails.
    """
    assert stack.demo is not None
    stack.demo.reset()
    yield stack.demo
    left = stack.demo.remaining()
    stack.demo.reset()
    assert left == 0, f"{left} scripted repl(ies) never reached the chat service"


@pytest.fixture
def client(stack: Running) -> Iterator[openai.OpenAI]:
    """The official OpenAI SDK pointed at the live stack (closed after the test)."""
    with openai.OpenAI(base_url=stack.url + "/v1", api_key="anything", max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="session")
def pg() -> Iterator[Any]:
    """A real PostgreSQL server for the session (see tests/pgserver.py)."""
    from pgserver import PgServer

    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
