"""Feeding a parser from what a chat service sends: pieces, or snapshots that can change their past.

:class:`SnapshotFeeder` keeps the whole reply so far (``feed_delta`` appends a piece,
``feed_snapshot`` replaces it with a newer whole) and decodes it by what it *means now*: markdown
as it is, a rendered page fragment (HTML, detected on the first non-blank content or forced with
``html=True``) through :func:`~roogab.envelope.html.decode_html`, of which only the *stable* part,
the one no later snapshot can re-render, is parsed before the reply ends.

When the newly decoded text extends what was fed, only its new part is parsed. When it disagrees
(the page re-rendered its past), a fresh parser re-derives the events from the new text (parsing
is fast: a 20 KB reply takes about a millisecond) and only what goes beyond the events already
given out is returned. An event already given out that the new text contradicts is never kept
silently: from then on nothing more is returned, and the final ``End`` names the problem. A
snapshot that is a prefix of what was already fed (an older one arriving late) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .events import End, Event, Reasoning, Text, ToolCall
from .html import DecodeCache, decode_html, looks_like_html
from .parser import ReplyParser

__all__ = ["SnapshotFeeder"]

_Item = tuple[str, object]  # ("text" | "reasoning", str) or ("call", ToolCall)


@dataclass
class _Compared:
    """How newly derived events relate to those already given out."""

    verdict: str  # "extends", "behind" or "contradicts"
    new: list[Event]
    why: str = ""


class SnapshotFeeder:
    """Feed *parser* from a reply's pieces and snapshots; see the module docstring.

    *html* forces the HTML decoder on (``True``) or off (``False``); ``None`` decides from the first
    content that is not blank.
    """

    def __init__(self, parser: ReplyParser, *, html: bool | None = None) -> None:
        self._parser = parser
        self._html = html
        self._raw: list[str] = []  # the reply so far, as the service sent it
        self._fed: list[str] = []  # the text fed to the current parser
        self._fed_len = 0
        self._given: list[Event] = []  # every event returned so far
        self._derived: list[Event] | None = None  # the current parser's events while it lags behind
        self._problem: str | None = None
        self._decoded = DecodeCache()

    @property
    def raw(self) -> str:
        """The reply so far, as the service sent it."""
        return "".join(self._raw)

    @property
    def problem(self) -> str | None:
        """Why the reply can no longer be trusted (a later snapshot contradicted what was given)."""
        return self._problem

    def feed_delta(self, piece: str) -> Sequence[Event]:
        """Append *piece* to the reply; return the events it completes.

        Raises:
            ParserClosedError: the feeder was already closed.
        """
        self._raw.append(piece)
        if self._html is False and self._derived is None and self._problem is None:
            self._fed.append(piece)
            self._fed_len += len(piece)
            return self._give(self._parser.feed(piece))
        return self._update(final=False)

    def feed_snapshot(self, full_text: str, *, rewrite: bool = False) -> Sequence[Event]:
        """Take the whole reply so far; return the events that its new meaning adds. A shorter
        snapshot is an older one arriving late, unless it is a *rewrite* (the service took text
        back: what was passed on of it makes the reply untrustworthy at its end).

        Raises:
            ParserClosedError: the feeder was already closed.
        """
        raw = self.raw
        if not rewrite and raw.startswith(full_text) and len(full_text) < len(raw):
            return []  # an older snapshot arriving late
        self._raw = [full_text]
        return self._update(final=False)

    def close(self) -> Sequence[Event]:
        """The reply is complete: return the remaining events, ending with ``End``.

        Raises:
            ParserClosedError: the parser was already closed.
        """
        out = self._update(final=True)
        if self._problem is not None:
            return [e for e in out if not isinstance(e, End)] + [End(envelope=True, problem=self._problem)]
        return out

    # -- deciding what the reply means now -----------------------------------------------

    def _update(self, final: bool) -> Sequence[Event]:
        raw = self.raw
        if self._html is None:
            verdict = looks_like_html(raw.lstrip(), 0, final)
            if verdict is None:
                return []
            self._html = verdict
        if self._html:
            decoded = decode_html(raw, final, self._decoded)
            target = decoded.text if final else decoded.text[:decoded.stable]
            cut_off = decoded.cut_off
        else:
            target, cut_off = raw, False
        if self._problem is not None:
            return self._parser.close() if final else []
        fed = "".join(self._fed)
        if target.startswith(fed):
            events = self._feed(self._parser, target[len(fed):], cut_off)
        elif fed.startswith(target) and not final:
            return []  # less is stable now than before: wait
        else:
            self._parser = ReplyParser(self._parser.tool_names, detect_html=False)
            self._derived = []
            events = self._feed(self._parser, target, cut_off)
        self._fed, self._fed_len = [target], len(target)
        if final:
            events = [*events, *self._parser.close()]
        return self._give(events, final)

    def _feed(self, parser: ReplyParser, text: str, cut_off: bool = False) -> Sequence[Event]:
        if cut_off:  # said first: the last code block's closing fence is decode_html's, not the page's
            parser.note_cut_off()
        if not text:
            return []
        return parser.feed_decoded(text) if self._html else parser.feed(text)

    def _give(self, events: Sequence[Event], final: bool = False) -> Sequence[Event]:
        """Return what the agent may get of *events*, the current parser's new events."""
        if self._derived is None:
            self._given += events
            return events
        self._derived += events
        compared = _compare(_items(self._given), _items(self._derived))
        if compared.verdict == "behind" and not final:
            return []
        if compared.verdict != "extends":
            self._problem = compared.why or "the chat page took back part of the reply that was already passed on"
            return [e for e in events if isinstance(e, End)]
        self._derived = None
        new = compared.new + [e for e in events if isinstance(e, End)]
        self._given += new
        return new


