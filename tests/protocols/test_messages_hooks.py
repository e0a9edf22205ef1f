"""What Messages needs of the shared parts: the session key in the registry, system messages and
failed results in the prompt, JSON-schema answers, the published ids, the route table."""

from __future__ import annotations

import dataclasses

import pytest

from roogab.prompt import PromptBook
from roogab.protocols import PROTOCOLS, protocol_for
from roogab.protocols.messages import AnthropicMessages
from roogab.registry import Registry, thread_key
from roogab.service import published_id
from roogab.store import TurnRecord
from roogab.structured import fit_json
from roogab.turnlog import request_summary
from roogab.wire import ChatRequest, Message

from .sse import bodies


def _request(*messages: Message, affinity: str | None = None) -> ChatRequest:
    return ChatRequest(model="m", messages=messages, affinity=affinity, protocol="messages")


def test_session_key_finds_the_task_even_when_its_opening_changes() -> None:
    a = _request(Message("system", "env, Monday"), Message("user", "task"), affinity="claude-code:s1")
    b = _request(Message("system", "env, Tuesday"), Message("user", "task"), affinity="claude-code:s1")
    assert thread_key(a) == thread_key(b) != thread_key(dataclasses.replace(b, affinity="claude-code:s2"))
    assert thread_key(dataclasses.replace(a, affinity=None)) != thread_key(dataclasses.replace(b, affinity=None))


def test_a_session_still_continues_only_what_it_extends() -> None:
    registry = Registry()
    main = _request(Message("system", "agent"), Message("user", "task"), affinity="claude-code:s1")
    with registry.turn("c", main, "demo", "gab-1") as plan:
        registry.record(plan, "conv-1", Message("assistant", "ok"), "{}")
    title = _request(Message("system", "name the session"), Message("user", "task"), affinity="claude-code:s1")
    with registry.turn("c", title, "demo", "gab-1") as plan:
        assert plan.fresh  # same session, another conversation: the title request breaks nothing
    more = dataclasses.replace(main, messages=(*main.messages, Message("assistant", "ok"), Message("user", "go")))
    with registry.turn("c", more, "demo", "gab-1") as plan:
        assert plan.conversation.handle == "conv-1" and [m.content for m in plan.new] == ["go"]


def test_prompt_shows_new_system_messages_failed_results_and_the_schema() -> None:
    book = PromptBook.load()
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    request = dataclasses.replace(_request(Message("user", "x")), json_schema=schema)
    new = [Message("tool", "boom", tool_call_id="call_1", is_error=True), Message("system", "Plan mode is on.")]
    text = book.next_turn(request, new)
    assert "the tool reported an error\nboom" in text and "### system\nPlan mode is on." in text
    assert '"title"' in text and "JSON Schema" in text
    first = book.first_turn(request, (), [Message("user", "x")])
    assert first.count("JSON Schema") == 1


@pytest.mark.parametrize(("text", "fitted"), [
    ('{"title": "Hello file"}', {"title": "Hello file"}),
    ('Sure!\n```json\n{"title": "Hello file"}\n```', {"title": "Hello file"}),
    ("Hello file", {"title": "Hello file"}),
    ('{"name": "Hello file"}', {"title": "Hello file"}),
])
def test_fit_json_gives_json_valid_for_the_schema(text: str, fitted: object) -> None:
    import json

    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"],
              "additionalProperties": False}
    assert json.loads(fit_json(text, schema)) == fitted


def test_published_ids_do_not_look_like_claude_aliases() -> None:
    assert published_id("chainlit", "claude-opus-4-1") == "chainlit/claude_opus-4-1"
    assert published_id("demo", "gab-1") == "demo/gab-1"


def test_messages_routes_and_errors() -> None:
    assert isinstance(PROTOCOLS["/messages"], AnthropicMessages)
    for path in ("/v1/messages", "/messages", "/v1/messages/count_tokens"):
        assert protocol_for(path).name == "messages"
    assert protocol_for("/v1/models").name == "chat"


def test_turn_records_name_their_protocol() -> None:
    request = AnthropicMessages().parse(bodies("main_four_turns")[0], {})
    summary = request_summary(request, "addr:1")
    record = TurnRecord("t", "c", "demo", "m", 0.0, 1, summary, "", "", "ok", False, 0, "null", "{}", None)
    assert record.protocol == "messages"
    assert dataclasses.replace(record, request_summary="{}").protocol == "chat"
