"""The Lua-table reply envelope: a pure, sans-IO, incremental parser and its checks."""

from .events import End, Event, Reasoning, Text, ToolCall

__all__ = ["End", "Event", "Reasoning", "Text", "ToolCall"]
