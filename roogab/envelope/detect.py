"""Finding where an envelope starts in the prose around it, and cleaning that prose afterwards.

An envelope starts at the beginning of a line (after optional indentation and an optional fence
opener such as ```` ```lua ```` or ``~~~`` on the same line) with one of:

* ``return {`` followed by a key (``k =``, ``"k":``, ``["k"] =``) or ``}``;
* ``{`` followed by one of the envelope's keys (``text``, ``tool_calls``, their aliases), which
  also catches a JSON object written in place of the table;
* ``print(`` followed by a string: the original RooGab form ``print([====[ ... ]====])``.

Anything else is prose. :func:`probe` answers yes, no or "wait for more input".
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .events import End
from .html import strip_marks
from .lexer import NAME_RE, skip_space
from .tables import ENVELOPE_KEYS

__all__ = ["NO", "WAIT", "Start", "clean_after", "clean_before", "cut_off_opening", "joined_prose", "line_of",
           "no_envelope_end", "opening_after", "probe"]

_LINE_START_RE = re.compile(r"[ \t]*(?:(?:`{3,}|~{3,})[\w+.-]*[ \t]+)?")
_PARTIAL_FENCE_RE = re.compile(r"(?:`+|~+)[\w+.-]*[ \t]*\Z")
_QUOTED_KEY_RE = re.compile(r"""(["'])([^"'\\\n]{0,64})\1""")
_BRACKET_KEY_RE = re.compile(r"""\[\s*(["'])([^"'\\\n]{0,64})\1\s*\]""")
_PRINT_RE = re.compile(r"print\s*\(\s*(?=\[=*\[|[\"'])")
_FENCE_OPEN_TAIL_RE = re.compile(r"(?:^|\n)[ \t]*(?:`{3,}|~{3,})[\w+.-]*[ \t]*\Z")
_FENCE_CLOSE_HEAD_RE = re.compile(r"\A\s*(?:`{3,}|~{3,})[ \t]*(?:\n|\Z)")
_FENCE_LINE_RE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})([\w+.-]*)(?:[ \t][^\n]*)?$", re.MULTILINE)
_VISIBLE_OPENING_RE = re.compile(r"\{|print\s*\(\s*[\[\"']")
_ENVELOPE_LABELS = ("lua", "json")
_OPENING_LINES = 8  # an opening that WAITs spans only blank lines and its first tokens


class Start(NamedTuple):
    """An envelope starts: a table at ``pos`` (its ``{``), or a legacy ``print(`` whose argument is at ``pos``."""

    legacy: bool
    pos: int


WAIT = None
NO = False


def probe(buf: str, pos: int, final: bool) -> Start | bool | None:
    """Does an envelope start on the line beginning at *pos*? ``Start``, ``NO`` or ``WAIT``."""
    n = len(buf)
    m = _LINE_START_RE.match(buf, pos)
    p = m.end() if m else pos
    if p >= n:
        return NO if final else WAIT
    c = buf[p]
    if c == "{":
        return _probe_table(buf, p, final, strict=True)
    if c == "r":
        if not buf.startswith("return", p):
            return WAIT if (not final and "return".startswith(buf[p:])) else NO
        q, complete = skip_space(buf, p + 6, final)
        if q >= n or not complete:
            return NO if final else WAIT
        if buf[q] != "{":
            return NO
        return _probe_table(buf, q, final, strict=False)
    if c == "p":
        m = _PRINT_RE.match(buf, p)
        if m:
            return Start(True, m.end())
        tail = buf[p:p + 16]
        return WAIT if (not final and len(tail) < 16 and ("print(".startswith(tail) or tail.startswith("print"))) else NO
    if c in "`~" and not final and _PARTIAL_FENCE_RE.match(buf, p):
        return WAIT
    return NO


def _probe_table(buf: str, brace: int, final: bool, strict: bool) -> Start | bool | None:
    n = len(buf)
    p, complete = skip_space(buf, brace + 1, final)
    if p >= n or not complete:
        return NO if final else WAIT
    c = buf[p]
    if c == "}":
        return NO if strict else Start(False, brace)
    key, end = _key_at(buf, p)
    if key is None:
        if end < 0 and not final:
            return WAIT
        return NO
    q, complete = skip_space(buf, end, final)
    if q >= n or not complete:
        return NO if final else WAIT
    if buf[q] not in "=:" or buf.startswith("==", q):
        return NO
    if key.lower() in ENVELOPE_KEYS or not strict:
        return Start(False, brace)
    return NO


