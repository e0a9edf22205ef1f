"""Feeding a parser from services whose every event carries the whole reply so far.

:class:`SnapshotFeeder` turns cumulative snapshots into deltas without re-parsing: a markdown
snapshot that extends the previous one feeds only its new tail; an older, shorter snapshot that
arrives late (events handled out of order) is ignored, so the longest, latest one wins. HTML
snapshots (detected on the first non-empty snapshot, or forced with ``html=True``) go through an
incremental :class:`~roogab.envelope.html.HtmlDecoder`, which copes with closing tags at the end
that change from one snapshot to the next.
"""

from __future__ import annotations

import logging

from .events import Event
from .html import HtmlDecoder, looks_like_html
from .parser import ReplyParser

__all__ = ["SnapshotFeeder"]

logger = logging.getLogger(__name__)


class SnapshotFeeder:
    """Feed *parser* from cumulative snapshots; ``feed_snapshot`` each one, then ``close``.

    *html* forces the HTML decoder on (``True``) or off (``False``); ``None`` decides from the first
    snapshot that is not blank.
    """

    def __init__(self, parser: ReplyParser, *, html: bool | None = None) -> None:
        self._parser = parser
        self._html = html
        self._decoder: HtmlDecoder | None = None
        self._fed = ""  # the markdown fed so far
        self._undecided = ""  # the latest snapshot while it is not yet clear whether it is HTML

    def feed_snapshot(self, full_text: str) -> list[Event]:
        """Take the whole reply so far; return the events that its new part completes.

        Raises:
            ParserClosedError: the parser was already closed.
        """
        if self._html is None:
            verdict = looks_like_html(full_text.lstrip(), 0, False)
            if verdict is None:
                if len(full_text) >= len(self._undecided):
                    self._undecided = full_text
                return []
            self._html = verdict
        if self._html:
            return self._feed_html(full_text)
        return self._parser.feed(self._delta(full_text))

    def close(self) -> list[Event]:
        """The reply is complete: return the remaining events, ending with ``End``.

        Raises:
            ParserClosedError: the parser was already closed.
        """
        out: list[Event] = []
        if self._html is None and self._undecided:
            self._html = bool(looks_like_html(self._undecided.lstrip(), 0, True))
            out = self._feed_html(self._undecided) if self._html else self._parser.feed(self._undecided)
        if self._decoder is not None:
            tail = self._decoder.close()
            out += self._parser._feed_decoded(tail, cut_off=self._decoder.cut_off)
        return out + self._parser.close()

    def _feed_html(self, full_text: str) -> list[Event]:
        if self._decoder is None:
            self._decoder = HtmlDecoder()
        return self._parser._feed_decoded(self._decoder.feed_snapshot(full_text))

    def _delta(self, full_text: str) -> str:
        """The part of a markdown snapshot not fed yet ("" for a stale, shorter snapshot)."""
        fed = self._fed
        if full_text.startswith(fed):
            delta = full_text[len(fed):]
        elif fed.startswith(full_text):
            return ""
        else:
            logger.debug("snapshot diverges from what was already parsed; feeding only its new tail")
            delta = full_text[len(fed):]
        if delta:
            self._fed = full_text
        return delta
