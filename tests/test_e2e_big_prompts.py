"""Big prompts through RooGab with the openai SDK, on the live demo service: split into parts the
model acknowledges (the acknowledgements never reach the agent), refused before sending when
even the parts would not do (a 400 naming size and limit), and never at a bystander's expense
on the shared Socket.IO connection (issue 13, item 12)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from support import FIXTURES, ROO, as_demo_model, captured_bodies, no_keepalive

from roogab.config import ProviderProfile, load_config
from roogab.demo import DemoChatService, ScriptedReply
from roogab.prompt import PromptBook
from roogab.runtime import Running, start_demo
from roogab.wire import parse_chat_request

pytestmark = pytest.mark.loopback

BOOK = PromptBook.load()
CLAUDE = "claude_code_2.1.332_main_four_turns.json"
PART = re.compile(r"\A\[Part (\d+) of (\d+)[^\n]*\]\n\n")
CALL = ('```lua\nreturn {\n  text = [==[Reading it.]==],\n  tool_calls = {\n'
        '    { name = "read_file", arguments = { path = "src/app.py" } },\n  },\n}\n```')
ANSWER = '```lua\nreturn { text = [==[The answer, after all the parts.]==] }\n```'


def _stack(**profile: Any) -> Running:
    config = load_config(env={}, overrides={"port": 0, "store": "memory", "ping_interval": 0.2})
    return start_demo(dataclasses.replace(config, providers=(ProviderProfile(**profile),)))


@pytest.fixture(scope="module")
def small() -> Iterator[Running]:
    """The demo with a 6 000-character message limit and at most 12 parts."""
    running = _stack(max_message_chars=6000, max_parts=12)
    yield running
    running.close()


def _demo(running: Running) -> DemoChatService:
    assert running.demo is not None
    running.demo.reset()
    return running.demo


def _client(running: Running) -> openai.OpenAI:
    """An SDK client for *running*, closed after the test (no socket left to the collector)."""
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, http_client=no_keepalive())
    OPEN.append(client)
    return client


OPEN: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def claude_code_as_chat() -> dict[str, Any]:
    """Claude Code's first request (Anthropic Messages, 50 KB) as the same Chat Completions request."""
    data = json.loads((FIXTURES / "captured" / CLAUDE).read_text("utf-8"))
    body = data["requests"][0]["body"]
    messages = [{"role": "system", "content": "\n\n".join(b["text"] for b in body["system"])}]
    for m in body["messages"]:
        text = m["content"] if isinstance(m["content"], str) else "\n\n".join(
            b["text"] for b in m["content"] if b.get("type") == "text")
        messages.append({"role": m["role"], "content": text})
    tools = [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                               "parameters": t["input_schema"]}} for t in body["tools"]]
    return {"model": "demo/gab-1", "messages": messages, "tools": tools}


def _parts(body: dict[str, Any], limit: int) -> list[str]:
    """The parts RooGab sends for *body*'s first turn (the prompt is deterministic)."""
    request = parse_chat_request(body)
    return BOOK.split(BOOK.first_turn(request, (), request.messages), limit)


def _prompts(demo: DemoChatService) -> list[str]:
    return [r.prompt for r in demo.received if r.prompt is not None]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_long_first_turn_goes_in_parts_and_the_agent_sees_only_the_answer(small: Running, stream: bool,
                                                                            roo_body: dict[str, Any]) -> None:
    demo = _demo(small)
    body = as_demo_model(roo_body)
    body["stream"] = stream
    body["messages"][0]["content"] += f" ({'sse' if stream else 'json'})"  # a task of its own each time
    expected = _parts(body, 6000)
    assert len(expected) >= 3
    demo.push(*[ScriptedReply(reply=f"OK, part {i} received.") for i in range(1, len(expected))],
              ScriptedReply(reply=CALL, chunk=9))
    request = {k: v for k, v in body.items() if k in ("model", "messages", "tools", "stream")}
    name, arguments, content, finish = _run(_client(small), request, stream)
    assert (name, json.loads(arguments)["path"], finish) == ("read_file", "src/app.py", "tool_calls")
    assert content == "Reading it." and "OK, part" not in content
    assert _prompts(demo) == expected
    conversations = {r.conversation for r in demo.received if r.event == "sendPrompt"}
    assert len(conversations) == 1  # every part after the first went to the conversation it created


