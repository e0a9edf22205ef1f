"""XML tool tags in a reply that has no envelope at all, for tools the request offers.

Models trained on the old XML tool protocols (clients.md §4) write, by habit::

    <read_file>
    <path>a.py</path>
    </read_file>

:class:`XmlToolFilter` takes text as it streams and returns ``Text`` for everything else and a
``ToolCall`` for each complete block whose outer tag names an offered tool. Parameters follow
Roo's own XML parser: each child tag of the tool tag is one argument whose value is its **raw
inner text** (nested tags such as read_file's ``<args><file>...`` stay a string, as Roo stored
them), trimmed of surrounding whitespace, except ``content`` which loses only one leading and one
trailing newline and ends at the *last* ``</content>`` (so file content may hold that tag). As in
Roo's parser, a block's closing tag inside a parameter that is still open is that parameter's
text, not the block's end: a file whose content mentions ``</write_to_file>`` is written whole,
never cut there. Text is held back only from a ``<`` that may begin an offered tool's tag, and
while a block is open.

Tags are tool calls only where nobody could mean them as content: :func:`prose_calls` looks only
at the top level of a reply without an envelope, never inside a fenced block or inline code,
and a block holding another offered tool's opening tag is ambiguous (a file's content that shows
a tool block), so it is a problem, not a call. Text inside an envelope is never mined, except the
legacy ``print([==[...]==])`` form, whose text *is* the old XML tool protocol.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from .events import Event, Text, ToolCall

__all__ = ["XmlToolFilter", "parse_params", "prose_calls"]

_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*$", re.MULTILINE)
_INLINE_CODE_RE = re.compile(r"(`+)[^`].*?\1", re.DOTALL)
_TAG_RE = re.compile(r"<([A-Za-z_][\w-]*)\s*>")
_PARTIAL_TAG_RE = re.compile(r"<([A-Za-z_][\w-]*)?\s*\Z")


class XmlToolFilter:
    """Streaming extraction of XML tool blocks; see the module docstring."""

    def __init__(self, tool_names: Collection[str]) -> None:
        self._names = frozenset(tool_names)
        self._held = ""
        self._block: str | None = None
        self._search_from = 0
        self.calls = 0
        self.problem: str | None = None

    def feed(self, text: str) -> list[Event]:
        """Events for the text so far (``Text`` pieces and complete ``ToolCall`` s)."""
        return self._scan(self._held + text, final=False)

    def flush(self) -> list[Event]:
        """The text has ended: release what was held; an unclosed block stays text."""
        out = self._scan(self._held, final=True)
        if self._block is not None:
            self.problem = f"tool call cut off: <{self._block}> is never closed"
            out.append(Text(f"<{self._block}>" + self._held))
            self._block, self._held = None, ""
        return out

    def _scan(self, buf: str, final: bool) -> list[Event]:
        out: list[Event] = []
        text: list[str] = []
        pos = 0
        while True:
            if self._block is not None:
                closer = f"</{self._block}>"
                i = buf.find(closer, max(pos, self._search_from))
                if i < 0:
                    self._search_from = max(pos, len(buf) - len(closer) + 1)
                    break
                inner = buf[pos:i]
                if not _params(inner)[1]:  # the closer is the text of a parameter still open
                    self._search_from = i + len(closer)
                    continue
                _flush_text(text, out)
                nested = next((n for n in self._names if f"<{n}>" in inner), None)
                if nested is not None:
                    self.problem = self.problem or (f"<{self._block}> holds a <{nested}> tag: an XML tool "
                                                    "block inside another is ambiguous")
                    out.append(Text(f"<{self._block}>{inner}{closer}"))
                else:
                    out.append(ToolCall(self._block, parse_params(inner)))
                    self.calls += 1
                self._block, pos = None, i + len(closer)
                continue
            j = buf.find("<", pos)
            if j < 0:
                text.append(buf[pos:])
                pos = len(buf)
                break
            text.append(buf[pos:j])
            m = _TAG_RE.match(buf, j)
            if m is not None and m.group(1) in self._names:
                self._block, pos, self._search_from = m.group(1), m.end(), m.end()
                continue
            if m is None and not final and self._may_be_tag(buf, j):
                pos = j
                break
            text.append("<")
            pos = j + 1
        _flush_text(text, out)
        self._search_from -= pos
        self._held = buf[pos:]
        return out

    def _may_be_tag(self, buf: str, j: int) -> bool:
        m = _PARTIAL_TAG_RE.match(buf, j)
        if m is None:
            return False
        name = m.group(1) or ""
        return any(n.startswith(name) for n in self._names) and (name in self._names or not m.group().endswith(" "))


def prose_calls(prose: str, tool_names: Collection[str]) -> tuple[list[Event], str | None]:
    """The events of *prose*, a whole reply without an envelope, and the first problem found.

    XML tool blocks become calls only at the top level: fenced blocks and inline code are text.
    No call after the first problem is given (as for envelope calls: not what the model meant
    on its own); those before it are.
    """
    out: list[Event] = []
    problem: str | None = None
    for top, piece in _regions(prose):
        if not top:
            _flush_text([piece], out)
            continue
        xml = XmlToolFilter(tool_names)
        events = xml.feed(piece) + xml.flush()
        out += [e for e in events if isinstance(e, Text)] if problem else events
        problem = problem or xml.problem
    merged: list[Event] = []
    for event in out:
        if merged and isinstance(event, Text) and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + event.text)
        else:
            merged.append(event)
    return merged, problem


def _regions(prose: str) -> list[tuple[bool, str]]:
    """*prose* cut into (top level?, text) pieces: fenced blocks and inline code are not top level."""
    pieces: list[tuple[bool, str]] = []
    pos, fence = 0, ""
    for m in _FENCE_RE.finditer(prose):
        marker = m.group(1)
        if not fence:
            pieces += _inline_regions(prose[pos:m.start()])
            pos, fence = m.start(), marker
        elif marker[0] == fence[0] and len(marker) >= len(fence) and not m.group().strip()[len(marker):]:
            pieces.append((False, prose[pos:m.end()]))
            pos, fence = m.end(), ""
    if fence:
        pieces.append((False, prose[pos:]))
    else:
        pieces += _inline_regions(prose[pos:])
    return pieces


def _inline_regions(text: str) -> list[tuple[bool, str]]:
    pieces: list[tuple[bool, str]] = []
    pos = 0
    for m in _INLINE_CODE_RE.finditer(text):
        pieces += [(True, text[pos:m.start()]), (False, m.group())]
        pos = m.end()
    pieces.append((True, text[pos:]))
    return [p for p in pieces if p[1]]


def _flush_text(text: list[str], out: list[Event]) -> None:
    joined = "".join(text)
    text.clear()
    if joined:
        out.append(Text(joined))


def parse_params(inner: str) -> dict[str, str]:
    """The arguments of one XML tool block's inner text (see the module docstring)."""
    return _params(inner)[0]


def _params(inner: str) -> tuple[dict[str, str], bool]:
    """The arguments, and whether every parameter tag was closed (an open one runs to the end)."""
    params: dict[str, str] = {}
    pos = 0
    while True:
        m = _TAG_RE.search(inner, pos)
        if m is None:
            return params, True
        name = m.group(1)
        closer = f"</{name}>"
        end = inner.rfind(closer) if name == "content" else inner.find(closer, m.end())
        if end < m.end():
            params[name] = _clean(name, inner[m.end():])
            return params, False
        params[name] = _clean(name, inner[m.end():end])
        pos = end + len(closer)


def _clean(name: str, value: str) -> str:
    if name != "content":
        return value.strip()
    value = value.removeprefix("\n")
    value = value.removesuffix("\n")
    return value
