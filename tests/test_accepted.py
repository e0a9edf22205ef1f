"""Accepted calls are final: what a repaired reply's call may not do (pure logic)."""

from __future__ import annotations

import pytest

from roogab.answer import Accepted
from roogab.envelope import ToolCall
from roogab.wire import ToolSpec

READ = ToolCall("read_file", {"path": "src/a.py"})
RUN = ToolCall("execute_command", {"command": "pytest -q", "cwd": "."})


@pytest.mark.parametrize(("call", "why"), [
    (ToolCall("read_file", {"path": "src/a.py"}), "repeats"),
    (ToolCall("execute_command", {"cwd": ".", "command": "pytest -q"}), "repeats"),  # key order is no change
    (ToolCall("read_file", {"path": "src/a.py", "line": 3}), "changes"),
    (ToolCall("execute_command", {"command": "pytest -q", "cwd": "/tmp"}), "changes"),
])
def test_a_repaired_call_may_not_repeat_or_change_an_accepted_one(call: ToolCall, why: str) -> None:
    clash = Accepted([READ, RUN]).clash(call)
    assert clash is not None and why in clash


@pytest.mark.parametrize("call", [
    ToolCall("read_file", {"path": "src/b.py"}),
    ToolCall("write_to_file", {"path": "src/a.py", "content": "x"}),  # another tool on the same file
    ToolCall("execute_command", {"command": "ruff check"}),
])
def test_a_new_call_may_go_out(call: ToolCall) -> None:
    assert Accepted([READ, RUN]).clash(call) is None


def test_true_and_one_are_different_arguments() -> None:
    """Python's True == 1 must not make a new call look like an accepted one."""
    accepted = Accepted([ToolCall("list_files", {"recursive": True})])
    assert accepted.clash(ToolCall("list_files", {"recursive": 1})) is None


def test_calls_with_no_arguments() -> None:
    accepted = Accepted([ToolCall("attempt_completion", {})])
    assert accepted.clash(ToolCall("attempt_completion", {})) is not None
    assert accepted.clash(ToolCall("ask_followup_question", {})) is None


def _tool(name: str, required: list[str]) -> ToolSpec:
    properties = {n: {"type": "string"} for n in ("command", "cwd", "path", "requires_approval")}
    return ToolSpec(name, "", {"type": "object", "properties": properties, "required": required})


def test_a_shared_flag_or_number_names_nothing() -> None:
    """Cline's ``requires_approval = false`` and a common ``limit`` are in unrelated calls."""
    accepted = Accepted([ToolCall("execute_command", {"command": "npm install", "requires_approval": False}),
                         ToolCall("read_file", {"path": "a.py", "limit": 100})])
    assert accepted.clash(ToolCall("execute_command", {"command": "npm test", "requires_approval": False})) is None
    assert accepted.clash(ToolCall("read_file", {"path": "b.py", "limit": 100})) is None


def test_with_the_schema_only_required_strings_name_the_target() -> None:
    tools = [_tool("execute_command", ["command", "requires_approval"])]
    accepted = Accepted([RUN], tools)
    assert accepted.clash(ToolCall("execute_command", {"command": "ruff check", "cwd": "."})) is None  # cwd is optional
    clash = accepted.clash(ToolCall("execute_command", {"command": "pytest -q", "cwd": "/tmp"}))
    assert clash is not None and "changes" in clash
    assert Accepted([RUN]).clash(ToolCall("execute_command", {"command": "ruff check", "cwd": "."})) is not None


def test_each_accepted_call_answers_for_one_repeat() -> None:
    """The repaired reply restates the accepted write, then writes the same file again: the
    second write is a call of its own (found by tests/test_delivery_turns.py, html-delta)."""
    first = ToolCall("write_to_file", {"path": "a.md", "content": ""})
    second = ToolCall("write_to_file", {"path": "a.md", "content": "# title"})
    accepted = Accepted([first])
    assert "repeats" in (accepted.clash(first) or "")
    assert accepted.clash(second) is None


def test_a_change_before_the_repeat_is_still_a_change() -> None:
    first = ToolCall("write_to_file", {"path": "a.md", "content": ""})
    accepted = Accepted([first])
    assert "changes" in (accepted.clash(ToolCall("write_to_file", {"path": "a.md", "content": "x"})) or "")
    assert "repeats" in (accepted.clash(first) or "")
