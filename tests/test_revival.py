"""Services that come back: a chat service that is down when RooGab starts is retried in the
background (``revival.Revival``), shown as retrying in /healthz and /, advertises no placeholder
model meanwhile, and serves the next turn once it is up, without restarting RooGab."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest
from chainlit_server import PASSWORD, free_port, new_server
from support import no_keepalive

from roogab.config import ProviderProfile, load_config
from roogab.demo import DemoChatService
from roogab.errors import ProviderRejected, ProviderUnavailable
from roogab.providers.fake import FakeProvider
from roogab.revival import Revival
from roogab.runtime import Running, start


def _health(running: Running) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(running.url + "/healthz", timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def _index(running: Running) -> str:
    with urllib.request.urlopen(running.url + "/", timeout=10) as r:
        return str(r.read().decode())


def _start(profile: ProviderProfile) -> Running:
    config = load_config(env={}, overrides={"port": 0, "store": "memory", "retry_max_delay": 0.5,
                                            "connect_timeout": 3})
    return start(dataclasses.replace(config, providers=(profile,)))


class _Flaky(FakeProvider):
    """Unavailable for the first *failures* starts, then fine (or refused, with *refuse*)."""

    def __init__(self, failures: int, refuse: bool = False) -> None:
        super().__init__()
        self.failures, self.refuse, self.starts = failures, refuse, 0

    def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise ProviderUnavailable(f"down ({self.starts})", provider=self.name)
        if self.refuse:
            raise ProviderRejected("the login was refused", provider=self.name)


def test_retries_until_the_service_answers() -> None:
    revival = Revival(first_delay=0.001, max_delay=0.01)
    flaky = _Flaky(failures=4)
    revival.watch(flaky, "down (0)")
    assert revival.wait("fake", 30)
    state = revival.state("fake")
    assert state is not None and not state.retrying and state.attempts == 6 and flaky.starts == 5
    assert state.last_error == "down (4)"
    revival.close()


def test_a_refused_login_ends_the_retries() -> None:
    revival = Revival(first_delay=0.001, max_delay=0.01)
    flaky = _Flaky(failures=1, refuse=True)
    revival.watch(flaky, "down (0)")
    done = threading.Event()
    for _ in range(3000):
        state = revival.state("fake")
        if state is not None and not state.retrying:
            done.set()
            break
        done.wait(0.01)
    revival.close()
    assert done.is_set() and flaky.starts == 2
    state = revival.state("fake")
    assert state is not None and state.last_error == "the login was refused"
    assert not revival.wait("fake", 0)


def test_close_stops_the_retries() -> None:
    revival = Revival(first_delay=0.001, max_delay=0.01)
    flaky = _Flaky(failures=10**9)
    revival.watch(flaky, "down")
    revival.close()
    starts = flaky.starts
    assert not revival.wait("fake", 0.05) and flaky.starts == starts


@pytest.mark.loopback
def test_a_demo_service_down_at_start_serves_the_next_turn_once_up() -> None:
    port = free_port()
    running = _start(ProviderProfile(name="demo", kind="demo", url=f"http://127.0.0.1:{port}"))
    demo = DemoChatService(port=port)
    try:
        status, body = _health(running)
        assert status == 503 and body["providers"]["demo"]["retrying"] is True
        assert body["providers"]["demo"]["retry"]["attempts"] >= 1
        assert "demo is not ready (retrying in the background" in _index(running)
        demo.start()
        assert running.revival.wait("demo", 60)
        status, body = _health(running)
        assert status == 200 and body["providers"]["demo"]["retrying"] is False
        with openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0) as client:
            reply = client.chat.completions.create(model="demo/gab-1",
                                                   messages=[{"role": "user", "content": "back?"}])
        assert "back?" in (reply.choices[0].message.content or "")
        assert any(r.prompt and "back?" in r.prompt for r in demo.received)
    finally:
        running.close()
        demo.stop()


@pytest.mark.loopback
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("chainlit") is None, reason="chainlit is not installed")
def test_a_chainlit_app_down_at_start_comes_back_without_a_restart(tmp_path: Path) -> None:
    server = new_server(tmp_path)
    running = _start(ProviderProfile(name="team", kind="chainlit", url=server.url, models=(), username="alice",
                                     password=PASSWORD))
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, http_client=no_keepalive())
    try:
        assert client.models.list().data == []
        page = _index(running)
        assert "team/default" not in page and "No model is available yet" in page
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="team/Fast Lane", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 503 and "has not been reached yet" in str(caught.value)
        server.start()
        assert running.revival.wait("team", 120)
        assert [m.id for m in client.models.list()] == ["team/Fast Lane", "team/Deep Thought"]
        answer = client.chat.completions.create(
            model="team/Fast Lane", messages=[{"role": "user", "content": "are you back?"}]).choices[0].message
        assert re.search(r"profile=Fast Lane; messages=1", answer.content or "")
        assert "team/Fast Lane" in _index(running)
    finally:
        client.close()
        running.close()
        server.stop()
