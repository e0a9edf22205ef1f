"""The Open WebUI reply reader on its own: page events (as observed from 0.12.4) in, turn events out."""

from __future__ import annotations

import itertools
from typing import Any

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


def test_the_sse_fallback() -> None:
    reply = ReplyText()
    assert reply.add("ab") + reply.add("") + reply.add("c") + reply.finish() == [Delta("ab"), Delta("c"), Done("abc")]
    assert reply.finish() == []


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
