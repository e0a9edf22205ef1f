"""Envelope tool calls -> XML tool blocks, for text-protocol clients (requests without ``tools``).

The shape is the one Roo's and Cline's XML parsers read (clients.md §4)::

    <read_file>
    <path>src/app.ts</path>
    </read_file>

A nested table becomes nested tags; a list repeats its tag once per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..envelope.events import ToolCall

__all__ = ["render_xml", "text_with_xml"]


def render_xml(call: ToolCall) -> str:
    """One call as an XML tool block."""
    params = "".join(_tag(key, value) for key, value in call.arguments.items())
    return f"<{call.name}>\n{params}</{call.name}>"


def text_with_xml(text: str, calls: Sequence[ToolCall]) -> str:
    """The message content for a text-protocol client: the text, then each call's block."""
    blocks = [render_xml(c) for c in calls]
    return "\n\n".join(part for part in [text.rstrip(), *blocks] if part)


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
