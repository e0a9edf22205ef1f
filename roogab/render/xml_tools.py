"""Envelope tool calls -> XML tool blocks, for text-protocol clients (requests without ``tools``).

The shape is the one Roo's and Cline's XML parsers read (clients.md §4)::

    <read_file>
    <path>src/app.ts</path>
    </read_file>

A nested table becomes nested tags; a list repeats its tag once per item. Values go in as they
are (those parsers unescape nothing) and a value ends at its tag's first closing tag, so a call
whose value holds the closing tag of its own tag or of one around it cannot be written so that it
reads back the same: ``xml_clash`` says so before anything is rendered.
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
    """Why *call* has no XML block that an agent reads back as the same call (None: it has one):
    a value holds ``</tag>`` for its own tag or one around it, where the agent's parser would end
    it (``<command>grep "</command>" a; rm b</command>`` runs ``grep "``)."""
    if not _TAG_NAME.fullmatch(call.name):
        return f"tool call {call.name!r}: the name cannot be an XML tag in the agent's tool format"
    stack: list[tuple[tuple[str, ...], Any]] = [((call.name, str(k)), v) for k, v in call.arguments.items()]
    while stack:
        tags, value = stack.pop()
        if not _TAG_NAME.fullmatch(tags[-1]):
            return f"tool call '{call.name}': {tags[-1]!r} cannot be an XML tag name in the agent's tool format"
        if isinstance(value, dict):
            stack.extend(((*tags, str(k)), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((tags, item) for item in value)
        else:
            text = _scalar(value)
            for tag in tags:
                if f"</{tag}>" in text:
                    return (f"tool call '{call.name}': the value of '{tags[-1]}' holds </{tag}>, where the "
                            "agent's XML tool format would end it; write the call without that text")
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
