"""Turns under attack from the model's own output and from odd retries (issue 13, items 1, 2, 8, 9).

ChatService over a FakeProvider and a real Registry: the turn logic without sockets.
"""

from __future__ import annotations

from typing import Any

import pytest

from roogab.errors import ReplyFormatError
from roogab.outputs import Finished, Out, TextOut
from roogab.prompt import PromptBook
from roogab.providers.fake import FakeProvider
from roogab.registry import Registry
from roogab.service import ChatService, TurnSettings
from roogab.wire import ChatRequest, parse_chat_request

BOOK = PromptBook.load()


def _service(*replies: Any, registry: Registry | None = None) -> tuple[ChatService, FakeProvider]:
    fake = FakeProvider(list(replies), chunk=4)
    service = ChatService({"fake": fake}, registry or Registry(), BOOK, TurnSettings(repair_attempts=1))
    return service, fake


def _request(text: str = "hello", **extra: Any) -> ChatRequest:
    return parse_chat_request({"model": "fake/model", "messages": [{"role": "user", "content": text}], **extra})


def _run(service: ChatService, request: ChatRequest) -> list[Out]:
    return list(service.run(request, "addr:test"))


@pytest.mark.parametrize("cut", ["```lua\nreturn {\n  text", "print([====", '```json\n{"text"',
                                 '<pre><code class="language-lua">return {'])
@pytest.mark.parametrize("stream", [False, True])
def test_cut_off_opening_without_tools_is_non_compliant(cut: str, stream: bool) -> None:
    service, fake = _service(cut, cut)
    with pytest.raises(ReplyFormatError) as info:
        _run(service, _request(stream=stream))
    assert info.value.code == "non_compliant_response"
    assert len(fake.sent) == 2  # one repair, then the error


def test_cut_off_opening_then_a_good_repair_is_answered() -> None:
    service, fake = _service("```lua\nreturn {\n  text", "```lua\nreturn { text = [==[whole]==] }\n```")
    items = _run(service, _request())
    assert "".join(i.text for i in items if isinstance(i, TextOut)) == "whole"
    assert isinstance(items[-1], Finished) and items[-1].finish_reason == "stop"
    assert len(fake.sent) == 2


def test_plain_prose_without_tools_is_still_an_answer() -> None:
    service, fake = _service("Just prose, no envelope.")
    items = _run(service, _request())
    assert "".join(i.text for i in items if isinstance(i, TextOut)) == "Just prose, no envelope."
    assert len(fake.sent) == 1


# -- item 9: hostile model output ---------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "write", "parameters": {"type": "object"}}}]


def _nested(depth: int) -> str:
    return "{ a = " * depth + "1" + " }" * depth


@pytest.mark.parametrize("how", ["table", "json_string"])
@pytest.mark.parametrize("native", [True, False])
def test_arguments_nested_3000_deep_are_non_compliant(how: str, native: bool) -> None:
    if how == "table":
        reply = f'```lua\nreturn {{ tool_calls = {{ {{ name = "write", arguments = {_nested(3000)} }} }} }}\n```'
    else:
        deep = '{"a": ' * 3000 + "1" + "}" * 3000
        reply = f'```lua\nreturn {{ tool_calls = {{ {{ name = "write", arguments = [==[{deep}]==] }} }} }}\n```'
    service, fake = _service(reply, reply)
    extra: dict[str, Any] = {"tools": TOOLS} if native else {}
    with pytest.raises(ReplyFormatError) as info:  # the old code: RecursionError, Flask's plain 500
        _run(service, _request(**extra))
    assert info.value.code == "non_compliant_response" and len(fake.sent) == 2


def test_arguments_nested_50_deep_are_fine() -> None:
    reply = f'```lua\nreturn {{ tool_calls = {{ {{ name = "write", arguments = {_nested(50)} }} }} }}\n```'
    service, _ = _service(reply)
    items = _run(service, _request(tools=TOOLS))
    assert isinstance(items[-1], Finished) and items[-1].finish_reason == "tool_calls"


def test_twenty_thousand_calls_go_out_in_linear_time() -> None:
    """Counted, not timed: the old check compared each call with every earlier one."""
    from roogab.envelope import ToolCall

    compared = 0
    real_eq = ToolCall.__eq__

    def counting_eq(self: ToolCall, other: object) -> bool:
        nonlocal compared
        compared += 1
        return real_eq(self, other)

    calls = "".join(f'{{ name = "write", arguments = {{ n = {i % 19_000} }} }},' for i in range(20_000))
    service, _ = _service(f"```lua\nreturn {{ tool_calls = {{ {calls} }} }}\n```")
    ToolCall.__eq__ = counting_eq  # type: ignore[method-assign]
    try:
        items = _run(service, _request(tools=TOOLS))
    finally:
        ToolCall.__eq__ = real_eq  # type: ignore[method-assign]
    # a reply's own calls all go out (a model may mean a call twice); only a repaired reply's
    # calls are checked against those already accepted (tests/test_service.py)
    assert sum(1 for i in items if type(i).__name__ == "CallOut") == 20_000
    assert compared < 100_000
