"""The demo service's built-in assistant: answers any prompt in a valid reply envelope.

It answers when the script is exhausted or absent. If the prompt offers the tool
``attempt_completion`` (its name appears in the prompt), the answer calls it with a one-line
summary of the task; otherwise the answer is a plain-text envelope (design.md §2). A part of a
long message that is not the last (prompts/part.txt) is acknowledged as the part asks.
"""

from __future__ import annotations

import re

__all__ = ["answer", "long_string", "task_line"]

_COMPLETION_TOOL = "attempt_completion"
_TASK = re.compile(r"<(user_message|task)>(.*?)</\1>", re.DOTALL)
_MAX_LINE = 120
_PART = re.compile(r"\[Part (\d+) of (\d+) of a long message\.")


def answer(prompt: str) -> str:
    """The built-in assistant's reply to *prompt*: a ```` ```lua ```` fenced envelope."""
    part = _PART.match(prompt)
    if part is not None and part.group(1) != part.group(2):
        return f"OK, part {part.group(1)} received."
    line = task_line(prompt)
    if _COMPLETION_TOOL in prompt:
        return _envelope("I have finished the task.", (_COMPLETION_TOOL, f"Done: {line}"))
    return _envelope(f"Hello from the RooGab demo service. You asked: {line}", None)


def task_line(prompt: str) -> str:
    """The user's request in one short line.

    The first non-empty line of the last ``<user_message>`` or ``<task>`` block, else the
    prompt's last non-empty line; at most 120 characters.
    """
    blocks = _TASK.findall(prompt)
    source = blocks[-1][1] if blocks else prompt
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    if not lines:
        return "(empty request)"
    line = lines[0] if blocks else lines[-1]
    return line if len(line) <= _MAX_LINE else line[:_MAX_LINE - 3] + "..."


def long_string(text: str) -> str:
    """*text* as a Lua long string whose level of ``=`` no content can close early."""
    level = 2
    while (text + _closer(level)).find(_closer(level)) < len(text):
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}{_closer(level)}"


def _closer(level: int) -> str:
    return f"]{'=' * level}]"


def _envelope(text: str, call: tuple[str, str] | None) -> str:
    lines = ["```lua", "return {", f"  text = {long_string(text)},"]
    if call is not None:
        name, result = call
        lines += [
            "  tool_calls = {",
            f'    {{ name = "{name}", arguments = {{ result = {long_string(result)} }} }},',
            "  },",
        ]
    lines += ["}", "```"]
    return "\n".join(lines)
