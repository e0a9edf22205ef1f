"""Anthropic Messages end to end with the official ``anthropic`` SDK: a live RooGab on the live demo
chat service. Captured Claude Code requests are sent as they were (addressed to a demo model); the
demo answers with scripted envelopes; the SDK must accumulate exactly the meant thinking, text and
tool calls, streaming and not.
"""

from __future__ import annotations

import copy
import dataclasses
import http.client
import itertools
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest
from lua_envelope import envelope
from protocols.sse import bodies, events

from roogab.config import load_config
from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import Running, start_demo

pytestmark = pytest.mark.loopback

SDK_KEYS = ("model", "messages", "system", "tools", "metadata", "max_tokens", "thinking", "stream")
TRICKY = ("line 1: `backticks` and ```fences```\nline 2: \"double\" 'single' \\backslash\\ $HOME ]] ]==]\n"
          "line 3: </content> <tool_use> héllo — 世界 🚀 \u00a0nbsp\n\tline 4 tab\n")
_tasks = itertools.count(1)


@pytest.fixture
def claude(stack: Running) -> anthropic.Anthropic:
    """The official Anthropic SDK pointed at the live stack (no retries: a failure shows)."""
    return anthropic.Anthropic(base_url=stack.url, api_key="anything", max_retries=0)


def captured(turn: int = 0, session: str = "main_four_turns") -> dict[str, Any]:
    """A captured Claude Code body for the demo model, its prompt made unique to this test."""
    body = copy.deepcopy(bodies(session)[turn])
    body["model"] = "demo/gab-1"
    first = body["messages"][0]["content"]
    if isinstance(first, list):
        first[-1]["text"] += f" (test task {next(_tasks)})"
    return body


def sdk_args(body: dict[str, Any]) -> dict[str, Any]:
    """A raw body as SDK keyword arguments; what the SDK has no parameter for goes in extra_body."""
    args = {k: v for k, v in body.items() if k in SDK_KEYS and k != "stream"}
    args["extra_body"] = {k: v for k, v in body.items() if k not in SDK_KEYS}
    return args


def meant_calls() -> list[tuple[str, dict[str, Any]]]:
    return [("Write", {"file_path": "/workspace/hello.txt", "content": TRICKY}),
            ("Bash", {"command": "wc -c hello.txt", "description": "Count bytes"})]


def _blocks(message: Any) -> list[tuple[str, Any]]:
    out = []
    for block in message.content:
        if block.type == "thinking":
            out.append(("thinking", block.thinking))
        elif block.type == "text":
            out.append(("text", block.text))
        else:
            out.append(("tool_use", (block.name, block.input)))
    return out


MEANT = [("thinking", "Write it, then count."), ("text", "Writing the file."),
         ("tool_use", meant_calls()[0]), ("tool_use", meant_calls()[1])]


def test_stream_accumulates_exactly_the_meant_answer(claude: anthropic.Anthropic, demo: DemoChatService) -> None:
    demo.push(ScriptedReply(envelope("Writing the file.", reasoning="Write it, then count.", calls=meant_calls()),
                            chunk=7))
    with claude.messages.stream(**sdk_args(captured())) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert _blocks(final) == MEANT
    assert "".join(texts) == "Writing the file."
    assert final.stop_reason == "tool_use" and final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert all(b.id.startswith("call_") for b in final.content if b.type == "tool_use")
    [prompt] = [r.prompt for r in demo.received if r.prompt]
    assert "Read README.md, then write hello.txt." in prompt and "### Write" in prompt


def test_json_answer_is_the_same_message(claude: anthropic.Anthropic, demo: DemoChatService) -> None:
    demo.push(ScriptedReply(envelope("Writing the file.", reasoning="Write it, then count.", calls=meant_calls())))
    final = claude.messages.create(**sdk_args(captured()), stream=False, timeout=60)
    assert _blocks(final) == MEANT and final.stop_reason == "tool_use"
    assert final.id.startswith("msg_") and final.model == "demo/gab-1"


