"""Streaming promptness: the parser's fast paths may skip work, never delay an event.

The corpus tests check the events of a whole reply however it is cut. These check *when* events
come out: after any prefix fed one character at a time, the events so far are those that feeding
the same prefix at once gives; and chunks of mixed sizes still give the expected events.
"""

from __future__ import annotations

import random

import pytest

from roogab.envelope import Event, Reasoning, ReplyParser, Text, ToolCall

from .test_corpus import CASES, as_dicts, feed_pieces
from .util import merge


@pytest.mark.parametrize("name", CASES)
def test_events_come_as_soon_as_the_prefix_allows(name: str) -> None:
    case = CASES[name]
    reply, tools = case["reply"], case["tool_names"]
    parser = ReplyParser(tools)
    so_far: list[Event] = []
    for i, ch in enumerate(reply, 1):
        so_far += parser.feed(ch)
        assert merge(so_far) == merge(ReplyParser(tools).feed(reply[:i])), f"after {i} characters"
        assert not parser.feed(""), f"an empty chunk after {i} characters"


@pytest.mark.parametrize("name", CASES)
def test_random_chunks(name: str) -> None:
    case = CASES[name]
    reply = case["reply"]
    rng = random.Random(name)
    for _ in range(3):
        pieces, pos = [], 0
        while pos < len(reply):
            size = rng.choice((0, 1, 1, 2, 3, 5, 8, 13))
            pieces.append(reply[pos:pos + size])
            pos += size
        events = feed_pieces(pieces, case["tool_names"])
        assert as_dicts(events) == case["expected"]
        assert all(e.text for e in events if isinstance(e, (Text, Reasoning))), "an empty Text or Reasoning"


def test_tool_call_comes_with_its_closing_brace() -> None:
    reply = '```lua\nreturn {\n  text = [[Hi]],\n  tool_calls = {\n    { name = "read_file", arguments = { path = "a.py" } },\n  },\n}\n```\n'
    parser = ReplyParser()
    close = reply.index("} },") + 3  # characters up to and including the call's "}"
    for i, ch in enumerate(reply[:close], 1):
        events = parser.feed(ch)
        assert any(isinstance(e, ToolCall) for e in events) == (i == close), f"after {i} characters"


def test_text_streams_character_by_character() -> None:
    parser = ReplyParser()
    parser.feed("```lua\nreturn {\n  text = [==[")
    expected = [[Text(ch)] for ch in "Hello "] + [[], [Text("]")], [Text("] ")]] + [[Text(ch)] for ch in "world"]
    assert [list(parser.feed(ch)) for ch in "Hello ]] world"] == expected  # only a possible "]==]" waits
