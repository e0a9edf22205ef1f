"""The plain-WebSocket kind through RooGab with the openai SDK, against a loopback JSON service
(Cheshire Cat 1.x frames) whose assistant answers in reply envelopes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import openai
import pytest
from aiohttp import WSMsgType, web
from providers.aiohttp_server import AiohttpServer
from support import no_keepalive

from roogab.config import ProviderProfile, load_config
from roogab.runtime import Running, start

pytestmark = pytest.mark.loopback

TOOL = {"type": "function", "function": {"name": "read_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}


class EnvelopeCat:
    """One conversation per connection; the first message gets a tool call, later ones text;
    while ``failing``, every message gets an error frame."""

    def __init__(self) -> None:
        self.prompts: list[list[str]] = []
        self.failing = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self.socket)
        return app

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seen: list[str] = []
        self.prompts.append(seen)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and self.failing:
                await ws.send_json({"type": "error", "description": "overloaded"})
            elif msg.type == WSMsgType.TEXT:
                seen.append(json.loads(msg.data)["text"])
                reply = ('```lua\nreturn { tool_calls = { { name = "read_file", arguments = { path = "a.py" } } } }\n```'
                         if len(seen) == 1 else '```lua\nreturn { text = [==[a.py prints hello]==] }\n```')
                for i in range(0, len(reply), 7):
                    await ws.send_json({"type": "chat_token", "content": reply[i:i + 7]})
                await ws.send_json({"type": "chat", "text": reply})
        return ws


@pytest.fixture
def cat() -> Iterator[tuple[EnvelopeCat, Running]]:
    service = EnvelopeCat()
    server = AiohttpServer(service.app())
    url = server.start()
    config = load_config(env={}, overrides={"port": 0, "store": "memory"})
    profile = ProviderProfile(name="cat", kind="websocket", url=url, models=("meow",))
    running = start(dataclasses.replace(config, providers=(profile,)))
    yield service, running
    running.close()
    server.stop()


def test_two_turns_over_one_websocket_conversation(cat: tuple[EnvelopeCat, Running]) -> None:
    service, running = cat
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, http_client=no_keepalive())
    first = {"model": "cat/meow", "tools": [TOOL], "messages": [{"role": "user", "content": "what does a.py do?"}]}
    [call] = client.chat.completions.create(**first).choices[0].message.tool_calls or []
    assert call.function.name == "read_file" and json.loads(call.function.arguments) == {"path": "a.py"}
    second = dict(first, messages=first["messages"] + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "read_file", "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "print('hello')"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**second) if c.choices)
    assert text == "a.py prints hello"
    [conversation] = [p for p in service.prompts if p]  # one connection served both turns (start() probes once)
    assert len(conversation) == 2 and "what does a.py do?" in conversation[0]
    assert conversation[1].startswith("### tool result (read_file") and "print('hello')" in conversation[1]


def _connections(running: Running) -> int:
    return len(running.providers["cat"]._connections)  # type: ignore[attr-defined]


def test_failed_and_expired_conversations_let_their_connections_go() -> None:
    """Each conversation is a connection and a reader thread: a failed turn's conversation is
    never continued, nor an expired one, so the provider is told to close them."""
    service = EnvelopeCat()
    server = AiohttpServer(service.app())
    url = server.start()
    config = load_config(env={}, overrides={"port": 0, "store": "memory", "idle_expiry": 1e-6})
    profile = ProviderProfile(name="cat", kind="websocket", url=url, models=("meow",))
    running = start(dataclasses.replace(config, providers=(profile,)))
    try:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, http_client=no_keepalive())
        for i in range(3):
            answer = client.chat.completions.create(model="cat/meow", messages=[{"role": "user", "content": f"task {i}"}])
            assert "<read_file>" in (answer.choices[0].message.content or "")  # an XML block: no tools sent
        assert _connections(running) == 3  # the service got the turns, each on its own connection
        service.failing = True
        for _ in range(3):
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(model="cat/meow", messages=[{"role": "user", "content": "failing task"}])
        assert _connections(running) == 3  # each failed try's connection was closed
        assert len(running.housekeeper.expire()) == 3
        assert _connections(running) == 0
    finally:
        running.close()
        server.stop()
