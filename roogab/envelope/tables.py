"""The table reader: a pushdown automaton over the envelope's tokens.

It reads one envelope (``{ ... }``, or the legacy ``print( ... )``) from a buffer that grows,
streams the strings that are the reply's text or reasoning to a :class:`Sink` as they arrive, and
hands every tool-call table to the sink the moment it closes. Values are built as Python data:
keyed tables become ``dict`` (keys as strings, as JSON has them), positional-only tables ``list`` (an empty table is ``{}``), a mixed
table a ``dict`` whose positional values sit under the keys "1", "2", ...

Tolerated beyond Lua: JSON objects and arrays (``"k": v``, ``[1, 2]``, ``null``), Python-style
``True``/``False``/``None``, a missing separator between fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from .depth import MAX_DEPTH
from .lexer import (
    LONG_OPEN_RE,
    LONG_PREFIX_RE,
    NAME_RE,
    NUMBER_RE,
    held_suffix,
    number_value,
    plain_run_re,
    scan_escape,
    skip_space,
)

__all__ = ["CALL_KEYS", "ENVELOPE_KEYS", "REASONING_KEYS", "TEXT_KEYS", "Bypass", "Sink", "TableReader"]


TEXT_KEYS = frozenset({"text", "content", "message"})
REASONING_KEYS = frozenset({"reasoning", "reasoning_content", "thinking"})
CALL_KEYS = frozenset({"tool_calls", "calls"})
ENVELOPE_KEYS = TEXT_KEYS | REASONING_KEYS | CALL_KEYS

_NUMBER_TAIL_RE = re.compile(r"[\w.+-]*\Z")
_NON_SPACE_RE = re.compile(r"\S")
_CLOSERS_RE = re.compile(r"[\]})]")
_LONG_END_RE = re.compile(r"\]")
_QUOTED_END_RE = re.compile(r"[\\\"']")


def _quiet(wake: re.Pattern[str]) -> frozenset[str]:
    """The one-character chunks in which *wake* finds nothing (ASCII; others go to the regex)."""
    return frozenset(c for c in map(chr, range(128)) if wake.search(c) is None)


_QUIET = {wake: _quiet(wake) for wake in (_CLOSERS_RE, _LONG_END_RE, _QUOTED_END_RE)}
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_KEY_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=")
# A keyed field with a plain value, the bulk of a tool call's arguments, read in one match:
# a quoted string without escapes, a decimal integer or a boolean, complete (a delimiter follows),
# and its separator if there is one. Anything else goes token by token.
_SIMPLE_FIELD_RE = re.compile(
    r"""([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"""
    r"""(?:"([^"\\]*)"|(true|false)(?=[\s,;}\]])|(-?\d+)(?=[\s,;}\]]))(?:\s*[,;])?"""
)
_LITERALS: dict[str, Any] = {"true": True, "false": False, "nil": None, "null": None, "none": None}

# Frame states.
_FIELD, _VALUE, _SEP, _MAYBE_KEY, _BKEY, _BKEY_END, _ASSIGN = range(7)
# Frame roles.
_TOP, _CALLS, _CALL, _OTHER, _PRINT = range(5)


class Sink(Protocol):
    """Receives what the reader finds; implemented by the reply parser."""

    def piece(self, target: str, text: str) -> None:
        """A piece of a streamed string; *target* is ``text``, ``reasoning`` or ``legacy``."""

    def end_string(self, target: str) -> None:
        """The streamed string for *target* has ended."""

    def call(self, value: Any, name_hint: str | None, offset: int) -> None:
        """A tool-call table closed; *offset* is where it opened."""


@dataclass(frozen=True, slots=True, eq=False)
class Bypass:
    """How chunks may skip the reader for a while; see :meth:`TableReader.bypass`.

    Compared and hashed by identity: the parser keeps the fast path it made from each of the
    fixed ones below.
    """

    wake: re.Pattern[str]  # a chunk in which this finds something must be parsed
    target: str | None = None  # the stream a skipping chunk belongs to; None: it waits unparsed
    closer: str | None = None  # waiting inside a long string: a "]" matters only if it ends this

    @property
    def quiet(self) -> frozenset[str]:
        """One-character chunks ``wake`` finds nothing in: a set lookup is cheaper than the regex
        (a reply fed a character at a time checks every character)."""
        return _QUIET[self.wake]


