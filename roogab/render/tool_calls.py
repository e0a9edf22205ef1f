"""Envelope tool calls -> OpenAI ``tool_calls``, for a whole message and as streaming deltas.

Streaming follows what Roo, Cline and Kilo all accept (clients.md §7): the first fragment of a
call carries its ``index``, ``id``, ``type`` and ``name`` with empty arguments; the next one
carries the arguments; each call has its own index, counting from 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ..envelope.events import ToolCall

__all__ = ["arguments_json", "message_tool_calls", "tool_call_deltas"]


def arguments_json(call: ToolCall) -> str:
    """The call's arguments as the JSON string OpenAI clients expect (strict JSON: no NaN or Infinity,
    which the parser never lets into a call)."""
    return json.dumps(call.arguments, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def tool_call_deltas(call: ToolCall, index: int, call_id: str) -> list[dict[str, Any]]:
    """The ``delta`` objects that stream one call: a header fragment, then its arguments."""
    head = {"index": index, "id": call_id, "type": "function",
            "function": {"name": call.name, "arguments": ""}}
    body = {"index": index, "function": {"arguments": arguments_json(call)}}
    return [{"tool_calls": [head]}, {"tool_calls": [body]}]


def message_tool_calls(calls: Sequence[ToolCall], new_id: Callable[[], str]) -> list[dict[str, Any]]:
    """``message.tool_calls`` of a non-streaming completion."""
    return [{"id": new_id(), "type": "function",
             "function": {"name": c.name, "arguments": arguments_json(c)}} for c in calls]
