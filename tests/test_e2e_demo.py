"""End to end with the official openai SDK: a live RooGab wired to the live demo chat service.

The captured Roo Code, Cline and Kilo requests are replayed as they were sent; the demo service
answers with scripted envelopes; the agent side must get valid tool calls back.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest
from support import CLINE, KILO, ROO, ROO_NONSTREAM, as_halves, captured_bodies, prompts_with, tagged
from support import as_demo_model as _as_demo_model

from roogab.config import load_config
from roogab.demo import ScriptedReply
from roogab.runtime import Running, start_demo

pytestmark = pytest.mark.loopback

ENVELOPES = {
    "read_file": '```lua\nreturn {\n  text = [==[Reading it.]==],\n  tool_calls = {\n'
                 '    { name = "read_file", arguments = { path = "src/app.ts" } },\n  },\n}\n```',
    "read_files": '```lua\nreturn {\n  text = [==[Reading the file.]==],\n  tool_calls = {\n'
                  '    { name = "read_files", arguments = { files = { { path = "hello.txt" } } } },\n'
                  '  },\n}\n```',
    "read": '```lua\nreturn {\n  tool_calls = {\n'
            '    { name = "read", arguments = { filePath = "/home/dev/project/hello.txt" } },\n  },\n}\n```',
}


def _tools(body: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in body.get("tools", [])}


def _collect_stream(stream: Any) -> tuple[dict[int, dict[str, str]], list[Any], str | None]:
    calls: dict[int, dict[str, str]] = {}
    usages, finish = [], None
    for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = entry["id"] or (tc.id or "")
                entry["name"] += tc.function.name or "" if tc.function else ""
                entry["arguments"] += tc.function.arguments or "" if tc.function else ""
    return calls, usages, finish


CASES = [(ROO, 0, "read_file"), (ROO_NONSTREAM, 0, "read_file"), (CLINE, 0, "read_files"), (KILO, 0, "read")]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(("capture", "index", "tool"), CASES, ids=["roo", "roo-nonstream", "cline", "kilo"])
def test_captured_requests_get_a_valid_tool_call(client: openai.OpenAI, demo: Any, capture: str,
                                                  index: int, tool: str, stream: bool) -> None:
    tag = f"captured-{capture}-{stream}"
    body = tagged(_as_demo_model(captured_bodies(capture)[index]), tag)
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    else:
        body.pop("stream_options", None)
    demo.push(ScriptedReply(ENVELOPES[tool]))
    if stream:
        calls, usages, finish = _collect_stream(client.chat.completions.create(**body))
        assert len(usages) == 1 and usages[0].total_tokens > 0
        assert finish == "tool_calls"
        [call] = calls.values()
        name, arguments, call_id = call["name"], call["arguments"], call["id"]
    else:
        result = client.chat.completions.create(**body)
        assert result.usage is not None and result.usage.prompt_tokens > 0
        assert result.choices[0].finish_reason == "tool_calls"
        [tc] = result.choices[0].message.tool_calls or []
        name, arguments, call_id = tc.function.name, tc.function.arguments, tc.id
    assert name == tool and name in _tools(body)
    assert isinstance(json.loads(arguments), dict)
    assert call_id.startswith("call_")
    assert len(prompts_with(demo, tag)) == 1, "the turn must reach the chat service, not the retry record"


def _raw_post(stack: Running, path: str, body: bytes, headers: dict[str, str] | None = None
              ) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(stack.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_sse_framing_usage_once_then_done(stack: Running, demo: Any) -> None:
    body = tagged(_as_demo_model(captured_bodies(ROO)[0]), "sse-framing")
    demo.push(ScriptedReply(ENVELOPES["read_file"], chunk=3))
    status, headers, raw = _raw_post(stack, "/v1/chat/completions", json.dumps(body).encode())
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [e for e in raw.decode().split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    usage_chunks = [c for c in chunks if "usage" in c]
    assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == [] and chunks[-1] is usage_chunks[0]
    first_call = next(c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
    fragment = first_call["choices"][0]["delta"]["tool_calls"][0]
    assert fragment["id"].startswith("call_") and fragment["function"]["name"] == "read_file"
    assert len(prompts_with(demo, "sse-framing")) == 1


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_a_character_sent_as_utf16_halves_reaches_the_agent_whole(stack: Running, client: openai.OpenAI,
                                                                   demo: Any, stream: bool) -> None:
    """A service that cuts its reply between the halves of an emoji: the agent gets the emoji in
    the text and in the tool call, and the turn is in the turn log (the store takes it)."""
    tag = f"halves-{stream}"
    body = tagged(_as_demo_model(captured_bodies(ROO)[0]), tag)
    body["stream"] = stream
    envelope = ENVELOPES["read_file"].replace("Reading it.", "Reading 😀.").replace("app.ts", "😀.ts")
    demo.push(ScriptedReply(as_halves(envelope), chunk=1))
    if stream:
        calls, _, _ = _collect_stream(client.chat.completions.create(**body))
        [call] = calls.values()
        arguments = call["arguments"]
    else:
        [tc] = client.chat.completions.create(**body).choices[0].message.tool_calls or []
        arguments = tc.function.arguments
    assert json.loads(arguments)["path"] == "src/😀.ts"
    assert len(prompts_with(demo, tag)) == 1
    stack.turn_log.flush()
    [logged] = [t for t in stack.registry.turns(limit=20) if f"[{tag}]" in t.provider_prompt]
    assert "Reading 😀." in logged.raw_reply


@pytest.mark.parametrize("stream", [True, False], ids=["mid-stream", "error-body"])
def test_a_service_error_holding_a_lone_utf16_half_reaches_the_agent(stack: Running, demo: Any, stream: bool) -> None:
    """The error body, and the stream's error event after some text, are valid UTF-8 (the half
    is U+FFFD), not a connection that breaks while the response is encoded."""
    body = tagged({"model": "demo/gab-1", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
                  f"lone-half-{stream}")
    cut_off = ScriptedReply("```lua\nreturn { text = [[Hello there, friend")  # repaired, and the repair fails
    demo.push(*([cut_off] if stream else []), ScriptedReply(error="the service broke on \ud83d"))
    status, _, raw = _raw_post(stack, "/v1/chat/completions", json.dumps(body).encode())
    assert status == (200 if stream else 502), raw  # 200: the stream had begun
    lines = [line.removeprefix("data: ") for line in raw.decode().splitlines() if line.strip()]
    errors = [json.loads(line)["error"]["message"] for line in lines if line.startswith('{"error"')]
    assert errors and errors[-1].endswith("the service broke on \ufffd"), raw
    assert len(prompts_with(demo, f"lone-half-{stream}")) == 1


def test_models_lists_the_demo_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["demo/gab-1", "demo/gab-2"]
    assert not any(bad in i for i in ids for bad in ("o1", "o3", "o4"))


def test_one_model_is_retrieved_by_its_id(client: openai.OpenAI) -> None:
    """The SDK's ``models.retrieve``: the list's entry (ids hold a "/"), or the SDK's NotFoundError."""
    model = client.models.retrieve("demo/gab-2")
    assert model.id == "demo/gab-2" and model.object == "model" and model.owned_by == "roogab"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("demo/gab-9")
    assert missing.value.code == "model_not_found" and "demo/gab-9" in missing.value.message