def test_text_answer_ends_the_turn(claude: anthropic.Anthropic, demo: DemoChatService) -> None:
    demo.push(ScriptedReply(envelope("Done: hello.txt written.")))
    with claude.messages.stream(**sdk_args(captured())) as stream:
        final = stream.get_final_message()
    assert _blocks(final) == [("text", "Done: hello.txt written.")] and final.stop_reason == "end_turn"


def test_claude_code_session_continues_with_only_what_is_new(stack: Running, claude: anthropic.Anthropic,
                                                             demo: DemoChatService) -> None:
    session = {"X-Claude-Code-Session-Id": f"e2e-session-{next(_tasks)}"}
    first = captured()
    demo.push(ScriptedReply(envelope("I'll read the README first.", calls=[
        ("Read", {"file_path": "/workspace/README.md"})])))
    with claude.messages.stream(**sdk_args(first), extra_headers=session) as stream:
        answer = stream.get_final_message()
    # Claude Code echoes the answer as streamed, then sends the tool result (captured turn 2).
    second = copy.deepcopy(bodies("main_four_turns")[1])
    second["model"], second["messages"][0] = first["model"], first["messages"][0]
    call = next(b for b in answer.content if b.type == "tool_use")
    second["messages"][2]["content"][1]["id"] = call.id
    second["messages"][3]["content"][0]["tool_use_id"] = call.id
    demo.push(ScriptedReply(envelope("It says hello.")))
    with claude.messages.stream(**sdk_args(second), extra_headers=session) as stream:
        assert _blocks(stream.get_final_message()) == [("text", "It says hello.")]
    prompts = [r.prompt for r in demo.received if r.prompt]
    assert len(prompts) == 2 and "# Environment" in prompts[0]
    assert "# Environment" not in prompts[1] and "This README is read by the agent" in prompts[1]
    assert len(prompts[1]) < 1500
    turns = stack.registry.turns(limit=2)
    assert [t.protocol for t in turns] == ["messages", "messages"] and not turns[0].replayed


def test_title_request_gets_json_for_its_schema(claude: anthropic.Anthropic, demo: DemoChatService) -> None:
    body = captured(0, "tui_title_plus_four_turns")
    demo.push(ScriptedReply(envelope("Hello file writer")))  # prose: it is fitted to {"title": string}
    with claude.messages.stream(**sdk_args(body)) as stream:
        final = stream.get_final_message()
    [(kind, text)] = _blocks(final)
    assert kind == "text" and json.loads(text) == {"title": "Hello file writer"}
    [prompt] = [r.prompt for r in demo.received if r.prompt]
    assert "JSON Schema" in prompt and '"title"' in prompt


def test_compaction_request_is_answered_in_the_same_conversation(claude: anthropic.Anthropic,
                                                                  demo: DemoChatService) -> None:
    session = {"X-Claude-Code-Session-Id": f"compact-{next(_tasks)}"}
    first = captured(0, "compaction")
    demo.push(ScriptedReply(envelope("I'll read the README first.", calls=[
        ("Read", {"file_path": "/workspace/README.md"})])))
    with claude.messages.stream(**sdk_args(first), extra_headers=session) as stream:
        call = next(b for b in stream.get_final_message().content if b.type == "tool_use")
    compact = copy.deepcopy(bodies("compaction")[1])
    compact["model"], compact["messages"][0] = first["model"], first["messages"][0]
    compact["messages"][2]["content"][1]["id"] = call.id
    compact["messages"][3]["content"][0]["tool_use_id"] = call.id
    demo.push(ScriptedReply(envelope("<analysis>read</analysis>\n<summary>Read README.</summary>")))
    with claude.messages.stream(**sdk_args(compact), extra_headers=session) as stream:
        assert "<summary>Read README.</summary>" in stream.get_final_message().content[0].text  # type: ignore[union-attr]
    prompts = [r.prompt for r in demo.received if r.prompt]
    assert len(prompts) == 2 and "CRITICAL: Respond with TEXT ONLY" in prompts[1] and "# Environment" not in prompts[1]


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    body = bodies("tui_context_command_count_tokens")[0]
    small = claude.messages.count_tokens(model="demo/gab-1", messages=[{"role": "user", "content": "foo"}])
    big = claude.messages.count_tokens(model="demo/gab-1", messages=body["messages"],
                                       tools=bodies("tui_context_command_count_tokens")[8]["tools"])
    assert 0 < small.input_tokens < 10 < big.input_tokens


