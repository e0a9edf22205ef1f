"""The reply parser walks its transition table (roogab.envelope.states), like h11's state tests.

Each reply is fed whole, one character at a time and split at every position; the states the
parser shows through its read-only ``state`` property must follow the table, and on the known
replies below they must be exactly the expected sequence.
"""

from __future__ import annotations

import itertools

import pytest

from roogab.envelope import End, ReplyParser, Text, parse_reply
from roogab.envelope.states import TRANSITIONS, Move, State, next_state
from roogab.errors import ParserClosedError

FENCED = '```lua\nreturn { text = "hi" }\n```\n'
THINK = "<think>let me see</think>\n" + FENCED
TWO = FENCED + "and\n" + FENCED
BROKEN = '```lua\nreturn { text = "a" = = }\n```\n'
CALL = ('```lua\nreturn { text = "ok", tool_calls = { { name = "read", arguments = '
        '{ path = [==[a]]b]==] } } } }\n```\n')
PAGE = "<p>Sure:</p><pre><code>return { text = 'hi' }</code></pre>"

CASES = {
    "fenced": (FENCED, [State.START, State.PROSE, State.ENVELOPE, State.PROSE, State.CLOSED]),
    "think": (THINK, [State.START, State.THINK, State.PROSE, State.ENVELOPE, State.PROSE, State.CLOSED]),
    "two envelopes": (TWO, [State.START, State.PROSE, State.ENVELOPE, State.PROSE, State.ENVELOPE,
                            State.PROSE, State.CLOSED]),
    "broken": (BROKEN, [State.START, State.PROSE, State.ENVELOPE, State.DEAD, State.CLOSED]),
    "tool call (fast paths)": (CALL, [State.START, State.PROSE, State.ENVELOPE, State.PROSE, State.CLOSED]),
    "html page": (PAGE, [State.START, State.PAGE, State.CLOSED]),
    "prose only": ("just words\n", [State.START, State.PROSE, State.CLOSED]),
}


def _reachable(a: State, b: State) -> bool:
    """Can moves listed in the table lead from *a* to *b* (several may happen in one feed)?"""
    seen, todo = {a}, [a]
    while todo:
        state = todo.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is state and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return b in seen


def _in_order(seen: list[State], expected: list[State]) -> bool:
    """Is *seen* *expected* with some states skipped (passed within one feed), in order?"""
    rest = iter(expected)
    return all(any(s is e for e in rest) for s in seen)


def _walk(chunks: list[str]) -> list[State]:
    """The distinct states the parser shows after each feed and after close."""
    parser = ReplyParser()
    seen = [parser.state]
    for chunk in chunks:
        parser.feed(chunk)
        if parser.state is not seen[-1]:
            seen.append(parser.state)
    parser.close()
    seen.append(parser.state)
    return seen


def test_the_table() -> None:
    """The documented table, entry by entry (roogab/envelope/states.py's docstring)."""
    expected = {
        (State.START, Move.THINK_OPENS): State.THINK,
        (State.START, Move.MARKDOWN): State.PROSE,
        (State.START, Move.PAGE_OPENS): State.PAGE,
        (State.START, Move.DECODED_FED): State.PROSE,
        (State.PAGE, Move.PAGE_DECODED): State.PROSE,
        (State.THINK, Move.THINK_CLOSES): State.PROSE,
        (State.PROSE, Move.ENVELOPE_OPENS): State.ENVELOPE,
        (State.ENVELOPE, Move.ENVELOPE_ENDS): State.PROSE,
        (State.ENVELOPE, Move.ENVELOPE_BREAKS): State.DEAD,
    }
    expected |= {(s, Move.CLOSE): State.CLOSED for s in State if s is not State.CLOSED}
    assert expected == TRANSITIONS
    assert not any(src is State.CLOSED for src, _ in TRANSITIONS), "CLOSED is final"


def test_a_move_the_table_does_not_list_fails_loudly() -> None:
    with pytest.raises(AssertionError, match="no transition from PROSE on THINK_OPENS"):
        next_state(State.PROSE, Move.THINK_OPENS)
    with pytest.raises(AssertionError):
        next_state(State.CLOSED, Move.CLOSE)


@pytest.mark.parametrize(("reply", "expected"), CASES.values(), ids=CASES.keys())
def test_one_character_at_a_time_shows_every_state(reply: str, expected: list[State]) -> None:
    seen = _walk(list(reply))
    assert seen == expected
    assert all((a, b) in {(s, d) for (s, _), d in TRANSITIONS.items()} for a, b in itertools.pairwise(seen))


@pytest.mark.parametrize(("reply", "expected"), CASES.values(), ids=CASES.keys())
def test_every_split_follows_the_table(reply: str, expected: list[State]) -> None:
    for cut in range(len(reply) + 1):
        seen = _walk([reply[:cut], reply[cut:]])
        assert seen[0] is State.START and seen[-1] is State.CLOSED
        assert all(_reachable(a, b) for a, b in itertools.pairwise(seen)), (cut, seen)
        assert _in_order(seen, expected), (cut, seen)


def test_the_html_page_is_decoded_at_close() -> None:
    parser = ReplyParser()
    assert not parser.feed(PAGE[:10]) and parser.state is State.PAGE
    assert not parser.feed(PAGE[10:]) and parser.state is State.PAGE
    events = parser.close()
    assert parser.state is State.CLOSED
    assert events == parse_reply(PAGE) and events[0] == Text("hi")


def test_decoded_text_starts_in_prose() -> None:
    parser = ReplyParser(detect_html=False)
    parser.feed_decoded("return { text = 'hi' }")
    assert parser.state is State.PROSE  # the envelope opened and closed in this one feed
    assert parser.close()[-1] == End(envelope=True, problem=None)


def test_closed_is_final() -> None:
    parser = ReplyParser()
    parser.feed(FENCED)
    parser.close()
    with pytest.raises(ParserClosedError):
        parser.feed("more")
    with pytest.raises(ParserClosedError):
        parser.feed_decoded("more")
    with pytest.raises(ParserClosedError):
        parser.close()
    assert parser.state is State.CLOSED


def test_state_is_read_only() -> None:
    parser = ReplyParser()
    with pytest.raises(AttributeError):
        parser.state = State.DEAD  # type: ignore[misc]