def _run(client: openai.OpenAI, body: dict[str, Any], stream: bool) -> tuple[str, str, str, str | None]:
    if not stream:
        choice = client.chat.completions.create(**body).choices[0]
        [call] = choice.message.tool_calls or []
        return call.function.name, call.function.arguments, choice.message.content or "", choice.finish_reason
    name = arguments = content = ""
    finish = None
    for chunk in client.chat.completions.create(**body):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for tc in delta.tool_calls or []:
            name += (tc.function.name or "") if tc.function else ""
            arguments += (tc.function.arguments or "") if tc.function else ""
        finish = chunk.choices[0].finish_reason or finish
    return name, arguments, content, finish


def test_the_captured_claude_code_request_is_delivered_in_parts(small: Running) -> None:
    demo = _demo(small)
    body = claude_code_as_chat()
    expected = _parts(body, 6000)
    assert 8 <= len(expected) <= 12
    demo.push(*[ScriptedReply(reply=f"OK, part {i} received.") for i in range(1, len(expected))],
              ScriptedReply(reply=ANSWER))
    reply = _client(small).chat.completions.create(**body)
    assert reply.choices[0].message.content == "The answer, after all the parts."
    prompts = _prompts(demo)
    assert prompts == expected
    headers = [PART.match(p) for p in prompts]
    assert [(int(h[1]), int(h[2])) for h in headers if h] == [(i, len(expected)) for i in range(1, len(expected) + 1)]
    assert "".join(p[h.end():] for p, h in zip(prompts, headers) if h) == BOOK.first_turn(
        parse_chat_request(body), (), parse_chat_request(body).messages)


def test_the_captured_claude_code_request_fits_the_default_demo_in_one_message(stack: Running,
                                                                               demo: DemoChatService) -> None:
    demo.push(ScriptedReply(reply=ANSWER))
    body = claude_code_as_chat()
    body["messages"][0]["content"] += " (default demo)"  # a task of its own on the shared stack
    reply = _client(stack).chat.completions.create(**body)
    assert reply.choices[0].message.content == "The answer, after all the parts."
    [prompt] = _prompts(demo)
    assert not prompt.startswith("[Part") and len(prompt) > 40_000


def test_a_prompt_over_the_budget_is_a_400_and_nothing_is_sent() -> None:
    running = _stack(max_message_chars=6000, max_parts=3)
    try:
        demo = _demo(running)
        body = claude_code_as_chat()
        size = len(_parts(body, 0)[0])
        with pytest.raises(openai.BadRequestError) as caught:
            _client(running).chat.completions.create(**body)
        error = caught.value.body
        assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
        assert f"{size:,} characters" in error["message"] and "6,000" in error["message"]
        assert "3 parts" in error["message"]
        assert demo.received == []
    finally:
        running.close()


def _bystander(running: Running, started: threading.Event, out: dict[str, Any]) -> None:
    text, finish = "", None
    stream = _client(running).chat.completions.create(
        model="demo/gab-1", stream=True, messages=[{"role": "user", "content": "I was here first"}])
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
            if text:
                started.set()
    out["text"], out["finish"] = text, finish


BYSTANDER = ScriptedReply(reply="```lua\nreturn { text = [==[" + "steady " * 60 + "]==] }\n```", chunk=6,
                          delay_ms=20)


