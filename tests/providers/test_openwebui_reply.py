"""The Open WebUI reply reader on its own: page events (as observed from 0.12.4) in, turn events out."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roogab.providers._openwebui_reply import Failure, ReplyText, output_text
from roogab.providers.base import Delta, Done, Snapshot


def _delta(piece: str, kind: str = "response.output_text.delta") -> tuple[str, dict[str, Any]]:
    return "response:completion", {"type": kind, "item_id": "msg_1", "output_index": 0, "content_index": 0,
                                   "delta": piece}


def _output(text: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    return "chat:completion", {"output": [{"type": "message", "id": "msg_1", "role": "assistant",
                                           "content": [{"type": "output_text", "text": text}]}], **extra}


def _feed(events: list[tuple[str, dict[str, Any]]]) -> list[object]:
    reply = ReplyText()
    out: list[object] = []
    for kind, data in events:
        out += reply.feed(kind, data)
    return out


def test_the_observed_stream_becomes_deltas_then_done() -> None:
    events = [("chat:active", {"active": True}), _delta("```lua\n"), _delta("return {}"),
              ("chat:completion", {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
              _output("```lua\nreturn {}", done=True, title="RooGab"), ("chat:active", {"active": False})]
    assert _feed(events) == [Delta("```lua\n"), Delta("return {}"), Done("```lua\nreturn {}")]


def test_reasoning_is_not_the_answer() -> None:
    events = [_delta("thinking", "response.reasoning_text.delta"), _delta("answer"), _output("answer", done=True)]
    assert _feed(events) == [Delta("answer"), Done("answer")]


def test_a_snapshot_that_extends_is_a_delta_and_one_that_rewrites_is_a_snapshot() -> None:
    events = [_delta("Hello"), _output("Hello, world"), _output("Goodbye"), _delta("!"),
              ("chat:completion", {"done": True, "content": "Goodbye!"})]
    assert _feed(events) == [Delta("Hello"), Delta(", world"), Snapshot("Goodbye"), Snapshot("Goodbye!"),
                             Done("Goodbye!")]


def test_the_final_content_wins_over_what_streamed() -> None:
    assert _feed([_delta("abc"), ("chat:completion", {"done": True, "content": "abcd"})]) == [
        Delta("abc"), Delta("d"), Done("abcd")]


def test_errors_and_cancels_end_the_reply() -> None:
    error = ("chat:message:error", {"error": {"content": "model exploded"}, "done": True})
    assert _feed([_delta("a"), error, _delta("b")]) == [Delta("a"), Failure("model exploded")]
    assert _feed([("chat:tasks:cancel", {})]) == [Failure("the server cancelled the reply", cancelled=True)]
    assert _feed([("chat:completion", {"error": {"detail": "401"}})]) == [Failure("401")]


def _chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {"content": content} if content is not None else {}
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_the_sse_fallback() -> None:
    reply = ReplyText()
    events = [e for p in (_chunk("ab"), _chunk(""), "not json", _chunk("c"), _chunk(finish="stop"), "[DONE]")
              for e in reply.sse(p)]
    assert events == [Delta("ab"), Delta("c"), Done("abc")]
    assert reply.finish() == [] and reply.sse(_chunk("late")) == []


def test_an_sse_answer_without_its_done_is_cut() -> None:
    reply = ReplyText()
    assert reply.sse(_chunk("Here is the plan: first")) == [Delta("Here is the plan: first")]
    assert reply.finish() == [Failure("the answer stream ended before its [DONE]", cut=True)]


@pytest.mark.parametrize(("payload", "message"), [
    (json.dumps({"error": {"message": "Chat completion stream failed"}}), "Chat completion stream failed"),
    (json.dumps({"error": "upstream overloaded"}), "upstream overloaded"),
    (_chunk(finish="length"), "the model stopped at its length limit, so the reply is cut"),
])
def test_an_sse_error_or_length_stop_fails_the_reply(payload: str, message: str) -> None:
    """Open WebUI sends its own error payload and then [DONE]; the cut text must not be Done."""
    reply = ReplyText()
    events = reply.sse(_chunk("Step one: open the")) + reply.sse(payload) + reply.sse("[DONE]") + reply.finish()
    assert events == [Delta("Step one: open the"), Failure(message)]


def test_a_string_error_in_a_completion_event_is_a_failure() -> None:
    """Open WebUI forwards the backend's ``error`` value as it came: a string too, then ``done``."""
    events = _feed([_delta("Step one: open the"), ("chat:completion", {"error": "upstream model crashed"}),
                    ("chat:completion", {"done": True, "content": "Step one: open the"})])
    assert events == [Delta("Step one: open the"), Failure("upstream model crashed")]


def test_output_text_takes_only_message_text() -> None:
    items = [{"type": "reasoning", "content": [{"type": "output_text", "text": "no"}]},
             {"type": "message", "content": [{"type": "output_text", "text": "yes"}, {"type": "refusal"}]}, 3]
    assert output_text(items) == "yes"


@given(st.text(max_size=40), st.lists(st.integers(0, 40), max_size=6), st.sets(st.integers(0, 8), max_size=4))
def test_any_split_with_any_snapshots_streams_the_text_exactly(text: str, cuts: list[int],
                                                                snapshots_after: set[int]) -> None:
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    events: list[tuple[str, dict[str, Any]]] = []
    for i, piece in enumerate(pieces):
        events.append(_delta(piece))
        if i in snapshots_after:
            events.append(_output("".join(pieces[:i + 1])))
    out = _feed([*events, _output(text, done=True)])
    assert out[-1] == Done(text)
    assert all(isinstance(e, Delta) for e in out[:-1])  # snapshots that agree are never rewrites
    assert "".join(e.text for e in out[:-1] if isinstance(e, Delta)) == text
