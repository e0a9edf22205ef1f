"""check_call: every problem it names and every coercion it makes."""

from __future__ import annotations

from typing import Any

import pytest

from roogab.envelope import ToolCall, check_call
from roogab.errors import ReplyFormatError

TOOLS: dict[str, dict[str, Any]] = {
    "read_file": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                  "properties": {"path": {"type": "string"}, "limit": {"type": ["integer", "null"]}},
                  "required": ["path"]},
    "write_to_file": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                      "required": ["path", "content"], "additionalProperties": False},
    "list_files": {"type": "object", "properties": {"path": {"type": "string"}, "recursive": {"type": "boolean"},
                                                    "depth": {"type": "integer"}, "ratio": {"type": "number"}},
                   "required": ["path"]},
    "ask": {"type": "object", "properties": {
        "question": {"type": "string"},
        "follow_up": {"type": "array", "items": {"type": "object", "properties": {
            "text": {"type": "string"}, "mode": {"type": "string", "enum": ["code", "ask"]}},
            "required": ["text"]}},
        "options": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["question"]},
    "execute_command": {"type": "object", "additionalProperties": False, "required": ["command", "cwd", "timeout"],
                        "properties": {"command": {"type": "string"},
                                       "cwd": {"type": "string", "description": "Optional working directory"},
                                       "timeout": {"type": "number", "description": "Timeout in seconds"}}},
    "pick": {"type": "object", "properties": {"v": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
             "required": ["v"]},
}


@pytest.mark.parametrize(("call", "message"), [
    (ToolCall("delete_file", {}), ("unknown tool 'delete_file' (offered: ask, execute_command, list_files, pick, "
                                  "read_file, write_to_file)")),
    (ToolCall("read_file", {}), "read_file: missing required argument 'path'"),
    (ToolCall("read_file", {"path": None}), "read_file: missing required argument 'path'"),
    (ToolCall("write_to_file", {"path": "a", "content": {"x": 1}}),
     "write_to_file: argument 'content' must be a string"),
    (ToolCall("list_files", {"path": ".", "recursive": "maybe"}), "list_files: argument 'recursive' must be a boolean"),
    (ToolCall("list_files", {"path": ".", "depth": "two"}), "list_files: argument 'depth' must be an integer"),
    (ToolCall("list_files", {"path": ".", "ratio": "x"}), "list_files: argument 'ratio' must be a number"),
    (ToolCall("ask", {"question": "q", "follow_up": [{"mode": "code"}]}),
     "ask: missing required argument 'follow_up[0].text'"),
    (ToolCall("ask", {"question": "q", "follow_up": [{"text": "t", "mode": "debug"}]}),
     "ask: argument 'follow_up[0].mode' must be one of \"code\", \"ask\""),
    (ToolCall("ask", {"question": "q", "options": "n=1"}), "ask: argument 'options' must be an object"),
    (ToolCall("execute_command", {"cwd": "."}), "execute_command: missing required argument 'command'"),
    (ToolCall("pick", {"v": "x"}), "pick: argument 'v' must be an integer"),
])
def test_problems_are_named(call: ToolCall, message: str) -> None:
    with pytest.raises(ReplyFormatError) as info:
        check_call(call, TOOLS)
    assert str(info.value) == message


@pytest.mark.parametrize(("call", "arguments"), [
    (ToolCall("list_files", {"path": ".", "recursive": "true"}), {"path": ".", "recursive": True}),
    (ToolCall("list_files", {"path": ".", "recursive": "False"}), {"path": ".", "recursive": False}),
    (ToolCall("list_files", {"path": ".", "recursive": 1}), {"path": ".", "recursive": True}),
    (ToolCall("list_files", {"path": ".", "depth": "5"}), {"path": ".", "depth": 5}),
    (ToolCall("list_files", {"path": ".", "depth": 5.0}), {"path": ".", "depth": 5}),
    (ToolCall("list_files", {"path": ".", "ratio": "2.5"}), {"path": ".", "ratio": 2.5}),
    (ToolCall("list_files", {"path": 7}), {"path": "7"}),
    (ToolCall("ask", {"question": "q", "tags": "one"}), {"question": "q", "tags": ["one"]}),
    (ToolCall("ask", {"question": "q", "tags": '["a", "b"]'}), {"question": "q", "tags": ["a", "b"]}),
    (ToolCall("ask", {"question": "q", "tags": {}}), {"question": "q", "tags": []}),
    (ToolCall("ask", {"question": "q", "follow_up": {"text": "t"}}), {"question": "q", "follow_up": [{"text": "t"}]}),
    (ToolCall("ask", {"question": "q", "options": '{"n": "3"}'}), {"question": "q", "options": {"n": 3}}),
    (ToolCall("ask", {"question": "q", "options": []}), {"question": "q", "options": {}}),
    (ToolCall("read_file", {"path": "a"}), {"path": "a"}),
    (ToolCall("read_file", {"path": "a", "limit": None}), {"path": "a", "limit": None}),
    (ToolCall("write_to_file", {"path": "a", "content": "x", "line_count": 1}), {"path": "a", "content": "x"}),
    (ToolCall("read_file", {"path": "a", "extra": 1}), {"path": "a", "extra": 1}),
    (ToolCall("execute_command", {"command": "ls"}), {"command": "ls", "cwd": None, "timeout": None}),
    (ToolCall("pick", {}), {"v": None}),
])
def test_coercions(call: ToolCall, arguments: dict[str, Any]) -> None:
    assert check_call(call, TOOLS) == ToolCall(call.name, arguments)


def test_deep_nesting_is_bounded() -> None:
    schema: dict[str, Any] = {"type": "string"}
    value: Any = "leaf"
    for _ in range(40):
        schema = {"type": "object", "properties": {"k": schema}}
        value = {"k": value}
    assert check_call(ToolCall("deep", {"k": value}), {"deep": schema}).arguments == {"k": value}


def test_a_json_string_nested_past_the_decoder_is_not_json() -> None:
    """A string argument the model nested deeper than ``json`` can decode (RecursionError) is
    treated as text that is not JSON: a lone value for an array, a named problem for an object."""
    brackets = "[" * 100_000
    assert check_call(ToolCall("ask", {"question": "q", "tags": brackets}), TOOLS).arguments["tags"] == [brackets]
    with pytest.raises(ReplyFormatError, match="argument 'options' must be an object"):
        check_call(ToolCall("ask", {"question": "q", "options": '{"n":' * 100_000}), TOOLS)
