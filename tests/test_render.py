"""The pure renderers: OpenAI tool_calls deltas and XML tool blocks."""

from __future__ import annotations

import json

from roogab.envelope import ToolCall
from roogab.render import message_tool_calls, render_xml, text_with_xml, tool_call_deltas


def test_stream_deltas_put_id_and_name_on_the_first_fragment() -> None:
    call = ToolCall("read_file", {"path": "a.py", "mode": "slice"})
    head, body = tool_call_deltas(call, 2, "call_x")
    first = head["tool_calls"][0]
    assert first == {"index": 2, "id": "call_x", "type": "function",
                     "function": {"name": "read_file", "arguments": ""}}
    second = body["tool_calls"][0]
    assert second["index"] == 2 and "id" not in second
    assert json.loads(first["function"]["arguments"] + second["function"]["arguments"]) == call.arguments


def test_message_tool_calls_get_fresh_ids() -> None:
    ids = iter(["call_1", "call_2"])
    calls = message_tool_calls([ToolCall("a", {}), ToolCall("b", {"x": 1})], ids.__next__)
    assert [c["id"] for c in calls] == ["call_1", "call_2"]
    assert calls[1]["function"] == {"name": "b", "arguments": '{"x":1}'}


def test_arguments_keep_unicode_readable() -> None:
    _head, body = tool_call_deltas(ToolCall("w", {"content": "héllo ✓"}), 0, "c")
    assert "héllo ✓" in body["tool_calls"][0]["function"]["arguments"]


def test_xml_flat_nested_and_lists() -> None:
    assert render_xml(ToolCall("list_files", {"path": ".", "recursive": False})) == \
        "<list_files>\n<path>.</path>\n<recursive>false</recursive>\n</list_files>"
    nested = ToolCall("read_file", {"args": {"file": [{"path": "a"}, {"path": "b"}]}})
    assert render_xml(nested) == (
        "<read_file>\n<args>\n<file>\n<path>a</path>\n</file>\n<file>\n<path>b</path>\n</file>\n"
        "</args>\n</read_file>")


def test_text_with_xml_joins_text_and_blocks() -> None:
    out = text_with_xml("Looking.\n", [ToolCall("attempt_completion", {"result": "done"})])
    assert out == "Looking.\n\n<attempt_completion>\n<result>done</result>\n</attempt_completion>"
    assert text_with_xml("", []) == ""
