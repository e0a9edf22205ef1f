"""Turning a tool-call table (as the model wrote it) into a :class:`ToolCall`.

Accepted shapes, all meaning the same call::

    { name = "read_file", arguments = { path = "a.py" } }
    { tool = "read_file", args = { path = "a.py" } }            -- aliases: tool/function, args/input/parameters
    { name = "read_file", arguments = '{"path": "a.py"}' }      -- arguments as a JSON string
    { type = "function", ["function"] = { name = "read_file", arguments = "{...}" } }   -- OpenAI's shape
    read_file = { path = "a.py" }                               -- keyed by name inside tool_calls

Keyed by name, the table is the arguments unless it is shaped as a call (``_call_shaped``:
``read_file = { arguments = { path = "a.py" } }``): a tool's parameter may be called ``name``,
``id`` or ``tool_name`` (Roo's ``use_mcp_tool``), and must not be taken for the call's name. A
call table keyed by one name that names another is refused, not guessed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..utf16 import well_formed
from .depth import MAX_DEPTH, nested_deeper
from .events import ToolCall

__all__ = ["json_values", "sendable", "to_tool_call"]

_NAME_KEYS = ("name", "tool", "function", "tool_name")
_ARG_KEYS = ("arguments", "args", "input", "parameters", "params")
_CALL_KEYS = frozenset((*_NAME_KEYS, *_ARG_KEYS, "type", "id"))


def to_tool_call(value: Any, name_hint: Any = None) -> ToolCall | str:
    """Build a :class:`ToolCall` from a table's value, or return a message saying what is wrong."""
    if not isinstance(value, dict):
        if isinstance(value, list) and not value and isinstance(name_hint, str):
            return ToolCall(name_hint, {})
        return "a tool call must be a table with name and arguments"
    keyed = isinstance(name_hint, str)
    if keyed and not _call_shaped(value, name_hint):
        return _with_args(name_hint, value)  # keyed by name: the table is the arguments
    fn = value.get("function")
    if isinstance(fn, dict) and "name" in fn:
        value = fn
    name = _first(value, _NAME_KEYS)
    if name is None and keyed:
        name = name_hint
    if not isinstance(name, str) or not name.strip():
        return "a tool call has no name"
    if keyed and name.strip() != name_hint:
        return f"the tool call keyed '{name_hint}' names another tool, '{name.strip()}'"
    return _with_args(name.strip(), _first(value, _ARG_KEYS))


def _call_shaped(value: dict[Any, Any], name: Any) -> bool:
    """Is *value*, keyed by *name*, a call table rather than the arguments? Only the call shape's
    own keys, with arguments (``{ arguments = ... }``) or the same name (``{ name = "read_file" }``):
    ``{ id = 42 }`` or ``{ name = "foo" }`` are a tool's parameters."""
    if not value or not value.keys() <= _CALL_KEYS:
        return False
    return any(k in value for k in _ARG_KEYS) or _first(value, _NAME_KEYS) == name


def _first(value: dict[Any, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in value:
            return value[key]
    return None


def _with_args(name: str, args: Any) -> ToolCall | str:
    if isinstance(args, str):
        text = args.strip()
        if not text:
            return ToolCall(name, {})
        try:
            args = json.loads(text)
        except RecursionError:
            return f"tool call '{name}': arguments are nested too deep"
        except ValueError:
            return f"tool call '{name}': arguments is a string but not a JSON object"
    if args is None or args == []:
        return ToolCall(name, {})
    if not isinstance(args, dict):
        return f"tool call '{name}': arguments must be a table, got {type(args).__name__}"
    return ToolCall(name, {str(k): v for k, v in args.items()})


def sendable(call: ToolCall) -> ToolCall | str:
    """*call* as it can go to the agent (``json_values``), or a message saying why it cannot."""
    if nested_deeper(call.arguments):
        return f"tool call '{call.name}': arguments nested deeper than {MAX_DEPTH} levels"
    try:
        return ToolCall(call.name, json_values(call.arguments))
    except ValueError as exc:
        return f"tool call '{call.name}': {exc}"


def json_values(value: Any) -> Any:
    """*value* as JSON can carry it to the agent: a lone UTF-16 half (a JSON string's ``\\ud83d``
    without its partner, which no UTF-8 body can hold) becomes U+FFFD, as the lexer makes it in a
    Lua string; a float with no JSON numeral (``1e999`` is infinite, JSON's ``NaN``) raises
    ValueError, and so do two keys that differ only in such halves. Recursive: give it values
    ``nested_deeper`` has accepted, or catch RecursionError."""
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"an argument is {value}, which JSON has no number for")
    if isinstance(value, dict):
        clean = {json_values(k): json_values(v) for k, v in value.items()}
        if len(clean) < len(value):
            raise ValueError("two keys differ only in broken characters (a UTF-16 half alone)")
        return clean
    if isinstance(value, list):
        return [json_values(item) for item in value]
    return value
