"""The demo's built-in assistant: valid envelopes for any prompt."""

from __future__ import annotations

import re

from roogab.demo import answer
from roogab.demo.assistant import long_string, task_line
from roogab.prompt import PromptBook

ENVELOPE = re.compile(r"\A```lua\nreturn \{\n(?P<body>.*)\n\}\n```\Z", re.DOTALL)


def test_calls_attempt_completion_when_offered() -> None:
    prompt = ("Tools: read_file, attempt_completion\n<task>\nWrite a Lua hello world\nin one file\n</task>\n"
              "<environment_details>...</environment_details>")
    reply = answer(prompt)
    assert ENVELOPE.match(reply)
    assert reply == (
        "```lua\nreturn {\n"
        "  text = [==[I have finished the task.]==],\n"
        "  tool_calls = {\n"
        '    { name = "attempt_completion", arguments = { result = [==[Done: Write a Lua hello world]==] } },\n'
        "  },\n}\n```")


def test_plain_text_envelope_without_the_tool() -> None:
    reply = answer("system stuff\n\nWhat is 2 + 2?\n\n")
    assert ENVELOPE.match(reply)
    assert "tool_calls" not in reply
    assert "text = [==[Hello from the RooGab demo service. You asked: What is 2 + 2?]==]" in reply


def test_task_line_prefers_the_last_user_message() -> None:
    prompt = "<task>old task</task>\n<user_message>\n\n  new request  \nmore</user_message>\ntrailer"
    assert task_line(prompt) == "new request"
    assert task_line("   \n") == "(empty request)"
    assert len(task_line("x" * 500)) == 120


def test_long_string_level_cannot_be_closed_by_the_content() -> None:
    assert long_string("plain") == "[==[plain]==]"
    assert long_string("has ]==] inside") == "[===[has ]==] inside]===]"
    assert long_string("ends with ]==") == "[===[ends with ]==]===]"
    hostile = answer("<task>finish ]==] then ]===]</task> attempt_completion")
    assert "[====[Done: finish ]==] then ]===]]====]" in hostile


def test_a_part_before_the_last_is_acknowledged_and_the_last_is_answered() -> None:
    parts = PromptBook.load().split("<task>\nsay hi\n</task>\n" + "filler " * 50, 120)
    assert len(parts) > 2
    assert answer(parts[0]) == "OK, part 1 received."
    assert answer(parts[1]) == "OK, part 2 received."
    assert answer(parts[-1]).startswith("```lua")
