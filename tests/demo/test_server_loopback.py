"""The demo chat service as a live server: HTTP helpers, concurrency, lifecycle."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from roogab.config import demo_profile
from roogab.demo import DemoChatService, ScriptedReply
from roogab.demo.server import Received, _Log
from roogab.errors import ConfigError
from roogab.providers.base import Deadlines, Delta, Done, ProviderEvent
from roogab.providers.loop import ProviderLoop
from roogab.providers.socketio_impl import MultiplexProvider

pytestmark = pytest.mark.loopback

QUICK = Deadlines(first_token=5, silence=5, total=20)


@pytest.fixture
def demo() -> Iterator[DemoChatService]:
    with DemoChatService([ScriptedReply("from the constructor")]) as service:
        yield service


@pytest.fixture
def provider(demo: DemoChatService) -> Iterator[MultiplexProvider]:
    loop = ProviderLoop()
    loop.start()
    p = MultiplexProvider(demo_profile(demo.url), loop, connect_timeout=2.0)
    try:
        p.start()
        yield p
    finally:
        p.close()
        loop.stop()


def http(url: str, body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def text_of(events: list[ProviderEvent | None]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def test_start_returns_a_loopback_url_on_a_free_port(demo: DemoChatService) -> None:
    assert demo.url.startswith("http://127.0.0.1:") and demo.port > 0
    assert demo.start() == demo.url  # idempotent
    assert http(demo.url + "/healthz") == (200, {"status": "ok", "conversations": 0, "script": 1,
                                                  "models": ["gab-1", "gab-2"]})


def test_busy_port_is_a_config_error(demo: DemoChatService) -> None:
    with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
        DemoChatService(port=demo.port).start()


def test_script_received_and_reset_over_http(demo: DemoChatService, provider: MultiplexProvider) -> None:
    assert http(demo.url + "/demo/script", [{"reply": "over http", "chunk": 100}]) == \
        (200, {"queued": 1, "script": 2})
    first = list(provider.send(None, "gab-1", "one", QUICK).events(0.1))
    handle = first[0].handle  # type: ignore[union-attr]
    assert text_of(first) == "from the constructor"
    assert text_of(list(provider.send(handle, "gab-1", "two", QUICK).events(0.1))) == "over http"
    status, received = http(demo.url + "/demo/received")
    assert status == 200
    prompts = [(r["event"], r["conversation"], r["prompt"]) for r in received if r["prompt"]]
    assert prompts == [("newConversation", handle, "one"), ("sendPrompt", handle, "two")]
    assert all(isinstance(r["time"], float) for r in received)
    assert http(demo.url + "/demo/reset", {}) == (200, {"status": "reset"})
    assert http(demo.url + "/demo/received") == (200, [])


def test_bad_script_over_http_is_a_400(demo: DemoChatService) -> None:
    status, body = http(demo.url + "/demo/script", [{"reply": "ok"}, {"chunk": 3}])
    assert status == 400 and "'reply' is required" in body["error"]
    status, body = http(demo.url + "/demo/script", {"reply": "not a list"})
    assert status == 400
    assert http(demo.url + "/healthz")[1]["script"] == 1  # nothing queued


def test_a_held_reply_waits_for_its_release(demo: DemoChatService, provider: MultiplexProvider) -> None:
    demo.reset()
    demo.push(ScriptedReply("abcdefghij", chunk=2, hold_after=2), ScriptedReply("next", hold_after=1))
    stream = provider.send(None, "gab-1", "hold it", QUICK).events(0.1)
    text = ""
    while len(text) < 4:
        event = next(stream)
        text += event.text if isinstance(event, Delta) else ""
    assert text == "abcd" and next(stream) is None  # held: nothing more comes, the tick passes
    assert http(demo.url + "/demo/release", {}) == (200, {"status": "released"})
    assert text + text_of(list(stream)) == "abcdefghij"
    demo.release()  # kept for the next held reply, which is held after its last chunk
    assert text_of(list(provider.send(None, "gab-1", "again", QUICK).events(0.1))) == "next"
    demo.release()
    demo.reset()  # takes back a release no held reply took
    demo.push(ScriptedReply("abcd", chunk=2, hold_after=2))  # held after its last chunk, before its end
    stream = provider.send(None, "gab-1", "hold the end", QUICK).events(0.1)
    text = ""
    while len(text) < 4:
        event = next(stream)
        text += event.text if isinstance(event, Delta) else ""
    assert next(stream) is None  # no Done: the end is held
    demo.release()
    assert [e for e in stream if e is not None and not isinstance(e, Delta)][-1].__class__ is Done


def test_conversations_are_served_concurrently(demo: DemoChatService, provider: MultiplexProvider) -> None:
    demo.reset()
    slow = ScriptedReply("abcdefghij", chunk=1, delay_ms=30)
    demo.push(slow, slow, slow)
    turns = [provider.send(None, "gab-1", f"p{i}", QUICK) for i in range(3)]
    order: list[tuple[int, object]] = []  # every event of the three turns, in arrival order
    lock = threading.Lock()

    def drain(i: int) -> None:
        for event in turns[i].events(0.1):
            with lock:
                order.append((i, event))

    readers = [threading.Thread(target=drain, args=(i,)) for i in range(3)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    results = [[e for j, e in order if j == i] for i in range(3)]
    assert all(text_of(r) == "abcdefghij" and isinstance(r[-1], Done) for r in results)
    first_done = next(n for n, (_, e) in enumerate(order) if isinstance(e, Done))
    started = {i for i, e in order[:first_done] if isinstance(e, Delta)}
    assert started == {0, 1, 2}, "each reply streamed before any finished: served concurrently"


def test_builtin_assistant_answers_when_the_script_is_empty(
        demo: DemoChatService, provider: MultiplexProvider) -> None:
    demo.reset()
    got = list(provider.send(None, "gab-1", "<task>Say hi</task>\nattempt_completion", QUICK).events(0.1))
    assert "[==[Done: Say hi]==]" in text_of(got)


def test_stop_frees_the_port() -> None:
    service = DemoChatService()
    service.start()
    port = service.port
    service.stop()
    service.stop()  # idempotent
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_the_received_log_keeps_the_newest_within_its_bounds() -> None:
    log = _Log((), kept=3, chars=10)
    for n in range(5):
        log.record(Received("c", "sendPrompt", f"p{n}", float(n)))
    assert [r.prompt for r in log.received()] == ["p2", "p3", "p4"]  # by count
    log.record(Received("c", "sendPrompt", "x" * 8, 5.0))
    assert [r.prompt for r in log.received()] == ["p4", "x" * 8]  # by characters: 2 + 8
    log.record(Received("c", "sendPrompt", "y" * 50, 6.0))
    assert [r.prompt for r in log.received()] == ["y" * 50]  # the newest stays, whatever its size
    log.record(Received(None, "connect", None, 7.0))
    log.reset()
    log.record(Received("c", "sendPrompt", "z" * 10, 8.0))
    assert [r.prompt for r in log.received()] == ["z" * 10]  # reset forgets the characters counted
