"""Conversation continuity in memory: continuations send only the suffix; divergence replays."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support import CLINE, KILO, captured_bodies

from roogab.registry import Registry, request_key
from roogab.wire import ChatRequest, Message, ToolCallRef, ToolSpec, parse_chat_request


def _turn(registry: Registry, body: dict[str, Any], client: str = "addr:1") -> Any:
    req = parse_chat_request(body)
    with registry.turn(client, req, "demo", "gab-1") as plan:
        return plan


def _cline_reply() -> Message:
    call = ToolCallRef("call_cap1", "read_files", '{"files": [{"path": "/home/dev/project/hello.txt"}]}')
    return Message("assistant", "Reading the file.", tool_calls=(call,))


def test_second_turn_is_a_continuation_with_only_the_tool_result() -> None:
    registry = Registry()
    first, second = captured_bodies(CLINE)
    plan = _turn(registry, first)
    assert plan.fresh and not plan.replay and [m.role for m in plan.new] == ["system", "user"]
    registry.record(plan, "conv-1", _cline_reply(), "{}")
    plan2 = _turn(registry, second)
    assert not plan2.fresh and plan2.conversation.handle == "conv-1"
    assert [m.role for m in plan2.new] == ["tool"]


def test_edited_history_starts_a_fresh_conversation_with_replay() -> None:
    registry = Registry()
    first, second = captured_bodies(CLINE)
    plan = _turn(registry, first)
    registry.record(plan, "conv-1", _cline_reply(), "{}")
    second["messages"][2]["content"] = "I edited this."
    plan2 = _turn(registry, second)
    assert plan2.fresh and plan2.replay
    assert [m.role for m in plan2.history] == ["system", "user", "assistant"]
    assert [m.role for m in plan2.new] == ["tool"]


def test_two_tasks_from_one_client_never_mix() -> None:
    registry = Registry()
    cline, _ = captured_bodies(CLINE)
    kilo = captured_bodies(KILO)[0]
    a, b = _turn(registry, cline), _turn(registry, kilo)
    assert a.conversation.id != b.conversation.id


def test_same_task_from_two_clients_never_mix() -> None:
    registry = Registry()
    first, _ = captured_bodies(CLINE)
    plan = _turn(registry, first, "addr:1")
    registry.record(plan, "conv-1", _cline_reply(), "{}")
    assert _turn(registry, captured_bodies(CLINE)[1], "addr:2").fresh


def test_failed_turn_is_never_continued() -> None:
    registry = Registry()
    first, second = captured_bodies(CLINE)
    plan = _turn(registry, first)
    registry.drop(plan)
    assert _turn(registry, second).fresh


def test_restart_turns_a_continuation_into_a_full_replay() -> None:
    registry = Registry()
    first, second = captured_bodies(CLINE)
    registry.record(_turn(registry, first), "conv-1", _cline_reply(), "{}")
    plan = registry.restart(_turn(registry, second))
    assert plan.fresh and plan.replay and [m.role for m in plan.new] == ["tool"]


def test_a_turn_holds_its_conversation() -> None:
    registry = Registry()
    first, second = captured_bodies(CLINE)
    registry.record(_turn(registry, first), "conv-1", _cline_reply(), "{}")
    req = parse_chat_request(second)
    order: list[str] = []
    with registry.turn("addr:1", req, "demo", "gab-1") as plan:
        def other() -> None:
            with registry.turn("addr:1", req, "demo", "gab-1"):
                order.append("second")
        t = threading.Thread(target=other)
        t.start()
        t.join(0.2)
        order.append("first")
        registry.record(plan, "conv-1", Message("assistant", "done"), "{}")
    t.join(5)
    assert order == ["first", "second"]


_text = st.text(st.characters(exclude_categories=("Cs",)))  # a request is valid Unicode
_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                            max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(tools=st.lists(st.tuples(_text.filter(bool), _text, st.dictionaries(_text, _json_values, max_size=4)),
                      max_size=4),
       digests=st.lists(st.text("0123456789abcdef", min_size=32, max_size=32), max_size=4),
       choice=st.sampled_from(["auto", "none", "required", "ünïcode"]))
def test_the_retry_key_is_the_one_the_stores_hold_whatever_the_tools(
        tools: list[tuple[str, str, dict[str, Any]]], digests: list[str], choice: str) -> None:
    """request_key builds its text from the request's tools_json (made once per request); the
    key must stay what whole-request JSON gave, or a retry after an upgrade would not be known."""
    request = ChatRequest(model="m", messages=(), tools=tuple(ToolSpec(n, d, p) for n, d, p in tools),
                          tool_choice=choice)
    whole = json.dumps([digests, [[n, d, p] for n, d, p in tools], choice, request.native_tools],
                       sort_keys=True, ensure_ascii=False)
    assert request_key(request, tuple(digests)) == hashlib.sha256(whole.encode()).hexdigest()[:32]
    assert request.tools_json is request.tools_json  # made once
