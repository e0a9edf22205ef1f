"""The reply reader: a provider's events for one reply -> envelope events and a verdict. Sans-IO.

It is the turn's first stage after the provider (design.md §1): pieces (``Delta``) and whole-reply
snapshots (``Snapshot``, also after pieces, as Chainlit rewrites a message) go through one
:class:`~roogab.envelope.SnapshotFeeder`, which decodes the reply by what it means now; ``Done``
ends it. At the end it judges the reply: an HTML document instead of a reply is an error page;
an envelope's problem (or a missing envelope when the request offers tools) makes the reply
non-compliant. It does no IO and knows no protocol; tests drive it event by event, the way h11's
tests drive a connection.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .envelope import End, Event, ReplyParser, SnapshotFeeder
from .providers.base import Delta, Done, Snapshot
from .utf16 import is_high_surrogate, well_formed

__all__ = ["ReplyReader", "Verdict", "error_page_title"]

ERROR_PAGE_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    """How a reply ended: ``problem`` (None: compliant) at ``offset``, or an ``error_page`` title."""

    problem: str | None = None
    offset: int = -1
    error_page: str | None = None


class ReplyReader:
    """Read one reply; ``feed`` each provider event (``Done`` last), then look at ``verdict``.

    *tool_names* are the tools the request offers (their calls are the reply's calls); without
    any, a reply of plain prose is a fine answer.
    """

    def __init__(self, tool_names: tuple[str, ...] | list[str], *, html: bool | None = None) -> None:
        self._tools = bool(tool_names)
        self._feeder = SnapshotFeeder(ReplyParser(tool_names, detect_html=False), html=html)
        self.verdict: Verdict | None = None  # set once Done was fed
        self._held = ""  # a UTF-16 first half that ended the last piece: its partner may start the next

    @property
    def raw(self) -> str:
        """The reply so far, as the service sent it."""
        return self._feeder.raw

    def feed(self, event: Delta | Snapshot | Done) -> Sequence[Event]:
        """The envelope events that *event* completes; after ``Done`` they end with ``End``."""
        if isinstance(event, Delta):
            return self._feeder.feed_delta(self._piece(event.text))
        if isinstance(event, Snapshot):
            self._held = ""  # the whole reply so far: what was held is in it
            whole = event.text[:-1] if event.text and is_high_surrogate(event.text[-1]) else event.text
            return self._feeder.feed_snapshot(well_formed(whole), rewrite=event.rewrite)
        events = [*self._feeder.feed_delta(well_formed(self._held))] if self._held else []
        self._held = ""
        text, raw = well_formed(event.text or ""), self.raw
        if text and text.startswith(raw) and len(text) > len(raw):
            events += self._feeder.feed_snapshot(text)
        events += self._feeder.close()
        self.verdict = self._judge(events[-1])
        return events

    def _piece(self, text: str) -> str:
        """A piece as valid Unicode, a trailing first half held back until its partner comes."""
        text, self._held = self._held + text, ""
        if text and is_high_surrogate(text[-1]):
            text, self._held = text[:-1], text[-1]
        return well_formed(text)

    def _judge(self, end: Event) -> Verdict:
        assert isinstance(end, End)
        if end.problem is None:
            return Verdict()
        title = None if end.envelope else error_page_title(self.raw)
        if title is not None:
            return Verdict(error_page=title)
        if end.envelope or self._tools:  # without tools, plain prose is a fine answer
            return Verdict(end.problem, end.offset)
        return Verdict()


def error_page_title(raw: str) -> str | None:
    """The title of a whole HTML document (a proxy's or server's error page), else None.

    A chat page's rendered reply is a fragment (``<p>``, ``<pre>``); a document is not a reply.
    """
    head = raw.lstrip()[:300].lower()
    if not head.startswith(("<!doctype html", "<html")):
        return None
    match = ERROR_PAGE_TITLE.search(raw)
    return match.group(1).strip()[:100] if match else "no title"
