"""Envelope tool calls -> XML tool blocks, for text-protocol clients (requests without ``tools``).

The shape is the one Roo's and Cline's XML parsers read (clients.md §4)::

    <read_file>
    <path>src/app.ts</path>
    </read_file>

A nested table becomes nested tags; a list repeats its tag once per item. Values go in as they
are (those parsers unescape nothing), so some calls cannot be written so that they read back the
same: ``xml_clash`` says which, before anything is rendered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..envelope.events import ToolCall

__all__ = ["render_xml", "text_with_xml", "xml_clash"]

#: A name that stays one tag in those parsers (``<a b>`` or ``<a>b>`` would not).
_TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")


def render_xml(call: ToolCall) -> str:
    """One call as an XML tool block."""
    params = "".join(_tag(key, value) for key, value in call.arguments.items())
    return f"<{call.name}>\n{params}</{call.name}>"


def text_with_xml(text: str, calls: Sequence[ToolCall]) -> str:
    """The message content for a text-protocol client: the text, then each call's block."""
    blocks = [render_xml(c) for c in calls]
    return "\n\n".join(part for part in [text.rstrip(), *blocks] if part)


def xml_clash(call: ToolCall) -> str | None:
    """Why *call* has no XML block that an agent reads back as the same call (None: it has one).

    Roo's and Cline's parsers end a parameter at its first closing tag (``<command>grep
    "</command>" a; rm b</command>`` runs ``grep "``) and look for nothing else inside it; a
    parameter holding nested tags is read as its raw inner text, and a parameter given twice
    keeps one value. So a value may not hold the closing tag of its own tag or of the parameter
    it sits in, a parameter may not be a list, and every name must be a tag name.
    """
    if not _TAG_NAME.fullmatch(call.name):
        return f"tool call {call.name!r}: the name cannot be an XML tag in the agent's tool format"
    for key, value in call.arguments.items():
        if isinstance(value, list):
            return (f"tool call '{call.name}': '{key}' is a list, and the agent's XML tool format has one "
                    "value for each parameter")
        clash = _value_clash(call.name, str(key), value)
        if clash is not None:
            return clash
    return None


def _value_clash(name: str, param: str, value: Any) -> str | None:
    stack: list[tuple[str, Any]] = [(param, value)]
    while stack:
        tag, value = stack.pop()
        if not _TAG_NAME.fullmatch(tag):
            return f"tool call '{name}': {tag!r} cannot be an XML tag name in the agent's tool format"
        if isinstance(value, dict):
            stack.extend((str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((tag, item) for item in value)
        else:
            text = _scalar(value)
            for closer in {f"</{tag}>", f"</{param}>"}:
                if closer in text:
                    return (f"tool call '{name}': the value of '{tag}' holds {closer}, where the agent's XML "
                            "tool format would end it; write the call without that text")
    return None


def _tag(name: str, value: Any) -> str:
    if isinstance(value, list):
        return "".join(_tag(name, item) for item in value)
    if isinstance(value, dict):
        inner = "".join(_tag(k, v) for k, v in value.items())
        return f"<{name}>\n{inner}</{name}>\n"
    return f"<{name}>{_scalar(value)}</{name}>\n"


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