def _key_at(buf: str, p: int) -> tuple[str | None, int]:
    """The key starting at *p* and its end; ``(None, -1)`` if it may still be arriving."""
    c = buf[p]
    n = len(buf)
    if c in "\"'":
        m = _QUOTED_KEY_RE.match(buf, p)
    elif c == "[":
        m = _BRACKET_KEY_RE.match(buf, p)
    else:
        m = NAME_RE.match(buf, p)
        if m is None:
            return None, len(buf)
        return (None, -1) if m.end() == n else (m.group(), m.end())
    if m is None:
        return None, (-1 if n - p < 72 else n)
    return m.group(2), m.end()


def clean_before(prose: str) -> str:
    """Prose that preceded an envelope, without the fence line that opened it."""
    return _FENCE_OPEN_TAIL_RE.sub("", prose.rstrip())


def clean_after(prose: str) -> str:
    """Prose that followed an envelope, without the fence line that closed it."""
    return _FENCE_CLOSE_HEAD_RE.sub("", prose)


def cut_off_opening(text: str) -> int | None:
    """Where *text* (a whole reply in which no envelope was found) visibly opens an envelope that
    never got going, or None.

    That is a line that would have started an envelope had more arrived (``return {`` and a key
    cut short, ``{"text"``, ``print([====``), at the end of the reply or of a fenced block, or a
    ```` ```lua ```` block holding nothing more than that (``ret``, or nothing at all); a fence
    left open at the end counts with a label cut short too (```` ``` ````, ```` ```lu ````). Prose cannot look like this: such a
    reply was cut off, and passing it on as an answer would hand the agent a truncation.
    """
    fences = list(_FENCE_LINE_RE.finditer(text))
    for end in [m.start() for m in fences] + [len(text)]:
        found = _waiting_opening(text[:end])
        if found is not None:
            return found
    for i, fence in enumerate(fences[::2]):  # openers: the 1st, 3rd ... fence line
        closer = fences[2 * i + 1] if 2 * i + 1 < len(fences) else None
        body = text[fence.end(1):closer.start()].rstrip() if closer else text[fence.end(1):]
        label = fence.group(1).lower()
        names = [n for n in _ENVELOPE_LABELS if (n.startswith(label) if closer is None else n == label)]
        if names and (not body.strip() or probe(body, _space_start(body), final=False) is WAIT):
            return fence.start()
    return None


def no_envelope_end(text: str, html_cut_off: bool) -> End:
    """The End of a whole reply *text* in which no envelope was found. One that visibly began an
    envelope and was cut off there has one (never closed), with or without tools, as has a page
    that ended inside a code block (*html_cut_off*)."""
    opened = cut_off_opening(text)
    if opened is None and html_cut_off:
        return End(envelope=True, problem="the reply was cut off inside a code block", offset=-1)
    if opened is None:
        return End(envelope=False, problem="no envelope found", offset=-1)
    line = text.count("\n", 0, opened) + 1
    return End(envelope=True, problem=f"the reply was cut off where its envelope opens (line {line})",
               offset=opened)


def opening_after(tail: str) -> int | None:
    """Where an envelope opens and is cut off in *tail*, the reply after its last complete
    envelope (the closing fence and blank lines aside), or None."""
    rest = clean_after(tail)
    opened = cut_off_opening(rest)
    return None if opened is None else len(tail) - len(rest) + opened


def _waiting_opening(buf: str) -> int | None:
    """The start of a visible envelope opening that runs to the end of *buf*, or None."""
    starts = [0] + [m.end() for m in re.finditer("\n", buf)]
    for start in starts[-_OPENING_LINES:]:
        if start < len(buf) and probe(buf, start, final=False) is WAIT \
                and _VISIBLE_OPENING_RE.search(buf, start):
            return start
    return None


def _space_start(text: str) -> int:
    """The start of the first line of *text* that is not blank."""
    stripped = text.lstrip()
    if not stripped:
        return len(text)
    first = len(text) - len(stripped)
    line = text.rfind("\n", 0, first)
    return line + 1


def joined_prose(segments: list[list[str]], after_envelope: list[bool], decoded: bool) -> str:
    """The prose around a reply's envelopes, one paragraph per segment, the envelopes' fences
    and lead-ins cleaned off (*decoded*: the text came from a page and may hold its marks)."""
    parts = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        text = "".join(segment)
        if decoded:
            text = strip_marks(text)
        if after_envelope[i]:
            text = clean_after(text)
        if i < last:
            text = clean_before(text)
        if text.strip():
            parts.append(text.strip())
    return "\n\n".join(parts)


_LINE_RE = re.compile(r"\{line(?::(\d+))?\}")


def line_of(message: str, offset: int, text: str) -> str:
    """*message* with ``{line}`` made the line of *text* at *offset* (``{line:N}``: at N)."""
    def line(m: re.Match[str]) -> str:
        where = int(m.group(1)) if m.group(1) else offset
        return f"line {text.count(chr(10), 0, max(where, 0)) + 1}"
    return _LINE_RE.sub(line, message)