# The bypasses that do not depend on the string being read, made once (the parser keeps the fast
# path it builds from each).
_WAITING = Bypass(_CLOSERS_RE)
_STREAMING = {(long, target): Bypass(_LONG_END_RE if long else _QUOTED_END_RE, target)
              for long in (True, False) for target in ("text", "reasoning", "legacy")}


class _Frame:
    __slots__ = ("close", "held", "hint", "json", "key", "keyed", "offset", "role", "seq", "state")

    def __init__(self, close: str, role: int, offset: int, json: bool) -> None:
        self.close = close
        self.role = role
        self.offset = offset
        self.state = _FIELD
        self.key: Any = None
        self.keyed: dict[Any, Any] = {}
        self.seq: list[Any] = []
        self.json = json
        self.held: Any = None
        self.hint: Any = None  # a call's name given as its key in tool_calls

    def value(self) -> Any:
        if not self.seq:
            return self.keyed
        if not self.keyed:
            return self.seq
        merged: dict[Any, Any] = {str(i): v for i, v in enumerate(self.seq, 1)}
        merged.update(self.keyed)
        return merged


class _Str:
    __slots__ = ("closer", "dest", "fresh", "long", "offset", "parts", "target")

    def __init__(self, closer: str, long: bool, target: str | None, dest: int, offset: int) -> None:
        self.closer = closer
        self.long = long
        self.parts: list[str] = []
        self.target = target
        self.dest = dest
        self.offset = offset
        self.fresh = long  # a long string drops a newline right after its opening bracket


