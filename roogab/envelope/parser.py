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
from collections.abc import Collection, Sequence
from typing import Any

from ..errors import ParserClosedError
from .bypass import Bypass
from .calls import sendable, to_tool_call
from .detect import Start, joined_prose, line_of, no_envelope_end, opening_after, probe
from .events import End, Event, Reasoning, Text, ToolCall
from .html import CODE_CLOSE, CODE_OPEN, decode_html, looks_like_html, strip_marks
from .legacy import LegacyUnescaper
from .lexer import completes_closer, held_suffix
from .states import CROSSED, FastPath, Move, Page, State, next_state
from .tables import TableReader
from .xml_tags import prose_calls

__all__ = ["ReplyParser", "State", "parse_reply"]

_SPACE_RE = re.compile(r"\s*")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
# The states the hot paths test, bound once: an Enum member looked up on its class costs ~0.1 us.
_START, _THINK, _PAGE, _PROSE = State.START, State.THINK, State.PAGE, State.PROSE
_ENVELOPE, _DEAD, _CLOSED = State.ENVELOPE, State.DEAD, State.CLOSED
_NOTHING: frozenset[str] = frozenset()
_NONE: tuple[Event, ...] = ()  # what a chunk that completes nothing returns: no list made


class ReplyParser:
    """Incremental, sans-IO parser of one reply; ``feed`` chunks, then ``close`` once.

    *tool_names* are the tools the request offers; XML tool tags for them in a reply without any
    envelope become :class:`ToolCall` events at ``close`` (see :mod:`roogab.envelope.xml_tags`).
    A reply that starts with an HTML element is buffered whole and decoded at ``close``
    (:mod:`roogab.envelope.html`); its text is parsed as if it had arrived as markdown. To stream
    rendered HTML, decode it outside and use :meth:`feed_decoded` (the reply reader does);
    *detect_html* False reads every reply as markdown.

    The parser is a state machine (:mod:`roogab.envelope.states`): :attr:`state` is where it is,
    and it moves only along :data:`~roogab.envelope.states.TRANSITIONS`.
    """

    def __init__(self, tool_names: Collection[str] = (), *, detect_html: bool = True) -> None:
        self._tool_names = frozenset(tool_names)
        self._detect_html = detect_html  # False: the reply is markdown even if it starts with a tag
        self._buf = ""
        self._pos = 0
        self._base = 0
        self._raw: list[str] = []
        self._fast: FastPath | None = None  # armed: chunks may skip the reader (see FastPath)
        self._pending: list[str] = []  # chunks the fast path left unparsed (inside a tool call)
        self._paths: dict[tuple[Bypass, bool], FastPath] = {}  # made once per kind of bypass
        self._streamed_from = 0  # _raw[this:] is the text the plain-text fast path streamed
        self._hold: frozenset[str] = _NOTHING  # armed inside a tool call: its quiet characters
        self._no_texts: dict[str, Text] = {}  # _quick when it is not armed on plain text (always empty)
        self._quick = self._no_texts  # armed on plain text: its texts (see FastPath)
        self._state = State.START
        self._page = Page()
        self._out: list[Event] = []
        self._line_start = True
        self._think_fresh = True
        self._reader: TableReader | None = None
        self._segments: list[list[str]] = [[]]
        self._after_envelope: list[bool] = [False]
        self._legacy: LegacyUnescaper | None = None
        self._legacy_text: list[str] = []  # a legacy print's text: the old XML tool protocol
        self._envelopes = 0
        self._calls = 0
        self._has_text = False
        self._problem: tuple[str, int] | None = None
        self._envelope_end = 0  # where the last complete envelope ended

    # -- public API ------------------------------------------------------------------------

    @property
    def tool_names(self) -> frozenset[str]:
        """The tools the request offers."""
        return self._tool_names

    @property
    def state(self) -> State:
        """Where the parser is in the reply (read-only; see :mod:`roogab.envelope.states`)."""
        return self._state

    def _move(self, move: Move) -> None:
        self._state = next_state(self._state, move)

    def feed(self, chunk: str) -> Sequence[Event]:
        """Parse *chunk*, the next piece of the reply; return the events it completes (a tuple
        on the fast paths: fed a token at a time, most chunks complete nothing or one text).

        Raises:
            ParserClosedError: the parser was already closed.
        """
        # The chunk cannot change what the table reader does (the FastPath invariant); the first
        # two tests are the fast path's own for one character, looked up in one go.
        if chunk in self._hold:  # inside a tool call: parse it once a bracket closes
            self._pending.append(chunk)
            return _NONE
        event = self._quick.get(chunk)
        if event is not None:  # the reply's text, as _emit_text would emit it
            self._raw.append(chunk)  # _settle counts it when the fast path disarms
            return (event,)
        fast = self._fast  # None once closed
        if fast is not None:
            if fast.closer is not None:  # a long string inside a call: only its end (]=*]) matters
                if "]" not in chunk or not completes_closer(fast.closer, self._pending, self._buf[self._pos:], chunk):
                    self._pending.append(chunk)
                    return _NONE
            elif chunk in fast.quiet or fast.wake(chunk) is None:
                if fast.target is None:
                    self._pending.append(chunk)
                    return _NONE
                if fast.plain_text and chunk:
                    self._raw.append(chunk)
                    event = Text(chunk)
                    if chunk in fast.quiet:
                        fast.texts[chunk] = event
                    return (event,)
                return self._stream(fast.target, chunk)
            out = self._push(chunk, False)  # armed: the state is ENVELOPE (neither CLOSED nor PAGE)
            self._set_bypass()
            return out
        state = self._state
        if state is _CLOSED:
            raise ParserClosedError("feed() after close()")
        if state is _PAGE:
            assert self._page.html is not None
            self._page.html.append(chunk)
            return _NONE
        out = self._push(chunk, final=False)
        self._set_bypass()
        return out

    def close(self) -> list[Event]:
        """The reply is complete: return the remaining events, ending with exactly one ``End``.

        Raises:
            ParserClosedError: the parser was already closed.
        """
        if self._state is _CLOSED:
            raise ParserClosedError("close() called twice")
        tail = ""
        page = self._page
        if self._state is _PAGE:
            assert page.html is not None
            decoded, page.html = decode_html("".join(page.html), final=True), None
            tail, page.decoded = decoded.text, True
            self._move(Move.PAGE_DECODED)
            if decoded.cut_off:
                self.note_cut_off()
        out = self._push(tail, final=True)
        self._move(Move.CLOSE)
        self._finish()
        out += self._out
        self._out = []
        return out

    def note_cut_off(self) -> None:
        """The page whose decoded text this parser is fed ended inside a code block: the reply
        was cut off (a problem, said before any the missing end of the block causes)."""
        self._page.cut_off = True
        self._note("the reply was cut off inside a code block", -1)

    def feed_decoded(self, text: str) -> list[Event]:
        """Feed text that :func:`~roogab.envelope.html.decode_html` made from a page's HTML.

        Not for a parser that buffers a page itself (``State.PAGE``).

        Raises:
            ParserClosedError: the parser was already closed.
        """
        if self._state is _CLOSED:
            raise ParserClosedError("feed() after close()")
        assert self._state is not _PAGE, "feed_decoded() while a page is buffered"
        self._page.decoded = True
        if self._state is _START:
            self._move(Move.DECODED_FED)
        return self._push(text, final=False)

    # -- the state machine -----------------------------------------------------------------

    def _push(self, text: str, final: bool) -> list[Event]:
        if self._fast is not None:  # disarm the fast path (the only place it is)
            if self._fast.plain_text:
                self._settle()
            self._fast, self._hold, self._quick = None, _NOTHING, self._no_texts
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

    def _settle(self) -> None:
        """Count the text the plain-text fast path streamed (it only appends to ``_raw``), and
        keep it in ``_raw`` as one piece."""
        start = self._streamed_from
        if start < len(self._raw):
            text = "".join(self._raw[start:])
            self._raw[start:] = [text]
            self._base += len(text)
            self._has_text = self._has_text or not text.isspace()

    def _stream(self, target: str, chunk: str) -> list[Event]:
        """Hand *chunk*, plain text of the string being streamed, to *target* (a fast path)."""
        assert not self._out
        if not chunk:
            return []
        self._raw.append(chunk)
        self._base += len(chunk)
        self.piece(target, chunk)
        out, self._out = self._out, []
        return out

    def _set_bypass(self) -> None:
        """Let the next chunks skip the reader while they cannot change what it does.

        Feeding a reply a few characters at a time would otherwise run the whole state machine
        for each of them. Inside a tool call such chunks wait in ``_pending`` until a closing
        bracket arrives; inside a streamed string they are its text, handed on at once. Set
        after ``feed`` only (every parse step clears it): snapshots arrive in big pieces.
        """
        if self._state is not _ENVELOPE:
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
        decoded = self._page.decoded
        fast = self._paths.get((bypass, decoded))
        if fast is None:
            fast = FastPath(bypass.wake.search, bypass.target, bypass.closer,
                            bypass.target == "text" and not decoded, bypass.quiet)
            if bypass.closer is None:  # one of the reader's few fixed bypasses: keep it
                self._paths[bypass, decoded] = fast
        self._streamed_from = len(self._raw)
        self._arm(fast)

    def _arm(self, fast: FastPath) -> None:
        """Arm the fast path: the one place its invariant (see :class:`FastPath`) is checked."""
        assert self._state is _ENVELOPE and self._reader is not None and self._page.html is None
        if fast.target is not None:
            assert fast.closer is None and not self._pending and self._pos == len(self._buf)
        assert fast.plain_text == (fast.target == "text" and not self._page.decoded)
        self._fast = fast
        self._hold = fast.quiet if fast.target is None else _NOTHING
        self._quick = fast.texts if fast.plain_text else self._no_texts

    def _step(self, final: bool) -> bool:
        """Run the current state; True when the state changed and the loop should go on."""
        state = self._state
        if state is _ENVELOPE:
            return self._envelope(final)
        if state is _PROSE:
            return self._prose(final)
        if state is _START:
            return self._start(final)
        if state is _THINK:
            return self._think(final)
        assert state is _DEAD, state  # PAGE and CLOSED never parse
        self._pos = len(self._buf)  # ignore the rest
        return False

    def _start(self, final: bool) -> bool:
        buf = self._buf
        p = _space_end(buf, self._pos)
        rest = buf[p:p + len(_THINK_OPEN)]
        if rest == _THINK_OPEN:
            self._pos = p + len(_THINK_OPEN)
            self._move(Move.THINK_OPENS)
            return True
        if not final and (p == len(buf) or _THINK_OPEN.startswith(rest)):
            return False
        html = looks_like_html(buf, p, final) if self._detect_html else False
        if html is None:
            return False
        if not html:
            self._move(Move.MARKDOWN)
            return True
        self._move(Move.PAGE_OPENS)
        self._page.html = [buf[p:]]
        self._buf, self._pos, self._raw = "", 0, []
        if final:  # the whole reply is here (parse_reply): decode it now
            self._buf, self._page.html = decode_html(buf[p:], final=True).text, None
            self._raw, self._page.decoded = [self._buf], True
            self._move(Move.PAGE_DECODED)
            return True
        return False

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
        self._line_start = True
        self._move(Move.THINK_CLOSES)
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
        self._move(Move.ENVELOPE_OPENS)
        page = self._page
        page.envelope_at = self._base + start.pos
        if page.decoded and not self._inside_code(self._base + start.pos):
            page.unfenced = True

    def _envelope(self, final: bool) -> bool:
        reader = self._reader
        assert reader is not None
        self._pos = reader.run(self._buf, self._pos, self._base, final)
        if reader.done:
            self._envelope_end = self._base + self._pos
            self._reader = None
            self._segments.append([])
            self._after_envelope.append(True)
            self._line_start = False
            self._move(Move.ENVELOPE_ENDS)
            return True
        if reader.error is not None:
            self._note(*reader.error)
            reader.abandon()
            self._move(Move.ENVELOPE_BREAKS)
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
            self._legacy_text.append(self._legacy.feed(text))
            return
        self._emit_text(text)

    def end_string(self, target: str) -> None:
        """A streamed string ended: release what its filters hold back."""
        if target == "legacy" and self._legacy is not None:
            self._legacy_text.append(self._legacy.flush())
            self._legacy = None
            text, self._legacy_text = "".join(self._legacy_text), []
            if not self._tool_names:
                self._emit_text(text)
                return
            earlier = self._problem is not None  # as in call(): after a problem no call goes out
            events, problem = prose_calls(text, self._tool_names)
            if problem is not None:
                self._note(problem, -1)
            for event in events:
                if isinstance(event, Text):
                    self._emit_text(event.text)
                elif not earlier:
                    self._calls += 1
                    self._out.append(event)

    def call(self, value: Any, name_hint: str | None, offset: int) -> None:
        """A tool-call table closed. After a problem no call goes out: the reply will be repaired,
        and a call that follows one that was dropped is not what the model meant on its own."""
        if self._problem is not None:
            return
        result = to_tool_call(value, name_hint)
        result = sendable(result) if isinstance(result, ToolCall) else result
        if isinstance(result, str):
            self._note(f"{result} (table at {{line}})", offset)
            return
        if self._page.decoded:
            trouble = self._page.trouble("".join(self._raw), result.arguments, offset)
            if trouble is not None:
                self._note(f"{trouble} (table at {{line}})", offset)
                return
        self._calls += 1
        self._out.append(result)

    def _emit_text(self, text: str) -> None:
        if self._page.decoded:
            if self._page.broken:
                return
            cut = text.find(CODE_CLOSE)
            if cut >= 0:  # the text went on after the page's code block ended: prose, not exact
                self._page.broken = True
                self._note(CROSSED, -1)
                text = text[:cut]
            text = strip_marks(text)
        if not text:
            return
        self._has_text = self._has_text or not text.isspace()
        self._out.append(Text(text))

    def _inside_code(self, offset: int) -> bool:
        """Is *offset* of the decoded text inside one of the page's code blocks?"""
        before = "".join(self._raw)[:offset]
        return before.rfind(CODE_OPEN) > before.rfind(CODE_CLOSE)

    # -- prose -----------------------------------------------------------------------------

    def _add_prose(self, text: str) -> None:
        if text:
            self._segments[-1].append(text)

    # -- the end ---------------------------------------------------------------------------

    def _finish(self) -> None:
        prose = joined_prose(self._segments, self._after_envelope, self._page.decoded)
        if self._envelopes == 0 and self._tool_names and prose:
            earlier = self._problem is not None  # as in call(): after a problem no call goes out
            events, problem = prose_calls(prose, self._tool_names)
            if problem is not None:
                self._note(problem, -1)
            calls = [e for e in events if isinstance(e, ToolCall)]
            self._calls += len(calls)
            self._out += [] if earlier else calls
            prose = "".join(e.text for e in events if isinstance(e, Text)).strip()
        if prose and not self._has_text:
            self._out.append(Text(prose))
        found = self._envelopes > 0 or self._calls > 0
        if not found:
            self._out.append(no_envelope_end(strip_marks("".join(self._raw)), self._page.cut_off))
            return
        if self._problem is None and not (self._has_text or self._calls or prose):
            self._problem = ("the envelope has neither text nor tool calls", -1)
        if self._problem is None:
            self._note_cut_off_after()
        problem, offset = self._problem if self._problem is not None else (None, -1)
        self._out.append(End(envelope=True, problem=problem, offset=offset))

    def _note_cut_off_after(self) -> None:
        """Another envelope opened after the last complete one and was cut off there."""
        opened = opening_after(strip_marks("".join(self._raw)[self._envelope_end:]))
        if opened is not None:
            self._note("the reply was cut off where its next envelope opens ({line})", self._envelope_end + opened)

    def _note(self, message: str, offset: int) -> None:
        """Record a problem (the first one wins); ``{line}`` in *message* becomes its line."""
        if self._problem is None:
            self._problem = (line_of(message, offset, "".join(self._raw)), offset)



def _space_end(buf: str, pos: int) -> int:
    m = _SPACE_RE.match(buf, pos)
    return m.end() if m else pos


def parse_reply(text: str, tool_names: Collection[str] = ()) -> list[Event]:
    """Parse a whole reply at once: ``feed(text) + close()`` of a fresh :class:`ReplyParser`."""
    parser = ReplyParser(tool_names)
    return [*parser.feed(text), *parser.close()]
