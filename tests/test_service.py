"""ChatService over a FakeProvider: the turn logic without sockets or HTTP."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from support import CLINE, ROO, captured_bodies

from roogab.errors import ConversationGone, ProviderDisconnected, ReplyFormatError
from roogab.outputs import CallOut, Finished, Out, ReasoningOut, TextOut
from roogab.prompt import PromptBook
from roogab.providers.base import Created, Deadlines, Delta, Done, ModelInfo, Snapshot, Turn
from roogab.providers.fake import FakeProvider
from roogab.registry import Registry
from roogab.service import ChatService, TurnSettings
from roogab.wire import ChatRequest, parse_chat_request

BOOK = PromptBook.load()
GOOD_CALL = '```lua\nreturn {\n  text = [==[Reading.]==],\n  tool_calls = {\n' \
            '    { name = "read_files", arguments = { files = { { path = "hello.txt" } } } },\n  },\n}\n```'
UNKNOWN_TOOL = '```lua\nreturn { tool_calls = { { name = "reed_files", arguments = { path = "x" } } } }\n```'
TEXT_ONLY = '```lua\nreturn { text = [==[All done.]==] }\n```'


def _service(*replies: Any, repairs: int = 1) -> tuple[ChatService, FakeProvider]:
    fake = FakeProvider(list(replies), chunk=5)
    ids = iter(f"call_{i}" for i in range(100))
    service = ChatService({"fake": fake}, Registry(), BOOK, TurnSettings(repair_attempts=repairs),
                          new_id=ids.__next__)
    return service, fake


def _cline(turn: int = 0) -> ChatRequest:
    body = captured_bodies(CLINE)[turn]
    body["model"] = "fake/model"
    return parse_chat_request(body)


def _run(service: ChatService, request: ChatRequest) -> list[Out]:
    return list(service.run(request, "addr:test"))


def _text(items: list[Out]) -> str:
    return "".join(i.text for i in items if isinstance(i, TextOut))


def test_tool_call_reply_becomes_a_validated_call() -> None:
    service, fake = _service(GOOD_CALL)
    items = _run(service, _cline())
    calls = [i for i in items if isinstance(i, CallOut)]
    assert [(c.index, c.id, c.call.name) for c in calls] == [(0, "call_0", "read_files")]
    assert calls[0].call.arguments == {"files": [{"path": "hello.txt"}]}
    assert _text(items) == "Reading."
    assert isinstance(items[-1], Finished) and items[-1].finish_reason == "tool_calls"
    assert len(fake.sent) == 1 and fake.sent[0].handle is None


def test_unknown_tool_gets_exactly_one_repair() -> None:
    service, fake = _service(UNKNOWN_TOOL, GOOD_CALL)
    items = _run(service, _cline())
    assert [i.call.name for i in items if isinstance(i, CallOut)] == ["read_files"]
    assert len(fake.sent) == 2
    assert "reed_files" in fake.sent[1].text and fake.sent[1].handle == "fake-1"


def test_two_bad_replies_are_a_non_compliant_error() -> None:
    service, fake = _service(UNKNOWN_TOOL, UNKNOWN_TOOL)
    with pytest.raises(ReplyFormatError) as info:
        _run(service, _cline())
    assert info.value.code == "non_compliant_response" and info.value.status == 502
    assert "reed_files" in str(info.value) and len(fake.sent) == 2


def test_zero_repair_attempts_fail_at_once() -> None:
    service, fake = _service(UNKNOWN_TOOL, GOOD_CALL, repairs=0)
    with pytest.raises(ReplyFormatError):
        _run(service, _cline())
    assert len(fake.sent) == 1


def _streamed(request: ChatRequest) -> ChatRequest:
    return dataclasses.replace(request, stream=True)


def _text_then_bad_call(text: str) -> str:
    return f'```lua\nreturn {{ text = [==[{text}]==], tool_calls = {{ {{ name = "nope" }} }} }}\n```'


def _text_and_good_call(text: str) -> str:
    return f'```lua\nreturn {{ text = [==[{text}]==], tool_calls = {{\n' \
           '  { name = "read_files", arguments = { files = { { path = "a" } } } } } }\n```'


def test_repaired_reply_does_not_repeat_streamed_text() -> None:
    service, _ = _service(_text_then_bad_call("Let me read it."), _text_and_good_call("Let me read it."))
    items = _run(service, _streamed(_cline()))
    assert _text(items) == "Let me read it."
    assert len([i for i in items if isinstance(i, CallOut)]) == 1


def test_repaired_reply_that_goes_further_sends_only_the_rest() -> None:
    service, _ = _service(_text_then_bad_call("Let me"), _text_and_good_call("Let me read it."))
    assert _text(_run(service, _streamed(_cline()))) == "Let me read it."


def test_repaired_reply_that_differs_follows_after_a_break() -> None:
    service, _ = _service(_text_then_bad_call("Plan A."), _text_and_good_call("Plan B."))
    assert _text(_run(service, _streamed(_cline()))) == "Plan A.\n\nPlan B."


CUT_TEXT = "```lua\nreturn { text = [==[The three steps are: first, open the"  # cut inside its envelope


def _plain(stream: bool = True) -> ChatRequest:
    return parse_chat_request({"model": "fake/model", "stream": stream,
                               "messages": [{"role": "user", "content": "explain"}]})


def _until_error(service: ChatService, request: ChatRequest) -> tuple[list[Out], Exception | None]:
    items: list[Out] = []
    try:
        items.extend(service.run(request, "addr:test"))  # what came before an error stays in items
    except ReplyFormatError as exc:
        return items, exc
    return items, None


@pytest.mark.parametrize("repaired", ["", "  \n", "```lua\nreturn { text = [==[  ]==] }\n```",
                                      "```lua\nreturn { text = [==[The three steps are: first]==] }\n```"])
def test_a_streamed_repair_that_adds_nothing_is_no_answer(repaired: str) -> None:
    """What the failed attempt streamed does not make an empty repair whole, nor does a repair
    that stops inside it: the cut text must not end in a normal finish."""
    service, fake = _service(CUT_TEXT, repaired)
    items, error = _until_error(service, _plain())
    assert len(fake.sent) == 2 and error is not None
    assert _text(items).startswith("The three steps are: first, open the")
    assert not any(isinstance(i, Finished) for i in items)


def test_with_tools_a_repair_that_repeats_part_of_the_cut_text_is_no_answer() -> None:
    cut = "```lua\nreturn { text = [==[I checked everything and the bug is in the pars"
    service, _ = _service(cut, TEXT_ONLY.replace("All done.", "I checked everything"))
    items, error = _until_error(service, _streamed(_cline()))
    assert error is not None and "stopped inside the text already sent" in str(error)
    assert not any(isinstance(i, Finished) for i in items)


def test_a_streamed_repair_that_repeats_the_cut_text_whole_completes() -> None:
    service, _ = _service(CUT_TEXT, "```lua\nreturn { text = [==[The three steps are: first, open the]==] }\n```")
    items = _run(service, _plain())
    assert _text(items) == "The three steps are: first, open the"
    assert isinstance(items[-1], Finished) and items[-1].finish_reason == "stop"


def test_a_streamed_repair_that_only_adds_the_call_completes() -> None:
    service, _ = _service("```lua\nreturn { text = [==[Let me read the", _text_and_good_call("Let me"))
    items = _run(service, _streamed(_cline()))
    assert _text(items) == "Let me read the" and [type(i) for i in items[-2:]] == [CallOut, Finished]


def test_a_whitespace_reply_is_repaired() -> None:
    service, fake = _service("  \n", TEXT_ONLY)
    assert _text(_run(service, _plain(stream=False))) == "All done." and len(fake.sent) == 2


def test_without_streaming_the_repaired_reply_replaces_the_failed_one() -> None:
    service, _ = _service(_text_then_bad_call("Plan A."), _text_and_good_call("Plan B."))
    answer = service.complete(dataclasses.replace(_cline(), stream=False), "addr:test")
    assert answer.text == "Plan B." and len(answer.calls) == 1 and answer.finished.finish_reason == "tool_calls"


def test_prose_without_envelope_is_repaired_when_tools_are_offered() -> None:
    service, fake = _service("Sure, I will read the file now.", TEXT_ONLY)
    items = _run(service, _cline())
    assert _text(items) == "All done." and len(fake.sent) == 2


def test_prose_without_envelope_is_fine_without_tools() -> None:
    service, fake = _service("Fixing the login bug")
    request = parse_chat_request({"model": "fake/model", "messages": [{"role": "user", "content": "title?"}]})
    items = _run(service, request)
    assert _text(items) == "Fixing the login bug" and len(fake.sent) == 1
    assert isinstance(items[-1], Finished) and items[-1].finish_reason == "stop"


def test_empty_reply_is_repaired() -> None:
    service, fake = _service("```lua\nreturn { }\n```", TEXT_ONLY)
    assert _text(_run(service, _cline())) == "All done."
    assert "neither text nor tool calls" in fake.sent[1].text


def test_text_protocol_client_gets_xml_tool_blocks() -> None:
    service, _ = _service('```lua\nreturn { text = [==[Listing.]==], tool_calls = {\n'
                          '  { name = "list_files", arguments = { path = ".", recursive = false } } } }\n```')
    request = parse_chat_request({"model": "fake/model", "messages": [
        {"role": "system", "content": "You are Roo (XML era)."}, {"role": "user", "content": "list"}]})
    items = _run(service, request)
    assert _text(items) == "Listing.\n\n<list_files>\n<path>.</path>\n<recursive>false</recursive>\n</list_files>"
    assert not any(isinstance(i, CallOut) for i in items)


def _xml_era(*replies: str) -> tuple[list[Out], FakeProvider]:
    service, fake = _service(*replies)
    request = parse_chat_request({"model": "fake/model", "messages": [
        {"role": "system", "content": "You are Roo (XML era)."}, {"role": "user", "content": "grep"}]})
    return _run(service, request), fake


@pytest.mark.parametrize("arguments, tag", [
    ('{ command = [==[grep -n "</command>" notes.xml; rm -rf build]==] }', "</command>"),
    ('{ command = { "ls", "rm -rf build" } }', "is a list"),  # two <command> tags: the agent keeps one
    ('{ options = { flag = [==[a</flag><flag>b]==] } }', "</flag>"),
    ('{ options = { flag = [==[a</options>]==] } }', "</options>"),
])
def test_a_value_that_would_end_its_xml_tag_early_is_repaired_not_sent(arguments: str, tag: str) -> None:
    """Roo's and Cline's XML parsers end a value at its tag's first closing tag: sent as is, the
    agent would run another command than the model wrote."""
    bad = f'```lua\nreturn {{ tool_calls = {{ {{ name = "execute_command", arguments = {arguments} }} }} }}\n```'
    good = '```lua\nreturn { tool_calls = { { name = "execute_command", arguments = { command = "ls" } } } }\n```'
    items, fake = _xml_era(bad, good)
    assert _text(items) == "<execute_command>\n<command>ls</command>\n</execute_command>"
    assert len(fake.sent) == 2 and tag in fake.sent[1].text


def test_a_value_holding_the_tools_own_closing_tag_goes_out_as_xml() -> None:
    """Inside a parameter the agent's parser looks only for that parameter's closing tag."""
    call = '```lua\nreturn { tool_calls = { { name = "execute_command", arguments = { command = [==[echo </execute_command>]==] } } } }\n```'
    items, fake = _xml_era(call)
    assert _text(items) == "<execute_command>\n<command>echo </execute_command></command>\n</execute_command>"
    assert len(fake.sent) == 1


def test_an_xml_value_that_cannot_be_written_fails_after_one_repair() -> None:
    bad = '```lua\nreturn { tool_calls = { { name = "execute_command", arguments = { ["a b"] = "x" } } } }\n```'
    service, fake = _service(bad, bad)
    request = parse_chat_request({"model": "fake/model", "stream": True, "messages": [
        {"role": "user", "content": "go"}]})
    with pytest.raises(ReplyFormatError, match="cannot be an XML tag name"):
        list(service.run(request, "addr:test"))
    assert len(fake.sent) == 2


def _cline_second_turn() -> ChatRequest:
    """Cline's captured turn 2, echoing GOOD_CALL as the agent would (call_0, re-serialized)."""
    second = captured_bodies(CLINE)[1]
    second["model"] = "fake/model"
    second["messages"][2]["tool_calls"][0]["id"] = "call_0"
    second["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"files": [{"path": "hello.txt"}]}'
    second["messages"][2]["content"] = "Reading."
    second["messages"][3]["tool_call_id"] = "call_0"
    return parse_chat_request(second)


def test_continuation_sends_only_the_suffix() -> None:
    service, fake = _service(GOOD_CALL, TEXT_ONLY)
    _run(service, _cline(0))
    _run(service, _cline_second_turn())
    assert fake.sent[1].handle == "fake-1"
    assert "You are Cline" not in fake.sent[1].text and "hello from the workspace" in fake.sent[1].text


def test_gone_conversation_is_replayed_in_the_same_request() -> None:
    service, fake = _service(GOOD_CALL, ConversationGone("gone", provider="fake"), TEXT_ONLY)
    _run(service, _cline(0))
    items = _run(service, _cline_second_turn())
    assert _text(items) == "All done."
    assert [s.handle for s in fake.sent] == [None, "fake-1", None]
    assert "You are Cline" in fake.sent[2].text and "Reading." in fake.sent[2].text


def test_a_gone_conversation_is_not_replayed_once_reasoning_was_streamed() -> None:
    """The streaming agent has the reasoning already: a replay would send it a second time."""
    thinking = '```lua\nreturn { reasoning = [==[Let me think about the file.]==],'
    service, fake = _service(GOOD_CALL, [Delta(thinking), ConversationGone("gone", provider="fake")], TEXT_ONLY)
    _run(service, _cline(0))
    request = dataclasses.replace(_cline_second_turn(), stream=True)
    with pytest.raises(ConversationGone):
        _run(service, request)
    assert [s.handle for s in fake.sent] == [None, "fake-1"]  # no replay


def test_a_non_streaming_agent_gets_the_replay_and_only_its_reasoning() -> None:
    thinking = '```lua\nreturn { reasoning = [==[First thoughts.]==],'
    replayed = '```lua\nreturn { reasoning = [==[Second thoughts.]==], text = [==[All done.]==] }\n```'
    service, fake = _service(GOOD_CALL, [Delta(thinking), ConversationGone("gone", provider="fake")], replayed)
    _run(service, _cline(0))
    items = _run(service, dataclasses.replace(_cline_second_turn(), stream=False))  # it has seen nothing yet
    assert [s.handle for s in fake.sent] == [None, "fake-1", None] and _text(items) == "All done."
    assert "".join(i.text for i in items if isinstance(i, ReasoningOut)) == "Second thoughts."


def test_a_failed_turn_is_not_continued_next_time() -> None:
    service, fake = _service(ProviderDisconnected("dropped", provider="fake"), TEXT_ONLY)
    with pytest.raises(ProviderDisconnected):
        _run(service, _cline())
    assert fake.forgotten == ["fake-1"]  # the provider may let the dropped conversation go
    _run(service, _cline())
    assert [s.handle for s in fake.sent] == [None, None]
    assert fake.forgotten == ["fake-1"]  # the answered one stays


def test_a_failed_continuation_lets_the_provider_forget_the_conversation() -> None:
    service, fake = _service(GOOD_CALL, ProviderDisconnected("dropped", provider="fake"))
    _run(service, _cline())
    with pytest.raises(ProviderDisconnected):
        _run(service, _cline_second_turn())
    assert [s.handle for s in fake.sent] == [None, "fake-1"] and fake.forgotten == ["fake-1"]


def test_a_conversation_made_by_the_first_part_of_a_long_prompt_is_forgotten_when_a_later_part_fails() -> None:
    fake = FakeProvider(['```lua\nreturn { text = [[got part 1]] }\n```', ProviderDisconnected("dropped", provider="fake")],
                        chunk=5, max_message_chars=2000)
    service = ChatService({"fake": fake}, Registry(), BOOK, TurnSettings(repair_attempts=1))
    with pytest.raises(ProviderDisconnected):
        _run(service, _cline())
    assert [s.handle for s in fake.sent][:2] == [None, "fake-1"]  # part 1 made the conversation
    assert fake.forgotten == ["fake-1"]


def test_an_agent_that_goes_away_lets_the_provider_forget_the_new_conversation() -> None:
    service, fake = _service(TEXT_ONLY)
    items = service.run(_cline(), "addr:test")
    next(items)  # the reply has begun
    items.close()  # the agent hung up
    assert fake.forgotten == ["fake-1"]


def test_roo_request_reaches_attempt_completion_validation() -> None:
    body = captured_bodies(ROO)[0]
    body["model"] = "fake/model"
    reply = '```lua\nreturn { tool_calls = { { name = "attempt_completion", arguments = { result = "ok" } } } }\n```'
    service, _ = _service(reply)
    items = _run(service, parse_chat_request(body))
    [call] = [i for i in items if isinstance(i, CallOut)]
    assert call.call.name == "attempt_completion" and call.call.arguments["result"] == "ok"


def test_models_and_resolution() -> None:
    service, _ = _service()
    assert service.models() == [("fake/model", 128_000)]
    assert service.resolve_model("fake/model")[1] == "model"
    assert service.resolve_model("model")[1] == "model"


def test_o_series_model_ids_are_published_under_an_alias() -> None:
    fake = FakeProvider(["```lua\nreturn { text = [==[hi]==] }\n```"])
    fake.models = lambda: [ModelInfo("o3-mini", 200_000), ModelInfo("gpt-4o", 128_000)]  # type: ignore[method-assign]
    service = ChatService({"team1": fake}, Registry(), BOOK)
    published = [m for m, _ in service.models()]
    assert published == ["team1/o-3-mini", "team1/gpt-4o"]
    assert not any(bad in m for m in published for bad in ("o1", "o3", "o4"))
    assert service.resolve_model("team1/o-3-mini") == (fake, "o3-mini")
    assert service.resolve_model("team1/o3-mini") == (fake, "o3-mini")
    assert service.resolve_model("gpt-4o") == (fake, "gpt-4o")


class _RewritingProvider(FakeProvider):
    """Streams deltas, then sends the whole reply as a snapshot (as Chainlit does on a rewrite)."""

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn:
        turn = Turn(self.name, deadlines)
        turn.put(Created("fake-1"))
        reply = str(self.replies.pop(0))
        turn.put(Delta(reply[:20]))
        turn.put(Snapshot(reply))
        turn.put(Done(reply))
        return turn


def test_snapshot_after_deltas_feeds_only_the_new_tail() -> None:
    provider = _RewritingProvider([TEXT_ONLY])
    service = ChatService({"fake": provider}, Registry(), BOOK)
    request = parse_chat_request({"model": "fake/model", "messages": [{"role": "user", "content": "x"}]})
    assert _text(_run(service, request)) == "All done."


EXECUTE = {"type": "function", "function": {"name": "execute_command", "description": "run a command",
           "parameters": {"type": "object", "properties": {"command": {"type": "string"},
                                                           "requires_approval": {"type": "boolean"}},
                          "required": ["command", "requires_approval"]}}}


def test_a_repaired_call_that_shares_only_a_flag_with_an_accepted_one_goes_out() -> None:
    cut = ('```lua\nreturn { text = [==[Installing, then testing.]==], tool_calls = {\n'
           '  { name = "execute_command", arguments = { command = "npm install", requires_approval = false } },\n'
           '  { name = "execute_command", arguments = { command = "npm te')
    repaired = ('```lua\nreturn { tool_calls = {\n  { name = "execute_command", '
                'arguments = { command = "npm test", requires_approval = false } } } }\n```')
    service, _ = _service(cut, repaired)
    request = parse_chat_request({"model": "fake/model", "stream": True, "tools": [EXECUTE],
                                  "messages": [{"role": "user", "content": "install and test"}]})
    items = _run(service, request)
    assert [i.call.arguments["command"] for i in items if isinstance(i, CallOut)] == ["npm install", "npm test"]
    assert isinstance(items[-1], Finished) and items[-1].finish_reason == "tool_calls"