def _items(events: list[Event]) -> list[_Item]:
    """*events* as comparable items: adjacent text (and reasoning) pieces joined, End left out."""
    items: list[_Item] = []
    for event in events:
        if isinstance(event, (Text, Reasoning)):
            kind = "text" if isinstance(event, Text) else "reasoning"
            if items and items[-1][0] == kind:
                items[-1] = (kind, str(items[-1][1]) + event.text)
            else:
                items.append((kind, event.text))
        elif isinstance(event, ToolCall):
            items.append(("call", event))
    return items


def _compare(given: list[_Item], derived: list[_Item]) -> _Compared:
    """Does *derived* extend *given* (and by what), lag behind it, or contradict it?"""
    for i, (kind, value) in enumerate(given):
        if i >= len(derived):
            return _Compared("behind", [])
        dkind, dvalue = derived[i]
        last = i == len(given) - 1
        if dkind != kind:
            return _Compared("contradicts", [], _why(kind, value))
        if kind == "call":
            if dvalue != value:
                return _Compared("contradicts", [], _why(kind, value))
            continue
        old, new = str(value), str(dvalue)
        if old == new:
            continue
        if last and new.startswith(old):
            rest: list[Event] = [Text(new[len(old):]) if kind == "text" else Reasoning(new[len(old):])]
            return _Compared("extends", rest + _events(derived[i + 1:]))
        if last and old.startswith(new) and i == len(derived) - 1:
            return _Compared("behind", [])
        return _Compared("contradicts", [], _why(kind, value))
    return _Compared("extends", _events(derived[len(given):]))


def _events(items: list[_Item]) -> list[Event]:
    out: list[Event] = []
    for kind, value in items:
        if isinstance(value, ToolCall):
            out.append(value)
        else:
            out.append(Text(str(value)) if kind == "text" else Reasoning(str(value)))
    return out


def _why(kind: str, value: object) -> str:
    what = f"the tool call {value.name}" if isinstance(value, ToolCall) else f"its {kind}"
    return (f"the chat page re-rendered the reply and changed {what}, which was already passed on; "
            "the reply cannot be trusted")
