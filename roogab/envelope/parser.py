"""The reply parser: a model's reply, fed in chunks, becomes Text / Reasoning / ToolCall / End events.

The envelope (format v1, design.md §2), usually inside a ```` ```lua ```` fence::

    reply    := [think] prose* envelope prose* ...
    think    := "<think>" any "</think>"                      -> Reasoning
    envelope := ["return"] table | "print(" string ")"        (legacy form, read as text)
    table    := "{" [field {sep field} [sep]] "}"             sep := "," | ";"
    field    := name "=" value | "[" value "]" "=" value | value
              | string ":" value                              (JSON, tolerated)
    value    := nil | true | false | number | string | table | "[" values "]" (JSON array)
    string   := '"..."' | "'...'" (Lua escapes) | "[" "="* "[" ... "]" "="* "]"
    comments := "--" to end of line | "--[==[" ... "]==]"

Top-level keys: ``text`` (``content``, ``message``) streams as Text, ``reasoning`` as Reasoning,
``tool_calls`` (``calls``) holds one table per call, each emitted as a ToolCall when it closes.
Prose around the envelope is held and becomes Text only when no envelope gave any text. Nothing is
ever evaluated. A reply that does not comply does not raise: ``End.problem`` says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

from ..errors import ParserClosedError
from .calls import to_tool_call
from .depth import MAX_DEPTH, nested_deeper
from .detect import Start, clean_after, clean_before, cut_off_opening, probe
from .events import End, Event, Reasoning, Text, ToolCall
from .html import HtmlDecoder, looks_like_html
from .legacy import LegacyUnescaper
from .lexer import held_suffix
from .tables import TableReader
from .xml_tags import XmlToolFilter

__all__ = ["ReplyParser", "parse_reply"]

_START, _THINK, _PROSE, _ENVELOPE, _DEAD = range(5)
_SPACE_RE = re.compile(r"\s*")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_LINE_RE = re.compile(r"\{line(?::(\d+))?\}")


class ReplyParser:
    """Incremental, sans-IO parser of one reply; ``feed`` chunks, then ``close`` once.

    *tool_names* are the tools the request offers; XML tool tags for them written inside the text
    become :class:`ToolCall` events (see :mod:`roogab.envelope.xml_tags`). A reply that starts
    with an HTML element is buffered into an HTML decoder that finds the code element
    (:mod:`roogab.envelope.html`); its text is parsed as if it had arrived as markdown.
    """

    def __init__(self, tool_names: Collection[str] = ()) -> None:
        self._tool_names = frozenset(tool_names)
        self._buf = ""
        self._pos = 0
        self._base = 0
        self._raw: list[str] = []
        # Chunks in which _wake finds nothing skip the reader (TableReader.bypass): they go to
        # the stream _target or, when it is None, wait unparsed in _pending.
        self._wake: Callable[[str], re.Match[str] | None] | None = None
        self._target: str | None = None
        self._plain_text = False  # _target is "text", without XML tool tags to look for
        self._closer: str | None = None
        self._pending: list[str] = []
        self._state = _START
        self._closed = False
        self._html: HtmlDecoder | None = None
        self._out: list[Event] = []
        self._line_start = True
        self._think_fresh = True
        self._reader: TableReader | None = None
        self._segments: list[list[str]] = [[]]
        self._after_envelope: list[bool] = [False]
        self._prose_filter = self._new_filter()
        self._text_filter: XmlToolFilter | None = None
        self._legacy: LegacyUnescaper | None = None
        self._envelopes = 0
        self._calls = 0
        self._has_text = False
        self._problem: tuple[str, int] | None = None
        self._html_cut_off = False  # the snapshot feeder's HTML decoder saw the reply end in code
        self._envelope_end = 0  # where the last complete envelope ended

    # -- public API ------------------------------------------------------------------------

    def feed(self, chunk: str) -> list[Event]:
        """Parse *chunk*, the next piece of the reply; return the events it completes.

        Raises:
            ParserClosedError: the parser was already closed.
        """
        wake = self._wake  # None once closed
        if wake is not None:
            # Fast paths (see _set_bypass): the chunk cannot change what the table reader does.
            if wake(chunk) is None:
                if self._target is None:  # inside a tool call: parse it once a bracket closes
                    self._pending.append(chunk)
                    return []
                if self._plain_text and chunk:  # the reply's text, as _emit_text would emit it
                    self._raw.append(chunk)
                    self._base += len(chunk)
                    if not self._has_text:
                        self._has_text = not chunk.isspace()
                    return [Text(chunk)]
                return self._stream(chunk)
            if self._closer is not None and not self._ends_closer(chunk):
                self._pending.append(chunk)  # a "]" inside a long string that does not end it
                return []
        if self._closed:
            raise ParserClosedError("feed() after close()")
        if self._html is not None:
            chunk = self._html.feed(chunk)
        out = self._push(chunk, final=False)
        self._set_bypass()
        return out

    def close(self) -> list[Event]:
        """The reply is complete: return the remaining events, ending with exactly one ``End``.

        Raises:
            ParserClosedError: the parser was already closed.
        """
        if self._closed:
            raise ParserClosedError("close() called twice")
        tail = self._html.close() if self._html is not None else ""
        out = self._push(tail, final=True)
        self._closed = True
        self._finish()
        out += self._out
        self._out = []
        return out

    def _feed_decoded(self, text: str, *, cut_off: bool = False) -> list[Event]:
        """Feed text that is already decoded from HTML (used by the snapshot feeder); *cut_off*:
        the HTML ended inside a code block."""
        self._html_cut_off = self._html_cut_off or cut_off
        if self._closed:
            raise ParserClosedError("feed() after close()")
        if self._state == _START:
            self._state = _PROSE
        return self._push(text, final=False)

    # -- the state machine -----------------------------------------------------------------

    def _push(self, text: str, final: bool) -> list[Event]:
        self._wake, self._target, self._closer, self._plain_text = None, None, None, False
        if self._pending:
            text = "".join(self._pending) + text
            self._pending.clear()
        if text:
            self._raw.append(text)
            self._buf = self._buf[self._pos:] + text if self._pos else self._buf + text
            self._base += self._pos
            self._pos = 0
        while self._step(final):
            pass
        out, self._out = self._out, []
        return out

    def _stream(self, chunk: str) -> list[Event]:
        """Hand *chunk*, plain text of the string being streamed, to its target (a fast path)."""
        assert self._target is not None and not self._out
        if not chunk:
            return []
        self._raw.append(chunk)
        self._base += len(chunk)
        self.piece(self._target, chunk)
        out, self._out = self._out, []
        return out

    def _set_bypass(self) -> None:
        """Let the next chunks skip the reader while they cannot change what it does.

        Feeding a reply a few characters at a time would otherwise run the whole state machine
        for each of them. Inside a tool call such chunks wait in ``_pending`` until a closing
        bracket arrives; inside a streamed string they are its text, handed on at once. Set
        after ``feed`` only (every parse step clears it): snapshots arrive in big pieces.
        """
        if self._state != _ENVELOPE or self._html is not None:
            return
        assert self._reader is not None
        bypass = self._reader.bypass()
        if bypass is None:
            return
        if bypass.target is not None:
            if self._pos < len(self._buf):
                return  # the reader waits on held text (a possible closing bracket)
            self._base += self._pos
            self._buf, self._pos = "", 0
        self._wake, self._target, self._closer = bypass.wake.search, bypass.target, bypass.closer
        self._plain_text = bypass.target == "text" and not self._tool_names

    def _ends_closer(self, chunk: str) -> bool:
        """Does *chunk* complete ``_closer``, the closing bracket of the long string being skipped?"""
        closer = self._closer
        assert closer is not None
        need = len(closer) - 1  # characters before the chunk that may hold the closer's start
        head = ""
        for piece in reversed(self._pending):
            if len(head) >= need:
                break
            head = piece + head
        else:
            head = self._buf[self._pos:] + head
        return closer in head[-need:] + chunk

    def _step(self, final: bool) -> bool:
        """Run the current state; True when the state changed and the loop should go on."""
        state = self._state
        if state == _PROSE:
            return self._prose(final)
        if state == _ENVELOPE:
            return self._envelope(final)
        if state == _START:
            return self._start(final)
        if state == _THINK:
            return self._think(final)
        self._pos = len(self._buf)  # _DEAD: ignore the rest
        return False

    def _start(self, final: bool) -> bool:
        buf = self._buf
        p = _space_end(buf, self._pos)
        rest = buf[p:p + len(_THINK_OPEN)]
        if rest == _THINK_OPEN:
            self._pos, self._state = p + len(_THINK_OPEN), _THINK
            return True
        if not final and (p == len(buf) or _THINK_OPEN.startswith(rest)):
            return False
        html = looks_like_html(buf, p, final)
        if html is None:
            return False
        self._state = _PROSE
        if html:
            self._html = HtmlDecoder()
            decoded = self._html.feed(buf[p:]) + (self._html.close() if final else "")
            self._buf, self._pos = decoded, 0
            self._raw = [decoded]
        return True

    def _think(self, final: bool) -> bool:
        buf, pos = self._buf, self._pos
        if self._think_fresh:
            pos = _space_end(buf, pos)
            if pos < len(buf):
                self._think_fresh = False
        i = buf.find(_THINK_CLOSE, pos)
        end = i if i >= 0 else (len(buf) if final else len(buf) - held_suffix(buf[-8:], _THINK_CLOSE))
        if end > pos:
            self._out.append(Reasoning(buf[pos:end]))
        if i < 0:
            self._pos = max(end, pos)
            if final:
                self._note("reply cut off inside <think>", self._base + self._pos)
            return False
        self._pos = i + len(_THINK_CLOSE)
        self._state, self._line_start = _PROSE, True
        return True

    def _prose(self, final: bool) -> bool:
        buf, pos, n = self._buf, self._pos, len(self._buf)
        while pos < n:
            if self._line_start:
                verdict = probe(buf, pos, final)
                if verdict is None:
                    break
                if isinstance(verdict, Start):
                    self._pos = verdict.pos
                    self._begin_envelope(verdict)
                    return True
            nl = buf.find("\n", pos)
            end = n if nl < 0 else nl + 1
            self._add_prose(buf[pos:end])
            pos, self._line_start = end, nl >= 0
        self._pos = pos
        return False

    def _begin_envelope(self, start: Start) -> None:
        self._envelopes += 1
        self._reader = TableReader(self, legacy=start.legacy, offset=self._base + start.pos)
        self._flush_prose_filter()
        self._state = _ENVELOPE

    def _envelope(self, final: bool) -> bool:
        reader = self._reader
        assert reader is not None
        self._pos = reader.run(self._buf, self._pos, self._base, final)
        if reader.done:
            self._envelope_end = self._base + self._pos
            self._reader = None
            self._segments.append([])
            self._after_envelope.append(True)
            self._state, self._line_start = _PROSE, False
            return True
        if reader.error is not None:
            self._note(*reader.error)
            reader.abandon()
            self._state = _DEAD
            return True
        if final:
            unfinished = reader.unfinished()
            if unfinished is not None:
                self._note(*unfinished)
            reader.abandon()
        return False

    # -- the sink the table reader talks to ------------------------------------------------

    def piece(self, target: str, text: str) -> None:
        """A piece of a streamed string (see :class:`roogab.envelope.tables.Sink`)."""
        if target == "reasoning":
            self._out.append(Reasoning(text))
            return
        if target == "legacy":
            if self._legacy is None:
                self._legacy = LegacyUnescaper()
            text = self._legacy.feed(text)
        self._emit_text(text)

    def end_string(self, target: str) -> None:
        """A streamed string ended: release what its filters hold back."""
        if target == "legacy" and self._legacy is not None:
            self._emit_text(self._legacy.flush())
            self._legacy = None
        if target != "reasoning" and self._text_filter is not None:
            self._emit_events(self._text_filter.flush(), self._text_filter)
            self._text_filter = None

    def call(self, value: Any, name_hint: str | None, offset: int) -> None:
        """A tool-call table closed."""
        result = to_tool_call(value, name_hint)
        if isinstance(result, str):
            self._note(f"{result} (table at {{line}})", offset)
            return
        if nested_deeper(result.arguments):
            self._note(f"tool call '{result.name}': arguments nested deeper than {MAX_DEPTH} levels "
                       "(table at {line})", offset)
            return
        self._calls += 1
        self._out.append(result)

    def _emit_text(self, text: str) -> None:
        if not text:
            return
        if not self._tool_names:
            self._has_text = self._has_text or not text.isspace()
            self._out.append(Text(text))
            return
        if self._text_filter is None:
            self._text_filter = XmlToolFilter(self._tool_names)
        self._emit_events(self._text_filter.feed(text), self._text_filter)

    def _emit_events(self, events: list[Event], source: XmlToolFilter) -> None:
        for event in events:
            if isinstance(event, Text):
                self._has_text = self._has_text or not event.text.isspace()
            elif isinstance(event, ToolCall) and nested_deeper(event.arguments):
                self._note(f"tool call '{event.name}': arguments nested deeper than {MAX_DEPTH} levels", -1)
                continue
            else:
                self._calls += 1
            self._out.append(event)
        if source.problem is not None:
            self._note(source.problem, -1)

    # -- prose -----------------------------------------------------------------------------

    def _new_filter(self) -> XmlToolFilter | None:
        return XmlToolFilter(self._tool_names) if self._tool_names else None

    def _add_prose(self, text: str) -> None:
        if not text:
            return
        if self._prose_filter is None:
            self._segments[-1].append(text)
            return
        self._keep_prose(self._prose_filter.feed(text))

    def _keep_prose(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, ToolCall) and nested_deeper(event.arguments):
                self._note(f"tool call '{event.name}': arguments nested deeper than {MAX_DEPTH} levels", -1)
            elif isinstance(event, ToolCall):
                self._calls += 1
                self._out.append(event)
            elif isinstance(event, Text):
                self._segments[-1].append(event.text)

    def _flush_prose_filter(self) -> None:
        if self._prose_filter is not None:
            self._keep_prose(self._prose_filter.flush())
            if self._prose_filter.problem is not None:
                self._note(self._prose_filter.problem, -1)
            self._prose_filter = self._new_filter()

    def _prose_text(self) -> str:
        parts = []
        last = len(self._segments) - 1
        for i, segment in enumerate(self._segments):
            text = "".join(segment)
            if self._after_envelope[i]:
                text = clean_after(text)
            if i < last:
                text = clean_before(text)
            if text.strip():
                parts.append(text.strip())
        return "\n\n".join(parts)

    # -- the end ---------------------------------------------------------------------------

    def _finish(self) -> None:
        self._flush_prose_filter()
        if self._text_filter is not None:
            self._emit_events(self._text_filter.flush(), self._text_filter)
        prose = self._prose_text()
        if prose and not self._has_text:
            self._out.append(Text(prose))
        found = self._envelopes > 0 or self._calls > 0
        if not found:
            self._out.append(self._no_envelope())
            return
        if self._problem is None and not (self._has_text or self._calls or prose):
            self._problem = ("the envelope has neither text nor tool calls", -1)
        if self._problem is None:
            self._note_cut_off_after()
        problem, offset = self._problem if self._problem is not None else (None, -1)
        self._out.append(End(envelope=True, problem=problem, offset=offset))

    def _note_cut_off_after(self) -> None:
        """Another envelope opened after the last complete one and was cut off there."""
        text = "".join(self._raw)
        tail = text[self._envelope_end:]
        rest = clean_after(tail)
        opened = cut_off_opening(rest)
        if opened is not None:
            where = self._envelope_end + len(tail) - len(rest) + opened
            self._note("the reply was cut off where its next envelope opens ({line})", where)

    def _no_envelope(self) -> End:
        """The End of a reply without an envelope; one that visibly began an envelope and was
        cut off there is one (never closed), with or without tools."""
        text = "".join(self._raw)
        opened = cut_off_opening(text)
        if opened is None and (self._html_cut_off or (self._html is not None and self._html.cut_off)):
            return End(envelope=True, problem="the reply was cut off inside a code block", offset=-1)
        if opened is None:
            return End(envelope=False, problem="no envelope found", offset=-1)
        line = text.count("\n", 0, opened) + 1
        return End(envelope=True, problem=f"the reply was cut off where its envelope opens (line {line})",
                   offset=opened)

    def _note(self, message: str, offset: int) -> None:
        """Record a problem (the first one wins); ``{line}`` in *message* becomes its line."""
        if self._problem is None:
            self._problem = (_LINE_RE.sub(lambda m: self._line_of(m, offset), message), offset)

    def _line_of(self, m: re.Match[str], offset: int) -> str:
        where = int(m.group(1)) if m.group(1) else offset
        text = "".join(self._raw)
        return f"line {text.count(chr(10), 0, max(where, 0)) + 1}"


def _space_end(buf: str, pos: int) -> int:
    m = _SPACE_RE.match(buf, pos)
    return m.end() if m else pos


def parse_reply(text: str, tool_names: Collection[str] = ()) -> list[Event]:
    """Parse a whole reply at once: ``feed(text) + close()`` of a fresh :class:`ReplyParser`."""
    parser = ReplyParser(tool_names)
    return parser.feed(text) + parser.close()
