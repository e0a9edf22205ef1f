"""The reply parser's states, the events that move it between them, and its two side records.

Modelled on h11's explicit state machine: :class:`State` names where the parser is in a reply,
:class:`Move` names what happened, and :data:`TRANSITIONS` is the whole table. The parser changes
state only through :func:`next_state`, so a move the table does not list is a bug that fails loudly
instead of a silent, unknown state. ``tests/envelope/test_parser_states.py`` checks that the parser
walks the table on known replies.

The table (``CLOSE`` from every state but ``CLOSED`` is left out of the picture)::

    START    --THINK_OPENS-->     THINK      "<think>" after leading blank space
    START    --MARKDOWN-->        PROSE      anything else (or detect_html is off)
    START    --PAGE_OPENS-->      PAGE       the reply begins with an HTML element: buffer it whole
    START    --DECODED_FED-->     PROSE      feed_decoded(): the text comes from a decoded page
    PAGE     --PAGE_DECODED-->    PROSE      at close: the page's decoded text is parsed as prose
    THINK    --THINK_CLOSES-->    PROSE      "</think>"
    PROSE    --ENVELOPE_OPENS-->  ENVELOPE   a line that opens an envelope (detect.probe)
    ENVELOPE --ENVELOPE_ENDS-->   PROSE      its table closed; prose (or another envelope) may follow
    ENVELOPE --ENVELOPE_BREAKS--> DEAD       the table reader found an error: the rest is ignored
    *        --CLOSE-->           CLOSED     close(): no feed or close after this
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .events import Text
from .html import CODE_CLOSE, CODE_OPEN

__all__ = ["CROSSED", "TRANSITIONS", "FastPath", "Move", "Page", "State", "next_state"]

CROSSED = ("a value holds a fence line (```) that closed the code block on the chat page, so the rest "
           "was rendered as prose; fence the reply with more backticks (````lua) than any fence line "
           "inside it")


class State(enum.Enum):
    """Where the parser is in a reply."""

    START = "start"  # nothing but blank space yet: is it <think>, a page or markdown?
    THINK = "think"  # inside <think>...</think>: Reasoning
    PAGE = "page"  # the reply is an HTML page fragment, buffered until close
    PROSE = "prose"  # between envelopes: held prose, looking for an envelope at each line start
    ENVELOPE = "envelope"  # inside an envelope's table (the TableReader runs)
    DEAD = "dead"  # an envelope broke: the rest of the reply is ignored
    CLOSED = "closed"  # close() ran


class Move(enum.Enum):
    """What moves the parser from one state to the next."""

    THINK_OPENS = "think_opens"
    MARKDOWN = "markdown"
    PAGE_OPENS = "page_opens"
    DECODED_FED = "decoded_fed"
    PAGE_DECODED = "page_decoded"
    THINK_CLOSES = "think_closes"
    ENVELOPE_OPENS = "envelope_opens"
    ENVELOPE_ENDS = "envelope_ends"
    ENVELOPE_BREAKS = "envelope_breaks"
    CLOSE = "close"


def _table() -> dict[tuple[State, Move], State]:
    table = {
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
    table.update({(state, Move.CLOSE): State.CLOSED for state in State if state is not State.CLOSED})
    return table


TRANSITIONS: dict[tuple[State, Move], State] = _table()
"""``(state, move) -> next state``: every transition the parser makes (see the module docstring)."""


def next_state(state: State, move: Move) -> State:
    """The state *move* leads to from *state*; a move the table does not list is a bug.

    Raises:
        AssertionError: ``(state, move)`` is not in :data:`TRANSITIONS`.
    """
    after = TRANSITIONS.get((state, move))
    assert after is not None, f"no transition from {state.name} on {move.name}"
    return after


@dataclass(frozen=True, slots=True)
class FastPath:
    """How the next chunks may skip the table reader (from :meth:`TableReader.bypass`).

    Invariant, checked by :meth:`ReplyParser._arm` (the only place one is made), while armed:

    * the parser is in ``State.ENVELOPE`` with a live reader (so no page is buffered);
    * ``target`` set (the chunk is text of a string streamed to it): the buffer is fully consumed
      and nothing is pending, so a chunk that ``wake`` misses is that string's next text, exactly
      as the reader would hand it to the sink; ``closer`` is ``None``;
    * ``target`` ``None`` (inside a tool call, below the top level): a chunk ``wake`` misses waits
      in ``pending`` unparsed; parsing it later gives the same result, as for any split;
    * ``closer`` set (a long string inside a call): a chunk matters only if it completes
      ``closer`` (one that ``wake`` misses cannot); ``target`` is ``None``;
    * ``plain_text``: ``target == "text"`` and the text is not decoded from a page (no code-block
      marks to strip), so a chunk is one ``Text`` event as is;
    * ``quiet``: one-character chunks in which ``wake`` finds nothing (a cheaper test of the same
      thing, for replies fed a character at a time);
    * ``texts`` (``plain_text`` only): the ``Text`` of each ``quiet`` character streamed so far,
      made once (events are frozen, so one serves every time the character comes).

    Every parse step disarms it (the parser holds ``None``); ``feed`` re-arms it afterwards. While
    armed, the parser's ``_hold`` is ``quiet`` when ``target`` is ``None`` and its ``_quick`` is
    ``texts`` when ``plain_text`` (both empty otherwise and when disarmed): views that let a
    one-character chunk take its path in one lookup.
    """

    wake: Callable[[str], re.Match[str] | None]
    target: str | None
    closer: str | None
    plain_text: bool
    quiet: frozenset[str]
    texts: dict[str, Text] = field(default_factory=dict)


@dataclass(slots=True)
class Page:
    """What the parser knows about a reply that is a chat page's HTML (decoded by html.py)."""

    html: list[str] | None = None  # the page's HTML, buffered in State.PAGE
    decoded: bool = False  # the text comes from decode_html (it holds code-block marks)
    unfenced: bool = False  # an envelope began outside the page's code blocks
    broken: bool = False  # a value went on past the end of the page's code block
    cut_off: bool = False  # the page's HTML ended inside a code block
    envelope_at: int = 0  # where the current envelope began (in the decoded text)

    def trouble(self, raw: str, arguments: dict[str, Any], offset: int) -> str | None:
        """Why a call decoded from the page may not be what the model wrote (None: exact); *raw*
        is the decoded text so far and *offset* where the call's table opened."""
        if self.unfenced:
            return ("the tool call is not inside a code block, so the chat page rendered it as markdown "
                    "and its values may have changed; write the reply in a ```lua code block")
        if _has_mark(arguments, "\ufffd"):
            return ("a value holds U+FFFD, which the chat page puts in place of characters it cannot show "
                    "(NUL), so the value may have changed")
        crossed = CODE_CLOSE in raw[self.envelope_at:max(offset, self.envelope_at)]
        if self.broken or crossed or _has_mark(arguments, CODE_CLOSE) or _has_mark(arguments, CODE_OPEN):
            self.broken = True
            return CROSSED
        return None


def _has_mark(value: Any, mark: str) -> bool:
    if isinstance(value, str):
        return mark in value
    if isinstance(value, dict):
        return any(_has_mark(k, mark) or _has_mark(v, mark) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_mark(v, mark) for v in value)
    return False
