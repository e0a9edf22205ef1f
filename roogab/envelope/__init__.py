"""The Lua-table reply envelope: a pure, sans-IO, incremental parser and its checks."""

from .events import End, Event, Reasoning, Text, ToolCall
from .parser import ReplyParser, parse_reply
from .snapshots import SnapshotFeeder
from .validate import check_call

__all__ = ["End", "Event", "Reasoning", "ReplyParser", "SnapshotFeeder", "Text", "ToolCall", "check_call", "parse_reply"]