def _post(stack: Running, path: str, body: object, headers: dict[str, str] | None = None
          ) -> tuple[int, bytes]:
    url = urlsplit(stack.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json",
                                                                   **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_stream_frames_have_event_lines_in_order(stack: Running, demo: DemoChatService) -> None:
    demo.push(ScriptedReply(envelope("Reading.", calls=[("Read", {"file_path": "/workspace/README.md"})]), chunk=3))
    status, raw = _post(stack, "/v1/messages?beta=true", captured(), {"anthropic-version": "2023-06-01",
                                                                       "anthropic-beta": "claude-code-20250219"})
    assert status == 200
    names = [n for n, _ in events(raw.decode()) if n != "ping"]
    assert names[:2] == ["message_start", "content_block_start"] and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 2


@pytest.mark.parametrize(("body", "status", "kind"), [
    ({"model": "demo/nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, 404,
     "not_found_error"),
    ({"model": "demo/gab-1", "max_tokens": 5, "messages": []}, 400, "invalid_request_error"),
    ("not an object", 400, "invalid_request_error"),
])
def test_errors_are_in_anthropic_shape(stack: Running, body: object, status: int, kind: str) -> None:
    got, raw = _post(stack, "/v1/messages", body)
    error = json.loads(raw)
    assert got == status and error["type"] == "error" and error["error"]["type"] == kind


@pytest.fixture(scope="module")
def keyed_stack() -> Iterator[Running]:
    config = load_config(env={"ROOGAB_API_KEYS": "s3cret"}, overrides={"port": 0, "store": "memory"})
    running = start_demo(dataclasses.replace(config))
    yield running
    running.close()


def test_x_api_key_and_bearer_both_authenticate(keyed_stack: Running) -> None:
    count = {"model": "demo/gab-1", "messages": [{"role": "user", "content": "foo"}]}
    with anthropic.Anthropic(base_url=keyed_stack.url, api_key="wrong", max_retries=0) as bad, \
            pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.count_tokens(**count)  # type: ignore[arg-type]
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    for client in (anthropic.Anthropic(base_url=keyed_stack.url, api_key="s3cret", max_retries=0),
                   anthropic.Anthropic(base_url=keyed_stack.url, auth_token="s3cret", max_retries=0)):
        with client:
            assert client.messages.count_tokens(**count).input_tokens > 0  # type: ignore[arg-type]


def test_service_dropped_mid_call_is_an_overloaded_error_and_never_a_partial_call(
        stack: Running, demo: DemoChatService) -> None:
    reply = envelope("Writing the file.", calls=meant_calls())
    demo.push(ScriptedReply(reply, chunk=10, drop_after=len(reply) // 20))  # cut inside the Write
    status, raw = _post(stack, "/v1/messages", captured())
    frames = events(raw.decode())
    assert status == 200 and frames[-1][0] == "error"
    assert frames[-1][1]["error"]["type"] == "overloaded_error"  # Claude Code asks again
    started = [d["content_block"]["type"] for n, d in frames if n == "content_block_start"]
    assert "tool_use" not in started and "message_stop" not in [n for n, _ in frames]
    demo.push(ScriptedReply(reply, chunk=10, drop_after=len(reply) // 20))
    body = {**captured(), "stream": False}
    status, raw = _post(stack, "/v1/messages", body)
    assert status == 529 and json.loads(raw)["error"]["type"] == "overloaded_error"
    demo.push(ScriptedReply(reply))  # the retry, as Claude Code sends it, gets the whole answer
    status, raw = _post(stack, "/v1/messages", body)
    assert status == 200 and [b["type"] for b in json.loads(raw)["content"]] == ["text", "tool_use", "tool_use"]
    assert len([r for r in demo.received if r.prompt]) == 3
