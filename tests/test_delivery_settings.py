"""tool_choice and the profile's `content` setting, acted on by the turn (ChatService over a fake)."""

from __future__ import annotations

from typing import Any

import pytest

from roogab.config import load_config
from roogab.errors import ReplyFormatError
from roogab.outputs import CallOut, Out, TextOut
from roogab.prompt import PromptBook
from roogab.providers.fake import FakeProvider
from roogab.registry import Registry
from roogab.service import ChatService, TurnSettings
from roogab.wire import parse_chat_request

SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}}
TEXT_ONLY = "```lua\nreturn { text = [==[Just talk.]==] }\n```"
CALL = '```lua\nreturn { tool_calls = { { name = "read_file", arguments = { path = "a" } } } }\n```'


def _run(*replies: Any, tool_choice: Any = "auto", content: str = "auto") -> tuple[list[Out], FakeProvider]:
    fake = FakeProvider(list(replies), chunk=4)
    service = ChatService({"fake": fake}, Registry(), PromptBook.load(),
                          TurnSettings(content=(("fake", content),)))
    request = parse_chat_request({
        "model": "fake/model", "stream": True, "tool_choice": tool_choice,
        "messages": [{"role": "user", "content": "go"}],
        "tools": [{"type": "function", "function": {"name": n, "parameters": SCHEMA}}
                  for n in ("read_file", "list_files")]})
    return list(service.run(request, "addr:t")), fake


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "read_file"}}])
def test_required_and_named_tool_choice_repair_a_text_only_reply(choice: Any) -> None:
    items, fake = _run(TEXT_ONLY, CALL, tool_choice=choice)
    assert [i.call.name for i in items if isinstance(i, CallOut)] == ["read_file"]
    assert len(fake.sent) == 2 and "tool_choice" in fake.sent[1].text and "no tool call" in fake.sent[1].text


def test_required_tool_choice_fails_when_the_repair_is_text_too() -> None:
    with pytest.raises(ReplyFormatError, match="tool_choice"):
        _run(TEXT_ONLY, TEXT_ONLY, tool_choice="required")


def test_named_tool_choice_offers_only_that_tool_and_none_offers_none() -> None:
    _, fake = _run(CALL, tool_choice={"type": "function", "function": {"name": "read_file"}})
    assert "read_file" in fake.sent[0].text and "list_files" not in fake.sent[0].text
    items, fake = _run(TEXT_ONLY, tool_choice="none")
    assert "read_file" not in fake.sent[0].text and "list_files" not in fake.sent[0].text
    assert "".join(i.text for i in items if isinstance(i, TextOut)) == "Just talk."


PAGE = '<pre><code class="language-lua">return { text = [==[&lt;b&gt; page]==] }\n</code></pre>'


def test_content_setting_decides_how_replies_are_read() -> None:
    items, _ = _run(PAGE, content="auto")
    assert "".join(i.text for i in items if isinstance(i, TextOut)) == "<b> page"
    items, _ = _run(PAGE, content="html")
    assert "".join(i.text for i in items if isinstance(i, TextOut)) == "<b> page"
    items, _ = _run(PAGE, content="markdown")  # read as it is: no envelope starts a line
    assert "".join(i.text for i in items if isinstance(i, TextOut)) != "<b> page"


def test_content_setting_reaches_the_turn_settings() -> None:
    config = load_config(env={}, overrides={"providers": [{"name": "p", "kind": "socketio", "url": "http://x",
                                                           "content": "html"}]})
    from roogab.app import build_service

    service = build_service(config, {})
    assert service.settings.html("p") is True and service.settings.html("other") is None
