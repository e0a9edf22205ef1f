"""The fast paths for replies fed a character at a time give what the table reader gives.

While the parser is inside a streamed string or a tool call, one-character chunks skip the reader
(``FastPath``: a set of the characters that cannot wake it, a reused ``Text`` per character, the
offset and "has text" counted when the fast path disarms). These replies are made to walk those
paths: a long and a quoted text string one after the other (a quote is plain text in one and the
end in the other), reasoning with escapes, long strings inside calls holding ``]]``, ``]=`` and a
closer's start, non-ASCII characters, a syntax error after streamed text (its offset), and text
that is only blank space (the prose then stands in for it). Each is fed whole, one character at
a time, one character at a time with an empty chunk before each (the closer check then looks
past empty pieces), and cut in two at every position; ``End`` is compared whole, offset included.
"""

from __future__ import annotations

import pytest

from roogab.envelope import End, Event, Reasoning, ReplyParser, Text, parse_reply

from .util import merge

TOOLS = ["read_file", "write_to_file"]

REPLIES = {
    "strings": (
        '```lua\nreturn {\n'
        '  reasoning = "think: \\"a\\" ] [[x]] \'b\' \\\\ done \\u{48}\\65",\n'
        '  text = [==[Hello "world" \'x\' \\n ]] ]=] ]==x \u00fc \u65e5\u672c ]==],\n'
        '  message = "more text: \\"q\\" ] ]] \'z\' \u00e9 [[ ]==]",\n'
        '  tool_calls = {\n'
        '    { name = "write_to_file", arguments = { path = "a.py", content = [=[\n'
        'x = "]]" .. \']=\' .. "]="\ny = [[ ]] ]]\n]=] } },\n'
        '    { name = "read_file", arguments = { path = "b.py", opts = { depth = 2, list = { 1, 2, { 3 } } } } },\n'
        '  },\n}\n```\n'
    ),
    "closer_starts": (
        '```lua\nreturn {\n  text = [===[a]b]]c]=]d]==]e]==='
        '===]f]]]]==]g]===],\n'
        '  tool_calls = { { name = "write_to_file", arguments = { path = "x", content = [==[]]]]=]]==x]=]]==] } } },\n}\n```\n'
    ),
    "error_after_text": (
        '```lua\nreturn {\n  text = [[Some text\nover two lines]],\n  tool_calls = {\n'
        '    { name = "read_file", arguments = { path = "a.py" } },\n'
        '    { name = "read_file" arguments = { = } },\n  },\n}\n```\n'
    ),
    "blank_text": 'Intro prose.\n\n```lua\nreturn { text = [[   \n\t  ]] }\n```\n\nClosing prose.\n',
    "blank_quoted_then_text": '```lua\nreturn { text = "  \\n ", content = [[ then words ]] }\n```\n',
    "cut_off_in_text": '```lua\nreturn { text = [==[streamed text that never ends ]=',
}


def _feed(chunks: list[str]) -> list[Event]:
    parser = ReplyParser(TOOLS)
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def _same(events: list[Event], expected: list[Event], how: str) -> None:
    assert merge(events) == merge(expected), how  # End compared whole: problem and offset
    assert all(e.text for e in events if isinstance(e, (Text, Reasoning))), f"{how}: an empty piece"


@pytest.mark.parametrize("name", REPLIES)
def test_one_character_at_a_time(name: str) -> None:
    reply = REPLIES[name]
    expected = parse_reply(reply, TOOLS)
    assert isinstance(expected[-1], End)
    _same(_feed(list(reply)), expected, "one character at a time")
    with_empty = [piece for ch in reply for piece in ("", ch)]
    _same(_feed(with_empty), expected, "with an empty chunk before each character")


@pytest.mark.parametrize("name", REPLIES)
def test_every_cut_in_two(name: str) -> None:
    reply = REPLIES[name]
    expected = parse_reply(reply, TOOLS)
    for cut in range(len(reply) + 1):
        _same(_feed([reply[:cut], reply[cut:]]), expected, f"cut at {cut}")


@pytest.mark.parametrize("name", REPLIES)
def test_events_come_with_their_character(name: str) -> None:
    reply = REPLIES[name]
    parser = ReplyParser(TOOLS)
    so_far: list[Event] = []
    for i, ch in enumerate(reply, 1):
        so_far += parser.feed(ch)
        assert merge(so_far) == merge(ReplyParser(TOOLS).feed(reply[:i])), f"after {i} characters"


def test_a_quote_is_text_in_a_long_string_and_the_end_of_a_quoted_one() -> None:
    parser = ReplyParser()
    parser.feed('```lua\nreturn { text = [[')
    assert [list(parser.feed(ch)) for ch in 'a"b'] == [[Text("a")], [Text('"')], [Text("b")]]
    assert not parser.feed("]") and not parser.feed("]")
    parser.feed(', content = "')
    assert [list(parser.feed(ch)) for ch in 'a"'] == [[Text("a")], []]  # the same quote ends this one
    assert [list(parser.feed(ch)) for ch in ' }'] == [[], []]
    assert parser.close()[-1] == End()
