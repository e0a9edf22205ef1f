"""OpenAI Responses: request parsing and stream rendering (pure), checked against what the real
Codex CLI 0.171.0 sent and accepted (tests/fixtures/captured/codex_0.171.0_*)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roogab.envelope import ToolCall
from roogab.errors import InvalidRequest, ProviderDisconnected, UnsupportedFeature
from roogab.outputs import CallOut, Finished, Out, ReasoningOut, TextOut
from roogab.protocols.responses_input import opaque_reasoning, parse_responses_request
from roogab.protocols.responses_stream import ResponseStream
from roogab.registry import message_digest
from roogab.render import arguments_json
from roogab.wire import Message, ToolCallRef, Usage

CAPTURED = Path(__file__).parent.parent / "fixtures" / "captured"
GPT55 = "codex_0.171.0_main_four_turns_gpt-5.5"
FALLBACK = "codex_0.171.0_main_four_turns_fallback_model"


@functools.cache
def codex_requests(name: str) -> list[dict[str, Any]]:
    """The /responses requests of one captured Codex session, ``$same_as_seq`` resolved."""
    data = json.loads((CAPTURED / f"{name}.json").read_text("utf-8"))
    by_seq = {r["seq"]: r for r in data["requests"]}
    out = []
    for r in data["requests"]:
        if not r["path"].endswith("/responses"):
            continue
        body = r["body"]
        while isinstance(body, dict) and "$same_as_seq" in body:
            body = by_seq[body["$same_as_seq"]]["body"]
        out.append({**r, "body": body})
    return out


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


ALL = sorted(p.stem for p in CAPTURED.glob("codex_0.171.0_*.json"))


@pytest.mark.parametrize("name", ALL)
def test_every_captured_codex_request_parses(name: str) -> None:
    requests = codex_requests(name)
    assert requests
    for r in requests:
        body = r["body"]
        request = parse_responses_request(body, session=r["headers"].get("session-id", ""))
        assert request.protocol == "responses"
        assert request.affinity == body["prompt_cache_key"]
        assert request.messages[0].role == "developer" and "Codex" in request.messages[0].content
        names = {t.name for t in request.tools}
        if body["tools"]:
            assert "exec_command" in names
            assert "web_search" in request.unavailable and "web_search" not in names
        else:  # the compaction turn
            assert request.tools == () and not request.native_tools
        roles = [m.role for m in request.messages]
        assert roles.count("tool") == sum(i["type"].endswith("_output") for i in body["input"])


def test_known_model_tools_freeform_apply_patch_and_client_tool_search() -> None:
    request = parse_responses_request(codex_requests(GPT55)[0]["body"])
    tools = {t.name: t for t in request.tools}
    patch = tools["apply_patch"]
    assert patch.kind == "custom" and patch.parameters["required"] == ["input"]
    assert "begin_patch hunk+ end_patch" in patch.parameters["properties"]["input"]["description"]
    assert tools["tool_search"].kind == "tool_search"
    assert tools["tool_search"].parameters["properties"]["query"]["type"] == "string"


def test_fallback_model_namespace_tools_are_qualified() -> None:
    request = parse_responses_request(codex_requests(FALLBACK)[0]["body"])
    tools = {t.name: t for t in request.tools}
    spawn = tools["multi_agent_v1.spawn_agent"]
    assert spawn.namespace == "multi_agent_v1" and spawn.bare_name == "spawn_agent"
    assert "apply_patch" not in tools


def test_history_joins_one_assistant_turn_into_one_message() -> None:
    last = parse_responses_request(codex_requests(GPT55)[-1]["body"])
    assistants = [m for m in last.messages if m.role == "assistant"]
    assert [len(m.tool_calls) for m in assistants] == [1, 1, 2]
    first = assistants[0]
    assert first.content == "I'll read the README first."
    assert first.tool_calls[0] == ToolCallRef("call_cap0005", "exec_command",
                                              '{"cmd": "cat README.md", "workdir": "/workspace"}')
    patch = assistants[1].tool_calls[0]
    assert patch.name == "apply_patch" and json.loads(patch.arguments)["input"].startswith("*** Begin Patch\n")
    results = [m for m in last.messages if m.role == "tool"]
    assert [m.tool_call_id for m in results] == ["call_cap0005", "call_cap0008", "call_cap0011", "call_cap0013"]


def _turn_items(name: str, turn: int) -> list[Out]:
    """The Out items that make the answer the capture server scripted for *turn*."""
    data = json.loads((CAPTURED / f"{name}.json").read_text("utf-8"))
    replies = [r for r in codex_requests(name) if r["reply"].get("file")]
    events = sse_events((CAPTURED / replies[turn]["reply"]["file"]).read_text("utf-8"))
    ids = [e["item"]["call_id"] for e in events if e["type"] == "response.output_item.done"
           and "call_id" in e["item"]]
    items: list[Out] = []
    for block in data["script"]["responses"][turn]["blocks"]:
        if block["type"] == "reasoning":
            items.append(ReasoningOut(block["summary"]))
        elif block["type"] == "message":
            items.append(TextOut(block["text"]))
        else:
            arguments = block.get("arguments") or {"input": block["input"]}
            n = sum(isinstance(i, CallOut) for i in items)
            items.append(CallOut(n, ids[n], ToolCall(block["name"], arguments)))
    items.append(Finished("tool_calls" if any(isinstance(i, CallOut) for i in items) else "stop", Usage(1200, 42)))
    return items


def _render(items: list[Out], request_body: dict[str, Any]) -> list[dict[str, Any]]:
    request = parse_responses_request(request_body)
    counter = iter(range(1000))
    stream = ResponseStream("resp_test", request.model, 1796153666, {t.name: t for t in request.tools},
                            encrypted_reasoning=True, new_suffix=lambda: f"x{next(counter)}")
    events = stream.start()
    for item in items:
        events += stream.feed(item)
    return events


def _shape(events: list[dict[str, Any]]) -> list[str]:
    """Event types, runs of deltas collapsed: the order a client relies on."""
    out: list[str] = []
    for e in events:
        if not (e["type"].endswith(".delta") and out and out[-1] == e["type"]):
            out.append(e["type"])
    return out


@pytest.mark.parametrize("name", [GPT55, FALLBACK])
@pytest.mark.parametrize("turn", [0, 1, 2, 3])
def test_rendered_stream_matches_what_codex_accepted(name: str, turn: int) -> None:
    requests = codex_requests(name)
    accepted = sse_events((CAPTURED / requests[turn]["reply"]["file"]).read_text("utf-8"))
    ours = _render(_turn_items(name, turn), requests[turn]["body"])
    assert _shape(ours) == _shape(accepted)
    assert [e["sequence_number"] for e in ours] == list(range(len(ours)))
    for mine, theirs in zip([e for e in ours if not e["type"].endswith("delta")],
                            [e for e in accepted if not e["type"].endswith("delta")]):
        assert set(theirs) <= set(mine), mine["type"]
        if "item" in theirs:
            assert set(theirs["item"]) <= set(mine["item"]), theirs["item"]["type"]
            for key in ("id", "call_id"):  # the same id forms: msg_, rs_, fc_, ctc_, call_
                if key in theirs["item"]:
                    assert mine["item"][key].split("_")[0] == theirs["item"][key].split("_")[0]
            assert mine["item"]["type"] == theirs["item"]["type"]
            for key in ("name", "arguments", "input", "status", "role", "content", "summary"):
                if key in theirs["item"] and key not in ("arguments",):
                    assert mine["item"][key] == theirs["item"][key], key
            if "arguments" in theirs["item"] and theirs["item"]["arguments"]:
                assert json.loads(mine["item"]["arguments"]) == json.loads(theirs["item"]["arguments"])
    completed = ours[-1]["response"]
    assert completed["id"] == "resp_test" and completed["usage"]["total_tokens"] == 1242


@pytest.mark.parametrize("name", [GPT55, FALLBACK])
@pytest.mark.parametrize("turn", [0, 1, 2])
def test_what_codex_echoes_digests_like_the_recorded_reply(name: str, turn: int) -> None:
    """Continuity: the items Codex sent back next turn parse into the assistant message the
    turn engine recorded for the reply (same digest), so the registry continues the conversation."""
    items = _turn_items(name, turn)
    calls = [i for i in items if isinstance(i, CallOut)]
    text = "".join(i.text for i in items if isinstance(i, TextOut))
    recorded = Message("assistant", text, tool_calls=tuple(ToolCallRef(c.id, c.call.name, arguments_json(c.call))
                                                           for c in calls))
    after = parse_responses_request(codex_requests(name)[turn + 1]["body"])
    echoed = [m for m in after.messages if m.role == "assistant"][turn]
    assert message_digest(echoed) == message_digest(recorded)


def test_our_own_output_items_round_trip_as_input() -> None:
    body = codex_requests(GPT55)[0]["body"]
    items = _turn_items(GPT55, 0)
    events = _render(items, body)
    output = events[-1]["response"]["output"]
    reasoning = output[0]
    assert reasoning["encrypted_content"] == opaque_reasoning("**Reading**\n\nLook at the README first.")
    again = parse_responses_request({**body, "input": body["input"] + output})
    calls = [i for i in items if isinstance(i, CallOut)]
    echoed = again.messages[-1]
    assert echoed.role == "assistant" and echoed.content == "I'll read the README first."
    assert echoed.tool_calls[0].id == calls[0].id


def test_namespace_call_is_rendered_with_its_namespace() -> None:
    body = codex_requests(FALLBACK)[0]["body"]
    call = ToolCall("multi_agent_v1.wait_agent", {"targets": ["a"]})
    events = _render([CallOut(0, "call_1", call), Finished("tool_calls", Usage(1, 1))], body)
    done = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert (done["name"], done["namespace"], done["call_id"]) == ("wait_agent", "multi_agent_v1", "call_1")
    again = parse_responses_request({**body, "input": body["input"] + [done]})
    assert again.messages[-1].tool_calls[0].name == "multi_agent_v1.wait_agent"


def test_tool_search_call_and_its_output() -> None:
    body = codex_requests(GPT55)[0]["body"]
    call = ToolCall("tool_search", {"query": "spawn agent", "limit": 2})
    events = _render([CallOut(0, "call_9", call), Finished("tool_calls", Usage(1, 1))], body)
    done = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert done["type"] == "tool_search_call" and done["execution"] == "client"
    assert done["arguments"] == {"query": "spawn agent", "limit": 2}
    found = {"type": "tool_search_output", "call_id": "call_9", "execution": "client", "status": "completed",
             "tools": [{"type": "namespace", "name": "multi_agent_v1", "description": "agents",
                        "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]}]}
    again = parse_responses_request({**body, "input": body["input"] + [done, found]})
    assert "multi_agent_v1.spawn_agent" in {t.name for t in again.tools}
    assert again.messages[-1].role == "tool" and "multi_agent_v1.spawn_agent" in again.messages[-1].content


def test_failure_leaves_the_open_item_unfinished() -> None:
    stream = ResponseStream("resp_1", "m", 1)
    events = stream.start() + stream.feed(TextOut("half a sent"))
    events += stream.fail(ProviderDisconnected("the chat service dropped the reply", provider="demo"))
    assert [e["type"] for e in events][-1] == "response.failed"
    assert not any(e["type"] == "response.output_item.done" for e in events)
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["output"] == []


def test_finish_with_length_is_incomplete() -> None:
    stream = ResponseStream("resp_1", "m", 1)
    events = stream.start() + stream.feed(TextOut("cut")) + stream.feed(Finished("length", Usage(1, 1)))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


@given(st.lists(st.one_of(st.text(min_size=1).map(TextOut), st.text(min_size=1).map(ReasoningOut),
                          st.integers(0, 3)), max_size=12))
def test_every_item_is_done_once_and_whole(plan: list[Any]) -> None:
    """Any mix of text, reasoning and calls: each output item is added once and done once, its
    done text is the concatenation of its deltas, and the completed output lists them in order."""
    stream = ResponseStream("resp_1", "m", 1)
    events = stream.start()
    for n, step in enumerate(plan):
        item = CallOut(n, f"call_{n}", ToolCall("t", {"n": step})) if isinstance(step, int) else step
        events += stream.feed(item)
    events += stream.feed(Finished("stop", Usage(1, 1)))
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert added == [e["output_index"] for e in done] == list(range(len(added)))
    output = events[-1]["response"]["output"]
    assert output == [e["item"] for e in done]
    for item in output:
        deltas = "".join(e["delta"] for e in events if e.get("item_id") == item["id"] and e["type"].endswith(".delta"))
        if item["type"] == "message":
            assert item["content"][0]["text"] == deltas
        elif item["type"] == "reasoning":
            assert item["summary"][0]["text"] == deltas
    texts = "".join(s.text for s in plan if isinstance(s, TextOut))
    assert events[-1]["response"]["output_text"] == texts


def test_bad_requests_are_refused_with_the_field_named() -> None:
    base = {"model": "m", "input": "hi"}
    assert parse_responses_request(base).messages == (Message("user", "hi"),)
    cases = [({"previous_response_id": "resp_x"}, "previous_response_id"),
             ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
             ({"input": [{"type": "message", "role": "tool", "content": "x"}]}, "input[0].role"),
             ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
             ({"tools": [{"type": "function"}]}, "tools[0].name"),
             ({"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "custom", "name": "x"}]}]},
              "tools[0].tools[0]"),
             ({"tool_choice": 7}, "tool_choice"), ({"model": ""}, "model"), ({"input": []}, "input"),
             ({"text": {"format": {"type": "json_schema", "schema": {"type": "array", "minItems": "x"}}}},
              "text.format.schema.minItems"),
             ({"text": {"format": {"type": "json_schema", "schema": {"properties": []}}}},
              "text.format.schema.properties")]
    for extra, param in cases:
        with pytest.raises(InvalidRequest) as info:
            parse_responses_request({**base, **extra})
        assert info.value.param == param, extra
    with pytest.raises(UnsupportedFeature):
        parse_responses_request({**base, "background": True})


def test_affinity_from_the_session_header_and_reasoning_references_skipped() -> None:
    body = {"model": "m", "input": [{"role": "user", "content": "hi"},
                                    {"type": "item_reference", "id": "rs_abc"},
                                    {"role": "assistant", "content": [{"type": "output_text", "text": "yo"}]}]}
    request = parse_responses_request(body, session="sess-1")
    assert request.affinity == "sess-1"
    assert [m.role for m in request.messages] == ["user", "assistant"]
    assert parse_responses_request({**body, "prompt_cache_key": "k"}, session="sess-1").affinity == "k"
    assert parse_responses_request({"model": "m", "input": "x"}).affinity is None


def test_previous_response_id_is_honoured_when_known() -> None:
    earlier = (Message("user", "first"), Message("assistant", "answer"))
    request = parse_responses_request({"model": "m", "input": "second", "previous_response_id": "resp_1",
                                       "instructions": "be brief"},
                                      lookup=lambda rid: earlier if rid == "resp_1" else None)
    assert [m.content for m in request.messages] == ["be brief", "first", "answer", "second"]


def test_text_format_json_schema_answers_json_that_fits() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    request = parse_responses_request({"model": "m", "input": "name it",
                                       "text": {"format": {"type": "json_schema", "name": "t", "schema": schema}}})
    assert request.json_schema == schema
    stream = ResponseStream("resp_1", "m", 1, schema=request.json_schema)
    events = stream.start() + stream.feed(TextOut('Here: {"title": ')) + stream.feed(TextOut('"Fix the bug"}'))
    events += stream.feed(Finished("stop", Usage(1, 1)))
    assert json.loads(events[-1]["response"]["output_text"]) == {"title": "Fix the bug"}
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) == 1  # held back, then sent whole
    with pytest.raises(InvalidRequest):
        parse_responses_request({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}})
