"""The request-field table (roogab/request_fields.py, the README's table) against the real parsers:
an ignored field changes nothing in the parsed turn, an honoured or emulated one does; ignored
fields are logged once per client, also through a live RooGab with the openai SDK."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest

from roogab.demo import DemoChatService, ScriptedReply
from roogab.errors import RequestError
from roogab.protocols.messages_request import parse_request
from roogab.protocols.responses_input import parse_responses_request
from roogab.request_fields import FIELDS, IgnoredFieldsLog, for_app, ignored_fields
from roogab.runtime import Running
from roogab.wire import parse_chat_request

README = Path(__file__).resolve().parent.parent / "README.md"
TOOL = {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}

BASE: dict[str, dict[str, Any]] = {
    "chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "responses": {"model": "m", "input": "hi"},
    "messages": {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]},
}
PARSE = {"chat": parse_chat_request, "responses": parse_responses_request, "messages": parse_request}

# A value for each ignored field (a realistic one: what agents send).
IGNORED_VALUES: dict[str, Any] = {
    "temperature": 0.2, "top_p": 0.9, "top_k": 5, "max_tokens": 5, "max_completion_tokens": 5,
    "max_output_tokens": 5, "response_format": {"type": "json_object"}, "stop": ["\n"], "seed": 7,
    "presence_penalty": 0.5, "frequency_penalty": 0.5, "logit_bias": {"50256": -100}, "top_logprobs": 2,
    "reasoning_effort": "high", "prediction": {"type": "content", "content": "x"},
    "web_search_options": {}, "metadata": {"a": "b"}, "user": "u1", "service_tier": "auto",
    "parallel_tool_calls": False, "store": False, "reasoning": {"effort": "high", "summary": "auto"},
    "truncation": "auto", "max_tool_calls": 3, "safety_identifier": "s", "prompt_cache_retention": "24h",
    "stream_options": {"include_obfuscation": False}, "client_metadata": {"x": "y"},
    "stop_sequences": ["END"], "thinking": {"type": "enabled", "budget_tokens": 1024},
    "context_management": {"edits": []}, "container": "c1", "mcp_servers": [],
}
# A value for each honoured or emulated field whose effect shows in the parsed turn.
USED_VALUES: dict[str, dict[str, Any]] = {
    "chat": {"stream": True, "tools": [TOOL], "tool_choice": "none",
             "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "other"}]},
    "responses": {"stream": True, "tools": [{"type": "function", "name": "read_file", "parameters": {}}],
                  "tool_choice": "none", "instructions": "be brief", "prompt_cache_key": "k1",
                  "include": ["reasoning.encrypted_content"], "input": "other",
                  "text": {"format": {"type": "json_schema", "name": "t", "schema": SCHEMA}}},
    "messages": {"stream": True, "system": "be brief", "tools": [{"name": "read_file", "input_schema": {}}],
                 "tool_choice": {"type": "none"}, "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
                 "output_format": {"type": "json_schema", "schema": SCHEMA},
                 "metadata": {"user_id": '{"session_id": "s-1"}'}, "messages": [{"role": "user", "content": "x"}]},
}
ACTS_OUTSIDE_THE_PARSER = {("chat", "prompt_cache_key"), ("responses", "previous_response_id")}


def _parsed(protocol: str, extra: dict[str, Any]) -> object:
    body = {**BASE[protocol], **extra}
    if protocol == "chat" and extra.get("stream_options", {}).get("include_usage"):
        body["stream"] = True
    return PARSE[protocol](body)  # type: ignore[operator]


@pytest.mark.parametrize(("protocol", "name"), [(p, n) for p, fields in FIELDS.items() for n, use in fields.items()
                                                if use == "ignored"])
def test_an_ignored_field_changes_nothing_in_the_turn(protocol: str, name: str) -> None:
    value = IGNORED_VALUES[name]
    base = dict(BASE[protocol])
    base.pop(name, None)
    assert PARSE[protocol]({**base, name: value}) == PARSE[protocol](base)  # type: ignore[operator]
    assert name in ignored_fields(protocol, {**base, name: value})


@pytest.mark.parametrize(("protocol", "name"), [(p, n) for p, fields in FIELDS.items() for n, use in fields.items()
                                                if use in ("honoured", "emulated") and n != "model"
                                                and (p, n) not in ACTS_OUTSIDE_THE_PARSER])
def test_an_honoured_or_emulated_field_changes_the_turn(protocol: str, name: str) -> None:
    assert _parsed(protocol, {name: USED_VALUES[protocol][name]}) != _parsed(protocol, {})
    assert name not in ignored_fields(protocol, {**BASE[protocol], name: USED_VALUES[protocol][name]})


@pytest.mark.parametrize(("protocol", "body"), [
    ("chat", {"n": 2}), ("chat", {"logprobs": True}), ("chat", {"modalities": ["text", "audio"]}),
    ("chat", {"audio": {"voice": "x"}}), ("responses", {"background": True}), ("responses", {"conversation": "c"}),
    ("responses", {"n": 2})])
def test_a_refused_field_is_an_error(protocol: str, body: dict[str, Any]) -> None:
    [name] = body
    assert FIELDS[protocol][name] == "refused"
    with pytest.raises(RequestError):
        PARSE[protocol]({**BASE[protocol], **body})  # type: ignore[operator]


def test_unknown_fields_are_ignored_and_nulls_are_not_listed() -> None:
    body = {**BASE["chat"], "temperature": None, "x_vendor_knob": 1, "stream": True}
    assert ignored_fields("chat", body) == ("x_vendor_knob",)
    assert ignored_fields("chat", ["not", "a", "body"]) == ()


def test_the_readme_table_lists_every_field_as_the_code_does() -> None:
    text = README.read_text("utf-8")
    section = text[text.index("### Request fields"):]
    section = section[:section.index("\n## ")]
    rows = {m.group(1).lower(): m.group(0) for m in re.finditer(r"^\| *([A-Za-z ]+?) *\|.*$", section, re.MULTILINE)}
    titles = {"chat": "chat completions", "responses": "responses", "messages": "messages"}
    for protocol, fields in FIELDS.items():
        row = rows[titles[protocol]]
        cells = [c.strip() for c in row.strip("|").split("|")]
        for use, cell in zip(("honoured", "emulated", "refused", "ignored"), cells[1:], strict=True):
            listed = set(re.findall(r"`([a-z_]+)`", cell))
            assert listed == {n for n, u in fields.items() if u == use}, (protocol, use)


def test_ignored_fields_are_logged_once_per_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="roogab.request_fields")
    fields = IgnoredFieldsLog(clients=2)
    body = {**BASE["chat"], "temperature": 0.1, "max_tokens": 9}
    assert fields.note("a", "chat", body) == ("max_tokens", "temperature")
    assert fields.note("a", "chat", body) == ()
    assert fields.note("a", "chat", {**body, "seed": 1}) == ("seed",)
    assert fields.note("b", "chat", body) == ("max_tokens", "temperature")
    fields.note("c", "chat", {**BASE["chat"], "seed": 1})  # "a" is forgotten: 2 clients kept
    assert fields.note("a", "chat", body) == ("max_tokens", "temperature")
    logged = [r for r in caplog.records if r.name == "roogab.request_fields"]
    assert len(logged) == 5 and all(r.levelno == logging.DEBUG for r in logged)
    assert "max_tokens, temperature" in logged[0].getMessage()
    owned: dict[str, Any] = {}
    assert for_app(owned) is for_app(owned) and for_app(owned) is not for_app({})


def test_a_live_roogab_logs_an_agents_ignored_fields_once(stack: Running, demo: DemoChatService,
                                                         client: openai.OpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="roogab.request_fields")
    # a user agent of its own: the stack is shared, and an earlier test's SDK client with these
    # fields would already have had them logged (once per client)
    client = client.with_options(default_headers={"User-Agent": f"OpenAI/Python fields-probe-{uuid.uuid4().hex[:8]}"})
    for word in ("first", "second"):
        demo.push(ScriptedReply('```lua\nreturn { text = [==[noted]==] }\n```'))
        reply = client.chat.completions.create(model="demo/gab-1", temperature=0.3, max_tokens=50, seed=4,
                                               messages=[{"role": "user", "content": f"{word} field probe 6402"}])
        assert reply.choices[0].message.content == "noted"
    prompts = [r.prompt or "" for r in demo.received]
    assert [any(f"{w} field probe 6402" in p for p in prompts) for w in ("first", "second")] == [True, True]
    logged = [r.getMessage() for r in caplog.records if r.name == "roogab.request_fields"]
    mine = [m for m in logged if "max_tokens, seed, temperature" in m]
    assert len(mine) == 1 and "OpenAI" in mine[0]  # the SDK's user agent names the client
