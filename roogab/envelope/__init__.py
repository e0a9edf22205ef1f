"""The Lua-table reply envelope: a pure, sans-IO, incremental parser and its checks."""

from .events import End, Event, Reasoning, Text, ToolCall
from .parser import ReplyParser, parse_reply

__all__ = ["End", "Event", "Reasoning", "Text", "ToolCall", "ReplyParser", "parse_reply"]