class TableReader:
    """Reads one envelope from a growing buffer; see the module docstring."""

    def __init__(self, sink: Sink, *, legacy: bool = False, offset: int = 0) -> None:
        self._sink = sink
        self._stack: list[_Frame] = []
        self._str: _Str | None = None
        self.done = False
        self.error: tuple[str, int] | None = None
        if legacy:
            self._stack.append(_Frame(")", _PRINT, offset, False))

    # -- driving ---------------------------------------------------------------------------

    def run(self, buf: str, pos: int, base: int, final: bool) -> int:
        """Consume ``buf[pos:]`` as far as possible; return the new position.

        *base* is the absolute offset of ``buf[0]`` in the reply. Afterwards ``done`` is set when
        the envelope closed, ``error`` holds ``(message, offset)`` after a syntax error.
        """
        n = len(buf)
        next_char = _NON_SPACE_RE.search
        while not self.done and self.error is None:
            if self._str is not None:
                pos = self._string(buf, pos, base, final)
                if self._str is not None:
                    break
                continue
            m = next_char(buf, pos)  # plain spaces are skipped here: this loop is hot
            if m is None:
                pos = n
                break
            pos = m.start()
            if buf[pos] == "-":  # a comment, or a negative number
                pos, complete = skip_space(buf, pos, final)
                if not complete or pos >= n:
                    break
            end = self._token(buf, pos, base, final)
            if end < 0:
                break
            pos = end
        return pos

    def unfinished(self) -> tuple[str, int] | None:
        """Why the envelope is incomplete, as ``(message, offset)``; ``None`` when it is not."""
        if self._str is not None:
            return "reply cut off inside a string", self._str.offset
        if not self._stack:
            return None
        for frame in reversed(self._stack):
            if frame.role == _CALL:
                return "tool call cut off: '{' opened at {line} is never closed", frame.offset
        frame = self._stack[-1]
        opener = "(" if frame.role == _PRINT else {"}": "{", "]": "["}[frame.close]
        return f"unbalanced bracket: '{opener}' opened at {{line}} is never closed", frame.offset

    def bypass(self) -> Bypass | None:
        """How the next chunks may skip the reader, or ``None`` if they may not.

        A chunk in which ``wake`` finds nothing cannot change what the reader hands to the sink:

        * Below the top level (inside ``tool_calls``, a call, its arguments) nothing reaches the
          sink until a bracket closes: strings there are plain values and a call is handed over
          when its table ends. Such chunks may wait unparsed (``target`` is ``None``); parsing
          them later gives the same result, as for any split. Inside a long string there, only
          a chunk that completes its ``closer`` matters.
        * Inside a string streamed to ``target`` (``text``, ``reasoning``, ``legacy``), a chunk
          without a closing bracket (long string), quote or backslash (quoted string) is plain
          text of that string, for the caller to hand to the sink itself.
        """
        if self.done or self.error is not None or not self._stack:
            return None
        s = self._str
        if s is not None and s.target is not None:
            return None if s.fresh else _STREAMING[s.long, s.target]
        if self._stack[-1].role in (_TOP, _PRINT):
            return None
        if s is not None and s.long:
            return Bypass(_LONG_END_RE, None, s.closer)
        return _WAITING

    def abandon(self) -> None:
        """Flush a string that is being streamed (the reply ended inside it)."""
        s = self._str
        if s is not None and s.target is not None:
            self._sink.end_string(s.target)
        self._str = None

    # -- tokens ----------------------------------------------------------------------------

    def _token(self, buf: str, pos: int, base: int, final: bool) -> int:
        """Handle the token at *pos*; return its end, or -1 to wait for more input."""
        c = buf[pos]
        frame = self._stack[-1] if self._stack else None
        if (frame is not None and frame.state == _MAYBE_KEY and c not in "=:"
                and not self._resolve_positional(frame, pos + base)):
            return -1
        if frame is not None and frame.state == _SEP and c not in ",;}])":
            frame.state = _FIELD  # tolerate a missing separator
        if c in _NAME_START:  # the commonest token: a key (often a whole field) or a literal
            if frame is not None and frame.state == _FIELD and frame.close == "}":
                end = self._keyed_field(frame, buf, pos)
                if end is not None:
                    return end
            m = NAME_RE.match(buf, pos)
            assert m is not None
            if m.end() == len(buf) and not final:
                return -1
            return self._name(frame, m.group(), pos, base)
        if c == "{":
            return self._open(frame, "}", pos, base)
        if c == "]" and frame is not None and frame.state == _BKEY_END:
            frame.state = _ASSIGN
            return pos + 1
        if c in "}])":
            return self._close(frame, c, pos, base)
        if c in ",;":
            return self._separator(frame, c, pos, base)
        if c in "=:":
            return self._assign(frame, c, pos, base)
        if c == "[":
            return self._bracket(frame, buf, pos, base, final)
        if c == '"' or c == "'":
            self._start_string(frame, c, False, pos + 1, pos + base)
            return pos + 1
        if c.isdigit() or c in "-.":
            return self._number(frame, buf, pos, base, final)
        return self._fail(f"unexpected {c!r} at {{line}}", pos + base)

    def _keyed_field(self, frame: _Frame, buf: str, pos: int) -> int | None:
        """Read ``key = <plain value>`` or else ``key =`` at *pos* in one regex match.

        The hot path of tool-call tables: it does what the tokens one by one would do. Returns
        the end of what it read, or ``None`` when neither form is there.
        """
        if frame.role != _TOP and frame.role != _PRINT:  # strings here are values, never streamed
            m = _SIMPLE_FIELD_RE.match(buf, pos)
            if m is not None:
                key, text, literal, number = m.groups()
                frame.key = key
                if text is not None:
                    self._put(frame, text)
                else:
                    self._put(frame, literal == "true" if literal is not None else number_value(number))
                if m.group().endswith((",", ";")):
                    frame.state = _FIELD
                return m.end()
        m = _KEY_ASSIGN_RE.match(buf, pos)
        if m is None:
            return None
        frame.key, frame.state = m.group(1), _VALUE
        return m.end()

    def _open(self, frame: _Frame | None, close: str, pos: int, base: int) -> int:
        if len(self._stack) >= MAX_DEPTH:
            return self._fail(f"the envelope is nested deeper than {MAX_DEPTH} levels at {{line}}", pos + base)
        if frame is None:
            self._stack.append(_Frame(close, _TOP, pos + base, False))
            return pos + 1
        if frame.state not in (_FIELD, _VALUE):
            return self._fail(f"unexpected {'{' if close == '}' else '['!r} at {{line}}", pos + base)
        role, hint = _OTHER, None
        if frame.role == _TOP and _norm(frame.key) in CALL_KEYS:
            role = _CALLS
        elif frame.role == _CALLS:
            role, hint = _CALL, frame.key
        child = _Frame(close, role, pos + base, frame.json or close == "]")
        child.hint = hint
        self._stack.append(child)
        return pos + 1

    def _close(self, frame: _Frame | None, c: str, pos: int, base: int) -> int:
        if frame is None or frame.state not in (_FIELD, _SEP):
            return self._fail(f"unexpected {c!r} at {{line}}", pos + base)
        if c != frame.close:
            return self._fail(f"unbalanced bracket: {c!r} at {{line}} does not match the bracket "
                              f"opened at {{line:{frame.offset}}}", pos + base)
        self._stack.pop()
        if frame.role == _CALL:
            self._sink.call(frame.value(), frame.hint, frame.offset)
        if not self._stack:
            self.done = True
        else:
            self._put(self._stack[-1], None if frame.role in (_TOP, _CALLS, _CALL) else frame.value())
        return pos + 1

    def _separator(self, frame: _Frame | None, c: str, pos: int, base: int) -> int:
        if frame is None or frame.state not in (_SEP, _FIELD):
            return self._fail(f"unexpected {c!r} at {{line}}", pos + base)
        frame.state = _FIELD
        return pos + 1

    def _assign(self, frame: _Frame | None, c: str, pos: int, base: int) -> int:
        if frame is not None and frame.state == _MAYBE_KEY:
            frame.key, frame.held = frame.held, None
            frame.json = frame.json or c == ":"
        elif frame is not None and frame.state == _ASSIGN:
            frame.key, frame.held = frame.held, None
        else:
            return self._fail(f"unexpected {c!r} at {{line}}", pos + base)
        frame.state = _VALUE
        return pos + 1

    def _bracket(self, frame: _Frame | None, buf: str, pos: int, base: int, final: bool) -> int:
        if frame is None:
            return self._fail("unexpected '[' at {line}", pos + base)
        if pos + 1 >= len(buf) and not final:
            return -1
        if not final and LONG_PREFIX_RE.match(buf, pos):
            return -1
        m = LONG_OPEN_RE.match(buf, pos)
        if m is not None and not (frame.json and frame.state != _BKEY):
            self._start_string(frame, "]" + m.group(1) + "]", True, m.end(), pos + base)
            return m.end()
        if frame.state == _FIELD and frame.close == "}" and not frame.json:
            frame.state = _BKEY
            return pos + 1
        return self._open(frame, "]", pos, base)

    def _number(self, frame: _Frame | None, buf: str, pos: int, base: int, final: bool) -> int:
        m = NUMBER_RE.match(buf, pos)
        if m is None:
            if not final and _NUMBER_TAIL_RE.match(buf, pos):
                return -1
            return self._fail(f"unexpected {buf[pos]!r} at {{line}}", pos + base)
        if not final and _NUMBER_TAIL_RE.match(buf, m.end()):
            return -1  # "0" of "0x1F", "1" of "1e+5": wait for a delimiter
        self._scalar(frame, number_value(m.group()), pos, base)
        return m.end()

    def _name(self, frame: _Frame | None, name: str, pos: int, base: int) -> int:
        if frame is None:
            return self._fail(f"unexpected {name!r} at {{line}}", pos + base)
        if frame.state == _FIELD and frame.close == "}":
            frame.state, frame.held = _MAYBE_KEY, _Name(name)
            return pos + len(name)
        if name.lower() not in _LITERALS:
            return self._fail(f"unexpected {name!r} at {{line}}", pos + base)
        self._scalar(frame, _LITERALS[name.lower()], pos, base)
        return pos + len(name)

    # -- values ----------------------------------------------------------------------------

    def _scalar(self, frame: _Frame | None, value: Any, pos: int, base: int) -> None:
        if frame is None:
            self._fail("unexpected value at {line}", pos + base)
        elif frame.state == _BKEY:
            frame.held, frame.state = value, _BKEY_END
        elif frame.state in (_FIELD, _VALUE):
            self._put(frame, value)
        else:
            self._fail("unexpected value at {line}", pos + base)

    def _put(self, frame: _Frame, value: Any) -> None:
        if frame.key is not None:
            frame.keyed[frame.key if type(frame.key) is str else _key_text(frame.key)] = value
            frame.key = None
        else:
            frame.seq.append(value)
        frame.state = _SEP

    def _resolve_positional(self, frame: _Frame, offset: int) -> bool:
        held = frame.held
        frame.held = None
        frame.state = _FIELD
        if isinstance(held, _Name):
            if held.lower() not in _LITERALS:
                self._fail(f"unexpected {str(held)!r} at {{line}}", offset)
                return False
            held = _LITERALS[held.lower()]
        self._put(frame, held)
        return True

    # -- strings ---------------------------------------------------------------------------

    def _start_string(self, frame: _Frame | None, closer: str, long: bool, pos: int, offset: int) -> None:
        dest, target = _VALUE, None
        if frame is None:
            self._fail("unexpected string at {line}", offset)
            return
        if frame.state == _BKEY:
            dest = _BKEY
        elif frame.state == _FIELD and frame.close == "}" and not long:
            dest = _MAYBE_KEY
        elif frame.state not in (_FIELD, _VALUE):
            self._fail("unexpected string at {line}", offset)
            return
        if dest == _VALUE:
            target = _target(frame)
        self._str = _Str(closer, long, target, dest, offset)
        frame.state = -1  # inside a string

    def _string(self, buf: str, pos: int, base: int, final: bool) -> int:
        s = self._str
        assert s is not None
        if s.fresh:
            if (pos >= len(buf) or (buf[pos] == "\r" and pos + 1 >= len(buf))) and not final:
                return pos
            s.fresh = False
            if buf.startswith("\r\n", pos):
                pos += 2
            elif buf.startswith(("\n", "\r"), pos):
                pos += 1
        end = self._long(s, buf, pos, final) if s.long else self._quoted(s, buf, pos, final)
        return end

    def _long(self, s: _Str, buf: str, pos: int, final: bool) -> int:
        i = buf.find(s.closer, pos)
        if i < 0:
            cut = len(buf) if final else len(buf) - held_suffix(buf[-len(s.closer):], s.closer)
            self._deliver(s, buf[pos:cut])
            return max(cut, pos)
        self._deliver(s, buf[pos:i])
        self._finish_string(s)
        return i + len(s.closer)

    def _quoted(self, s: _Str, buf: str, pos: int, final: bool) -> int:
        plain = plain_run_re(s.closer)
        n = len(buf)
        while True:
            m = plain.match(buf, pos)
            end = m.end() if m else pos
            if end > pos:
                self._deliver(s, buf[pos:end])
                pos = end
            if pos >= n:
                return pos
            if buf[pos] == s.closer:
                self._finish_string(s)
                return pos + 1
            decoded = scan_escape(buf, pos, final)
            if decoded is None:
                return pos
            self._deliver(s, decoded[0])
            pos = decoded[1]

    def _deliver(self, s: _Str, text: str) -> None:
        if not text:
            return
        if s.target is None:
            s.parts.append(text)
        else:
            self._sink.piece(s.target, text)

    def _finish_string(self, s: _Str) -> None:
        self._str = None
        frame = self._stack[-1]
        if s.target is not None:
            self._sink.end_string(s.target)
            value = ""
        else:
            value = "".join(s.parts)
        if s.dest == _MAYBE_KEY:
            frame.held, frame.state = value, _MAYBE_KEY
        elif s.dest == _BKEY:
            frame.held, frame.state = value, _BKEY_END
        else:
            frame.state = _VALUE if frame.key is not None else _FIELD
            self._put(frame, value)

    def _fail(self, message: str, offset: int) -> int:
        if self.error is None:
            self.error = (message, offset)
        return -1


class _Name(str):
    """A bare name read where a key may follow; a literal (``true``) if no ``=`` comes."""


def _key_text(key: Any) -> str:
    """A non-string key as JSON would write it (``[1] =`` → ``"1"``, ``[true] =`` → ``"true"``)."""
    return "null" if key is None else str(key).lower() if isinstance(key, bool) else str(key)


def _norm(key: Any) -> Any:
    return key.lower() if isinstance(key, str) else key


def _target(frame: _Frame) -> str | None:
    """Which stream a string value in *frame* belongs to, if any."""
    if frame.role == _PRINT:
        return "legacy"
    if frame.role != _TOP:
        return None
    key = frame.key
    if key is None:
        return "text"
    if not isinstance(key, str):
        return None
    key = key.lower()
    if key in TEXT_KEYS:
        return "text"
    if key in REASONING_KEYS:
        return "reasoning"
    return None