@pytest.mark.slow
def test_an_oversized_prompt_fails_alone_and_the_bystander_streams_on() -> None:
    running = _stack(max_parts=1)  # the demo kind's own limit: one frame under its Socket.IO cap
    try:
        demo = _demo(running)
        demo.push(BYSTANDER)
        limit = running.providers["demo"].max_message_chars
        started, out = threading.Event(), {}
        worker = threading.Thread(target=_bystander, args=(running, started, out))
        worker.start()
        assert started.wait(30)
        huge = [{"role": "user", "content": "x" * (limit + 10_000)}]
        with pytest.raises(openai.BadRequestError) as caught:
            _client(running).chat.completions.create(model="demo/gab-1", messages=huge)  # type: ignore[arg-type]
        assert caught.value.code == "context_length_exceeded" and f"{limit:,}" in str(caught.value)
        worker.join(60)
        assert out == {"text": "steady " * 60, "finish": "stop"}
        assert [r.prompt for r in demo.received if r.prompt and len(r.prompt) > limit] == []
    finally:
        running.close()


@pytest.mark.slow
def test_a_1_2_mb_prompt_goes_through_without_dropping_the_shared_connection(stack: Running,
                                                                             demo: DemoChatService) -> None:
    demo.push(BYSTANDER, ScriptedReply(reply=ANSWER))
    started, out = threading.Event(), {}
    worker = threading.Thread(target=_bystander, args=(stack, started, out))
    worker.start()
    assert started.wait(30)
    big = copy.deepcopy([{"role": "user", "content": "é" * 1_200_000}])  # 2.4 MB UTF-8, 7.2 MB escaped
    reply = _client(stack).chat.completions.create(model="demo/gab-1", messages=big)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "The answer, after all the parts."
    worker.join(60)
    assert out == {"text": "steady " * 60, "finish": "stop"}
    assert any(r.prompt and len(r.prompt) > 1_200_000 for r in demo.received)


def test_roo_fits_in_one_message_by_default(stack: Running, demo: DemoChatService) -> None:
    body = as_demo_model(captured_bodies(ROO)[0])
    body["messages"][0]["content"] += " (one message)"  # a task of its own on the shared stack
    demo.push(ScriptedReply(reply=ANSWER))
    request = {k: v for k, v in body.items() if k in ("model", "messages", "tools")}
    _client(stack).chat.completions.create(**request)
    assert len(_prompts(demo)) == 1


@pytest.mark.slow
def test_max_concurrent_turns_queues_the_second_turn_and_healthz_shows_it() -> None:
    running = _stack(max_concurrent_turns=1)
    try:
        demo = _demo(running)
        slow = ScriptedReply(reply="```lua\nreturn { text = [==[" + "slowly " * 40 + "]==] }\n```", chunk=2,
                             delay_ms=40)
        demo.push(slow, ScriptedReply(reply=ANSWER))
        first_started, first = threading.Event(), {}
        worker = threading.Thread(target=_bystander, args=(running, first_started, first))
        worker.start()
        assert first_started.wait(30)
        second: dict[str, Any] = {}

        def ask() -> None:
            reply = _client(running).chat.completions.create(
                model="demo/gab-1", messages=[{"role": "user", "content": "me next"}])
            second["text"] = reply.choices[0].message.content

        asker = threading.Thread(target=ask)
        asker.start()
        seen = None
        while worker.is_alive():
            turns = _healthz_turns(running)
            if turns["queued"] == 1:
                seen = (turns, len(_prompts(demo)))
                break
            first_started.wait(0.01)
        assert seen == ({"running": 1, "queued": 1, "max_concurrent": 1, "min_interval": 0.0}, 1)
        worker.join(60)
        asker.join(60)
        assert first == {"text": "slowly " * 40, "finish": "stop"}
        assert second == {"text": "The answer, after all the parts."}
        assert _healthz_turns(running) == {"running": 0, "queued": 0, "max_concurrent": 1, "min_interval": 0.0}
    finally:
        running.close()


def _healthz_turns(running: Running) -> dict[str, Any]:
    with urllib.request.urlopen(running.url + "/healthz", timeout=10) as r:
        turns: dict[str, Any] = json.load(r)["providers"]["demo"]["turns"]
        return turns
