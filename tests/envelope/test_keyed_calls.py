"""Tool calls keyed by name inside ``tool_calls``: the table is the arguments, unless it is made
only of the call shape's own keys. A parameter called ``name`` or ``tool_name`` must never be
taken for the call's name (that would be a call the model did not mean). Fed whole and split at
every position."""

from __future__ import annotations

import pytest

from roogab.envelope import End, ReplyParser, ToolCall, parse_reply

TOOLS = ["use_mcp_tool", "delete_all", "new_task", "read_file", "x", "get_issue", "create_entity", "foo"]


def _events(body: str) -> list[list[object]]:
    reply = f"```lua\nreturn {{ tool_calls = {{ {body} }} }}\n```"
    runs = [parse_reply(reply, TOOLS)]
    for cut in range(1, len(reply)):
        parser = ReplyParser(TOOLS)
        runs.append([*parser.feed(reply[:cut]), *parser.feed(reply[cut:]), *parser.close()])
    return runs


@pytest.mark.parametrize("body, call", [
    ('use_mcp_tool = { server_name = "fs", tool_name = "delete_all", arguments = "{}" }',
     ToolCall("use_mcp_tool", {"server_name": "fs", "tool_name": "delete_all", "arguments": "{}"})),
    ('new_task = { mode = "code", name = "x" }', ToolCall("new_task", {"mode": "code", "name": "x"})),
    ('read_file = { arguments = { path = "a.py" } }', ToolCall("read_file", {"path": "a.py"})),
    ('read_file = { name = "read_file", arguments = { path = "a.py" } }', ToolCall("read_file", {"path": "a.py"})),
    ('read_file = { path = "a.py" }', ToolCall("read_file", {"path": "a.py"})),
    ('get_issue = { id = 42 }', ToolCall("get_issue", {"id": 42})),
    ('get_issue = { id = 42, type = "bug" }', ToolCall("get_issue", {"id": 42, "type": "bug"})),
    ('create_entity = { name = "foo" }', ToolCall("create_entity", {"name": "foo"})),
    ('read_file = { name = "read_file" }', ToolCall("read_file", {})),
])
def test_a_keyed_call_is_the_call_its_key_names(body: str, call: ToolCall) -> None:
    for events in _events(body):
        assert events == [call, End(envelope=True)], events


@pytest.mark.parametrize("body", [
    'read_file = { name = "x", arguments = { path = "a.py" } }',
    'use_mcp_tool = { tool_name = "delete_all", arguments = "{}" }',  # only call-shape keys: ambiguous
])
def test_a_call_table_keyed_by_one_name_that_names_another_makes_no_call(body: str) -> None:
    for events in _events(body):
        assert not any(isinstance(e, ToolCall) for e in events)
        end = events[-1]
        assert isinstance(end, End) and end.problem is not None and "names another tool" in end.problem
