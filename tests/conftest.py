"""Fixtures shared by the whole suite, including one live demo stack per test session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from support import ROO, captured_bodies

from roogab.config import load_config
from roogab.demo import DemoChatService
from roogab.runtime import Running, start_demo


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
def demo(stack: Running) -> DemoChatService:
    """The live demo chat service, with an empty script and log."""
    assert stack.demo is not None
    stack.demo.reset()
    return stack.demo


@pytest.fixture
def client(stack: Running) -> openai.OpenAI:
    """The official OpenAI SDK pointed at the live stack."""
    return openai.OpenAI(base_url=stack.url + "/v1", api_key="anything", max_retries=0)


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
