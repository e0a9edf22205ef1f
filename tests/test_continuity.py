"""Conversation continuity end to end: each task on its own provider conversation, across
retries, edits, concurrent requests and restarts of RooGab and of the chat service."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from support import CLINE, KILO, ROO, ROO_HISTORY, as_demo_model, captured_bodies

from roogab.config import ProviderProfile, load_config
from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import Running, start

pytestmark = pytest.mark.loopback

READ = '```lua\nreturn {{ text = [==[Reading.]==], tool_calls = {{\n' \
       '  {{ name = "{tool}", arguments = {{ {args} }} }} }} }}\n```'
DONE = '```lua\nreturn { text = [==[It says hello.]==] }\n```'


@pytest.fixture
def service() -> Iterator[DemoChatService]:
    with DemoChatService() as demo:
        yield demo


def _start(demo: DemoChatService, data_dir: Path) -> Running:
    config = load_config(env={}, overrides={"port": 0, "data_dir": str(data_dir)})
    return start(dataclasses.replace(config, providers=(ProviderProfile(url=demo.url),)))


@pytest.fixture
def roogab(service: DemoChatService, tmp_path: Path) -> Iterator[Running]:
    running = _start(service, tmp_path)
    yield running
    running.close()


def _client(running: Running) -> openai.OpenAI:
    """The SDK, keeping no idle connection open (nothing for the leak check to find)."""
    http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
    return openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, http_client=http)


def _prompts(demo: DemoChatService) -> list[str]:
    return [r.prompt for r in demo.received if r.prompt]


def _call(client: openai.OpenAI, body: dict[str, Any]) -> Any:
    body = dict(body, stream=False)
    body.pop("stream_options", None)
    return client.chat.completions.create(**body).choices[0].message


def _echo(turn2: dict[str, Any], message: Any) -> dict[str, Any]:
    """Turn 2 as the agent sends it: our reply echoed (our call id), then the tool result."""
    turn2 = json.loads(json.dumps(turn2))
    [call] = message.tool_calls
    echoed = turn2["messages"][2]
    echoed["content"] = message.content or ""
    echoed["tool_calls"] = [{"id": call.id, "type": "function",
                             "function": {"name": call.function.name, "arguments": call.function.arguments}}]
    turn2["messages"][3]["tool_call_id"] = call.id
    return turn2


def _cline_turns() -> tuple[dict[str, Any], dict[str, Any]]:
    first, second = (as_demo_model(b) for b in captured_bodies(CLINE))
    return first, second


def test_cline_turn_two_sends_only_the_tool_result(roogab: Running, service: DemoChatService) -> None:
    first, second = _cline_turns()
    service.push(ScriptedReply(READ.format(tool="read_files", args='files = { { path = "hello.txt" } }')),
                 ScriptedReply(DONE))
    client = _client(roogab)
    assert _call(client, _echo(second, _call(client, first))).content == "It says hello."
    p1, p2 = _prompts(service)
    assert "You are Cline" in p1 and "### read_files" in p1
    assert "You are Cline" not in p2 and "### read_files" not in p2
    assert "hello from the workspace" in p2 and "Reply with one ```lua" in p2


def test_roo_session_turn_two_sends_only_the_tool_result(roogab: Running, service: DemoChatService) -> None:
    first = as_demo_model(captured_bodies(ROO)[0])
    history = as_demo_model(captured_bodies(ROO_HISTORY)[0])
    second = {**first, "messages": first["messages"][:2] + history["messages"][2:4]}
    second["messages"][3] = {**history["messages"][3]}
    service.push(ScriptedReply(READ.format(tool="read_file", args='path = "notes.txt"')), ScriptedReply(DONE))
    client = _client(roogab)
    message = _call(client, first)
    [call] = message.tool_calls
    second["messages"][2] = {"role": "assistant", "content": message.content,
                             "tool_calls": [{"id": call.id, "type": "function", "function": {
                                 "name": "read_file", "arguments": call.function.arguments}}]}
    second["messages"][3]["tool_call_id"] = call.id
    _call(client, second)
    p1, p2 = _prompts(service)
    assert "You are Roo" in p1 and "You are Roo" not in p2
    assert p2.startswith("### tool result (read_file") and "1 | hello" in p2 and len(p2) < 2000


def test_edited_earlier_message_replays(roogab: Running, service: DemoChatService) -> None:
    first, second = _cline_turns()
    service.push(ScriptedReply(READ.format(tool="read_files", args='files = { { path = "hello.txt" } }')),
                 ScriptedReply(DONE))
    client = _client(roogab)
    turn2 = _echo(second, _call(client, first))
    turn2["messages"][1]["content"] = "Read hello.txt and summarise it."  # the user edited the task
    _call(client, turn2)
    _p1, p2 = _prompts(service)
    assert "You are Cline" in p2 and "replayed below" in p2 and "Read hello.txt and summarise it." in p2
    conversations = {r.conversation for r in service.received if r.event == "newConversation"}
    assert len(conversations) == 2


def test_two_tasks_interleaved_never_mix(roogab: Running, service: DemoChatService) -> None:
    a1, a2 = _cline_turns()
    b1, b2 = _cline_turns()
    for body in (b1, b2):
        body["messages"][1]["content"] = "Read other.txt please."
    read = READ.format(tool="read_files", args='files = { { path = "x" } }')
    client = _client(roogab)
    service.push(ScriptedReply(read))
    ma = _call(client, a1)
    service.push(ScriptedReply(read))
    mb = _call(client, b1)
    service.push(ScriptedReply(DONE), ScriptedReply(DONE))
    _call(client, _echo(a2, ma))
    _call(client, _echo(b2, mb))
    by_conversation: dict[str | None, list[str]] = {}
    for r in service.received:
        if r.prompt:
            by_conversation.setdefault(r.conversation, []).append(r.prompt)
    assert len(by_conversation) == 2
    for prompts in by_conversation.values():
        assert len(prompts) == 2
        task = "Read other.txt" if "Read other.txt" in prompts[0] else "Read hello.txt"
        assert task in prompts[0]


def test_kilo_title_request_gets_its_own_conversation(roogab: Running, service: DemoChatService) -> None:
    main, _, title = (as_demo_model(b) for b in captured_bodies(KILO))
    read = ScriptedReply(READ.format(tool="read", args='filePath = "hello.txt"'))
    service.push(read, read)  # the two requests race for the script: either order must work
    client = _client(roogab)
    results: dict[str, Any] = {}
    t = threading.Thread(target=lambda: results.update(title=_call(client, title)))
    t.start()
    results["main"] = _call(client, main)
    t.join(10)
    assert results["main"].tool_calls and results["title"].content
    assert len({r.conversation for r in service.received if r.event == "newConversation"}) == 2


def test_retry_of_a_completed_turn_sends_nothing(roogab: Running, service: DemoChatService) -> None:
    first, _ = _cline_turns()
    service.push(ScriptedReply(READ.format(tool="read_files", args='files = { { path = "a" } }')))
    client = _client(roogab)
    one = _call(client, first)
    two = _call(client, first)
    assert len(_prompts(service)) == 1
    assert one.tool_calls[0].id == two.tool_calls[0].id
    assert one.tool_calls[0].function.arguments == two.tool_calls[0].function.arguments


def test_identical_request_in_flight_waits_for_it(roogab: Running, service: DemoChatService) -> None:
    first, _ = _cline_turns()
    service.push(ScriptedReply(READ.format(tool="read_files", args='files = { { path = "a" } }'),
                               chunk=4, delay_ms=20))
    client = _client(roogab)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(_call(client, first))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 2 and len(_prompts(service)) == 1
    assert results[0].tool_calls[0].id == results[1].tool_calls[0].id


def test_retry_after_a_failed_turn_resends(roogab: Running, service: DemoChatService) -> None:
    first, _ = _cline_turns()
    service.push(ScriptedReply(error="overloaded"), ScriptedReply(DONE))
    client = _client(roogab)
    with pytest.raises(openai.APIStatusError):
        _call(client, first)
    assert _call(client, first).content == "It says hello."
    assert len(_prompts(service)) == 2


def test_restart_of_roogab_continues_the_task(service: DemoChatService, tmp_path: Path) -> None:
    first, second = _cline_turns()
    service.push(ScriptedReply(READ.format(tool="read_files", args='files = { { path = "hello.txt" } }')),
                 ScriptedReply(DONE))
    running = _start(service, tmp_path)
    try:
        message = _call(_client(running), first)
    finally:
        running.close()
    running = _start(service, tmp_path)
    try:
        assert _call(_client(running), _echo(second, message)).content == "It says hello."
    finally:
        running.close()
    _p1, p2 = _prompts(service)
    assert "You are Cline" not in p2 and "hello from the workspace" in p2


def test_chat_service_that_forgot_the_conversation_gets_a_replay(roogab: Running,
                                                                 service: DemoChatService) -> None:
    first, second = _cline_turns()
    service.push(ScriptedReply(READ.format(tool="read_files", args='files = { { path = "hello.txt" } }')))
    client = _client(roogab)
    message = _call(client, first)
    service.reset(conversations=True)  # as if the chat service had restarted
    service.push(ScriptedReply(DONE))
    assert _call(client, _echo(second, message)).content == "It says hello."
    prompts = _prompts(service)
    assert "You are Cline" in prompts[-1] and "replayed below" in prompts[-1]


def test_turn_log_and_conversations_are_inspectable(roogab: Running, service: DemoChatService) -> None:
    first, _ = _cline_turns()
    service.push(ScriptedReply(READ.format(tool="read_files", args='files = { { path = "a" } }')))
    _call(_client(roogab), first)
    [turn] = roogab.registry.turns(limit=5)
    assert turn.verdict == "ok" and "You are Cline" in turn.provider_prompt
    assert "read_files" in turn.raw_reply and json.loads(turn.usage)["prompt_tokens"] > 0
    [conv] = roogab.store.load_conversations()
    assert conv.id == turn.conversation_id and conv.handle