def test_bare_routes_answer_too(stack: Running) -> None:
    body = json.dumps({"model": "demo/gab-1", "messages": [{"role": "user", "content": "hi"}]}).encode()
    status, _, raw = _raw_post(stack, "/chat/completions", body)
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"]


def test_malformed_json_is_a_400_with_error_json(stack: Running) -> None:
    status, _, raw = _raw_post(stack, "/v1/chat/completions", b'{"model": "demo/gab-1", "messages": [')
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error" and "not valid JSON" in error["message"]


def test_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="demo/nope", messages=[{"role": "user", "content": "hi"}])
    assert "demo/gab-1" in str(info.value)


def test_foreign_host_header_is_refused(stack: Running) -> None:
    body = json.dumps({"model": "demo/gab-1", "messages": [{"role": "user", "content": "hi"}]}).encode()
    status, _, raw = _raw_post(stack, "/v1/chat/completions", body, {"Host": "attacker.example"})
    assert status == 403 and json.loads(raw)["error"]["code"] == "forbidden_host"


def test_title_request_without_tools_gets_plain_text(client: openai.OpenAI, demo: Any) -> None:
    body = _as_demo_model(captured_bodies(KILO)[2])
    demo.push(ScriptedReply('```lua\nreturn { text = [==[Read hello.txt]==] }\n```'))
    calls, usages, finish = _collect_stream(client.chat.completions.create(**body))
    assert not calls and finish == "stop" and len(usages) == 1


def test_second_turn_sends_only_what_is_new(client: openai.OpenAI, demo: Any) -> None:
    first, second = (_as_demo_model(b) for b in captured_bodies(CLINE))
    for body in (first, second):  # a task of its own: other tests sent Cline's first turn already
        body["messages"][1]["content"] += " (continuity test)"
    demo.push(ScriptedReply(ENVELOPES["read_files"]))
    calls, _, _ = _collect_stream(client.chat.completions.create(**first))
    [call] = calls.values()
    # The agent echoes our reply: same id, same arguments (re-serialized), then the tool result.
    echoed = second["messages"][2]
    echoed["tool_calls"][0]["id"] = call["id"]
    echoed["tool_calls"][0]["function"]["arguments"] = json.dumps(json.loads(call["arguments"]))
    second["messages"][3]["tool_call_id"] = call["id"]
    demo.push(ScriptedReply('```lua\nreturn { text = [==[It says hello.]==] }\n```'))
    client.chat.completions.create(**second)
    prompts = [r.prompt for r in demo.received if r.prompt]
    assert len(prompts) == 2 and "You are Cline" in prompts[0]
    assert "You are Cline" not in prompts[1] and "hello from the workspace" in prompts[1]
    assert len(prompts[1]) < 1500


@pytest.fixture(scope="module")
def keyed_stack() -> Iterator[Running]:
    config = load_config(env={"ROOGAB_API_KEYS": "s3cret"}, overrides={"port": 0, "store": "memory"})
    running = start_demo(dataclasses.replace(config))
    yield running
    running.close()


def test_wrong_key_is_a_401(keyed_stack: Running) -> None:
    with openai.OpenAI(base_url=keyed_stack.url + "/v1", api_key="wrong", max_retries=0) as bad, \
            pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with openai.OpenAI(base_url=keyed_stack.url + "/v1", api_key="s3cret", max_retries=0) as good:
        assert [m.id for m in good.models.list()]
