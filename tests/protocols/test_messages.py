"""Anthropic Messages: captured Claude Code requests parse; answers render as the fixtures show accepted."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roogab.envelope import ToolCall
from roogab.errors import (
    InvalidRequest,
    ModelNotFound,
    ProviderDisconnected,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    ReplyFormatError,
    Unauthorized,
)
from roogab.outputs import CallOut, Finished, Out, Ping, ReasoningOut, TextOut
from roogab.protocols.messages import MessagesStream, count_texts, error_response, message_json, parse_request
from roogab.registry import message_digest, thread_key
from roogab.wire import Usage

from .sse import accepted_replies, bodies, capture, events

SESSIONS = ["main_four_turns", "tui_title_plus_four_turns", "compaction", "tool_search_tool_reference",
            "invalid_tool_calls", "stop_reason_max_tokens", "cut_inside_tool_input", "cut_before_message_delta",
            "sse_error_then_nonstream_fallback", "no_event_lines_then_nonstream_fallback", "minimal_stream",
            "known_model_claude-sonnet-4-5_turn1", "http_529_twice", "connection_reset"]
HEADERS = {"X-Claude-Code-Session-Id": "36abd276-39fa-4335-9d0a-23a728e337ef"}


@pytest.mark.parametrize("session", SESSIONS)
def test_every_captured_request_parses(session: str) -> None:
    for body in bodies(session):
        request = parse_request(body, HEADERS)
        assert request.protocol == "messages" and request.messages
        assert request.stream is body.get("stream", False)
        assert {t.name for t in request.tools} <= {t["name"] for t in body.get("tools", [])}
        assert "DeferredToolPlaceholder" not in {t.name for t in request.tools}


def test_count_tokens_requests_parse() -> None:
    for body in bodies("tui_context_command_count_tokens"):
        request = parse_request(body, count_only=True)
        assert count_texts(request)


def test_turn_one_shape() -> None:
    body = bodies("main_four_turns")[0]
    request = parse_request(body, {})
    roles = [m.role for m in request.messages]
    assert roles == ["system", "user", "system"]  # system param, prompt, the mid-conversation message
    assert not request.messages[0].content.startswith("x-anthropic-billing-header")
    assert "Read README.md, then write hello.txt." in request.messages[1].content
    assert request.messages[2].content.startswith("# Environment")
    assert [t.name for t in request.tools] == [t["name"] for t in body["tools"] if not t.get("defer_loading")]
    assert request.affinity == "claude-code:36abd276-39fa-4335-9d0a-23a728e337ef"  # from metadata.user_id


def test_later_turn_keeps_ids_results_and_thinking() -> None:
    request = parse_request(bodies("main_four_turns")[3], HEADERS)
    tail = request.messages[3:]
    assert [m.role for m in tail] == ["assistant", "tool", "assistant", "tool", "assistant", "tool", "tool"]
    third = tail[4]
    assert [(c.id, c.name) for c in third.tool_calls] == [("toolu_cap0006", "Bash"), ("toolu_cap0007", "Read")]
    assert third.thinking[0].text == "Check the file and list the folder."
    assert third.thinking[0].signature == "c2lnLWNhcA=="
    assert [m.tool_call_id for m in tail[5:]] == ["toolu_cap0007", "toolu_cap0006"]  # completion order kept
    assert json.loads(tail[2].tool_calls[0].arguments)["content"].endswith("]]>\n")


def test_the_task_keeps_one_thread_key_across_turns() -> None:
    keys = {thread_key(parse_request(b, {})) for b in bodies("main_four_turns")}
    assert len(keys) == 1
    turns = [parse_request(b, {}) for b in bodies("main_four_turns")]
    for before, after in itertools.pairwise(turns):
        digests = [message_digest(m) for m in after.messages[:len(before.messages)]]
        assert digests == [message_digest(m) for m in before.messages]


@pytest.mark.parametrize("user_id", ["not json", '{"session_id": 5}', "[" * 3000 + "]" * 3000],
                         ids=["prose", "id a number", "nested too deep"])
def test_a_user_id_without_a_session_gives_no_affinity(user_id: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": user_id}}
    assert parse_request(body, {}).affinity is None


def test_tool_errors_and_tool_references() -> None:
    bad = parse_request(bodies("invalid_tool_calls")[1], {})
    results = [m for m in bad.messages if m.role == "tool"]
    assert [m.is_error for m in results] == [True, True] and "No such tool" in results[0].content
    found = parse_request(bodies("tool_search_tool_reference")[1], {})
    [result] = [m for m in found.messages if m.role == "tool"]
    assert result.content == "Tool WebFetch is now available.\n\nTool NotebookEdit is now available."
    assert {"WebFetch", "NotebookEdit"} <= {t.name for t in found.tools}


def test_compaction_request_is_a_tool_result_then_the_instruction() -> None:
    request = parse_request(bodies("compaction")[1], {})
    assert [m.role for m in request.messages[-2:]] == ["tool", "user"]
    assert request.messages[-1].content.startswith("CRITICAL: Respond with TEXT ONLY.")


def test_title_request_asks_for_json() -> None:
    title = parse_request(bodies("tui_title_plus_four_turns")[0], {})
    assert title.json_schema is not None and "title" in title.json_schema["properties"]
    assert not title.tools


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0]"),
    ({"model": "m", "messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "x"}]}]},
     "messages[0].content[0].id"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "maybe"}},
     "tool_choice"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": ["auto"]}},
     "tool_choice"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": {"any": 1}}},
     "tool_choice"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}, "max_tokens"),
    ({"model": "m", "system": [{"type": "image"}], "messages": [{"role": "user", "content": "hi"}]}, "system[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}],
      "output_config": {"format": {"type": "json_schema"}}}, "output_config.format"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}],
      "output_config": {"format": {"type": "json_schema", "schema": {"type": "array", "minItems": "x"}}}},
     "output_config.format.schema.minItems"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}],
      "output_format": {"type": "json_schema", "schema": {"properties": "title"}}}, "output_format.schema.properties"),
])
def test_bad_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request(body, {})
    assert info.value.param == param


def test_images_and_tool_choice() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    body = {"model": "m", "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, image, image]}]}
    request = parse_request(body, {})
    assert request.messages[0].images == 2 and request.tool_choice == "required"


def _items(blocks: list[dict[str, Any]], stop: str = "tool_calls") -> list[Out]:
    items: list[Out] = []
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            items.append(TextOut(block["text"]))
        elif block["type"] == "thinking":
            items.append(ReasoningOut(block["thinking"]))
        else:
            items.append(CallOut(i, f"call_{i}", ToolCall(block["name"], block["input"])))
    return [*items, Finished(stop, Usage(1200, 42))]


def _render(items: list[Out], **kwargs: Any) -> str:
    stream = MessagesStream("msg_1", "demo/gab-1", **kwargs)
    return "".join(stream.start() + [f for item in items for f in stream.feed(item)])


def _shape(sse: str) -> list[tuple[str, Any]]:
    """Event order with block types and stop reasons; pings and delta splits left out."""
    shape: list[tuple[str, Any]] = []
    for name, data in events(sse):
        if name == "ping" or name == "content_block_delta" and shape and shape[-1][0] == name \
                and shape[-1][1] == data["delta"]["type"]:
            continue
        detail = {"content_block_start": lambda d: (d["index"], d["content_block"]["type"]),
                  "content_block_delta": lambda d: d["delta"]["type"],
                  "content_block_stop": lambda d: d["index"],
                  "message_delta": lambda d: d["delta"]["stop_reason"]}.get(name, lambda d: None)(data)
        shape.append((name, detail))
    return shape


@pytest.mark.parametrize("turn", range(4))
def test_answers_have_the_shape_claude_code_accepted(turn: int) -> None:
    script = capture("main_four_turns")["script"]["anthropic"][turn]
    stop = "stop" if all(b["type"] == "text" for b in script["blocks"]) else "tool_calls"
    ours = _render(_items(script["blocks"], stop))
    accepted = accepted_replies("main_four_turns")[turn]
    assert _shape(ours) == _shape(accepted)
    rebuilt = _accumulate(ours)
    assert rebuilt == _accumulate(accepted) | {"id": "msg_1", "model": "demo/gab-1",
                                               "ids": [f"call_{i}" for i, b in enumerate(script["blocks"])
                                                       if b["type"] == "tool_use"]}


def _accumulate(sse: str) -> dict[str, Any]:
    """What an Anthropic client builds from a stream: blocks, ids, stop reason."""
    message: dict[str, Any] = {}
    blocks: list[dict[str, Any]] = []
    for name, data in events(sse):
        if name == "message_start":
            message = {"id": data["message"]["id"], "model": data["message"]["model"]}
        elif name == "content_block_start":
            assert data["index"] == len(blocks)
            blocks.append({**data["content_block"], "partial": ""})
        elif name == "content_block_delta":
            block, delta = blocks[data["index"]], data["delta"]
            key = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial",
                   "signature_delta": "signature"}[delta["type"]]
            value = delta.get(key if key != "partial" else "partial_json")
            block[key] = value if key == "signature" else block[key] + value
        elif name == "message_delta":
            message["stop"] = data["delta"]["stop_reason"]
    for block in blocks:
        if block["type"] == "tool_use":
            block["input"] = json.loads(block.pop("partial"))
        else:
            block.pop("partial")
        block.pop("signature", None)
    message["ids"] = [b.pop("id") for b in blocks if b["type"] == "tool_use"]
    message["blocks"] = blocks
    return message


def test_ping_and_text_after_a_call_open_a_new_block() -> None:
    items: list[Out] = [TextOut("a"), Ping(), CallOut(0, "call_0", ToolCall("Read", {"file_path": "/x"})),
                        TextOut("b"), Finished("tool_calls", Usage(5, 6))]
    got = _accumulate(_render(items))
    assert [b["type"] for b in got["blocks"]] == ["text", "tool_use", "text"] and got["stop"] == "tool_use"
    last = events(_render(items))[-2][1]
    assert last["usage"]["output_tokens"] == 6 and last["usage"]["input_tokens"] == 5


@given(st.text(min_size=1), st.integers(min_value=1, max_value=5000))
def test_tool_input_pieces_join_to_the_exact_arguments(content: str, repeat: int) -> None:
    arguments = {"file_path": "/workspace/t.txt", "content": content * (repeat // len(content) + 1)}
    got = _accumulate(_render([CallOut(0, "call_0", ToolCall("Write", arguments)), Finished("tool_calls",
                                                                                             Usage(1, 1))]))
    assert got["blocks"][0]["input"] == arguments


def test_thinking_block_gets_a_signature() -> None:
    frames = events(_render([ReasoningOut("think"), TextOut("hi"), Finished("stop", Usage(1, 1))]))
    signature = [d["delta"] for n, d in frames if n == "content_block_delta"
                 and d["delta"]["type"] == "signature_delta"]
    assert len(signature) == 1 and signature[0]["signature"]


def test_structured_output_is_held_and_fitted() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    sse = _render([TextOut("Here: ```json\n{\"title\": "), TextOut("\"Hello file\"}\n```"),
                   Finished("stop", Usage(1, 1))], schema=schema)
    assert json.loads(_accumulate(sse)["blocks"][0]["text"]) == {"title": "Hello file"}
    prose = message_json("msg_2", "m", [TextOut("Capture title"), Finished("stop", Usage(1, 1))], schema)
    assert json.loads(prose["content"][0]["text"]) == {"title": "Capture title"}


def test_message_json_matches_the_fallback_answer_claude_code_used() -> None:
    accepted = capture("sse_error_then_nonstream_fallback")["requests"][1]["reply"]["json"]
    ours = message_json("msg_x", "cap-model", [TextOut("Just text, no tools."), Finished("stop", Usage(1200, 42))])
    assert set(ours) == set(accepted)
    assert ours["content"] == accepted["content"] and ours["stop_reason"] == "end_turn"
    assert set(ours["usage"]) == set(accepted["usage"])
    calls = message_json("m", "x", [CallOut(0, "call_0", ToolCall("Read", {"file_path": "/a"})),
                                    Finished("tool_calls", Usage(1, 1))])
    assert calls["content"] == [{"type": "tool_use", "id": "call_0", "name": "Read", "input": {"file_path": "/a"}}]
    assert calls["stop_reason"] == "tool_use"


@pytest.mark.parametrize(("exc", "status", "kind"), [
    (ProviderUnavailable("down"), 529, "overloaded_error"),
    (ProviderDisconnected("cut"), 529, "overloaded_error"),
    (ProviderTimeout("slow"), 529, "overloaded_error"),
    (ProviderRejected("busy"), 529, "overloaded_error"),
    (ReplyFormatError("bad"), 500, "api_error"),
    (InvalidRequest("no"), 400, "invalid_request_error"),
    (Unauthorized("key"), 401, "authentication_error"),
    (ModelNotFound("which"), 404, "not_found_error"),
])
def test_errors_in_anthropic_shape(exc: Exception, status: int, kind: str) -> None:
    assert isinstance(exc, Exception)
    got_status, body = error_response(exc)  # type: ignore[arg-type]
    assert (got_status, body["type"], body["error"]["type"]) == (status, "error", kind)
    accepted = capture("http_529_twice")["requests"][0]["reply"]["json"]
    assert set(body) <= set(accepted) and set(body["error"]) == set(accepted["error"])


def test_error_mid_stream_is_an_error_event() -> None:
    stream = MessagesStream("msg_1", "m")
    [frame] = stream.fail(ProviderDisconnected("dropped"))
    accepted = events(capture("sse_error_then_nonstream_fallback")["requests"][0]["reply"]["sse"])[-1]
    name, data = events(frame)[0]
    assert name == accepted[0] == "error" and data["error"]["type"] == accepted[1]["error"]["type"]
