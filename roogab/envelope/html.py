"""Replies rendered to HTML by the chat page: back to the markdown-like text the model wrote.

Some services deliver the answer only as rendered HTML, usually as snapshots that re-render the
whole reply as it grows. :func:`decode_html` turns one such page fragment, whole, into the text the
reply parser reads: each ``<pre><code class="language-X">`` block becomes a fence around its
exact text (highlighting spans removed, entities undone), with a fence longer than any fence line
inside it, and the prose between blocks is rendered with BeautifulSoup (paragraphs, line breaks,
list items, inline code). Prose is not exact (markdown was rendered away); code is.

Two private-use marks tell the parser where the page's code blocks were: :data:`CODE_OPEN` before
each opening fence and :data:`CODE_CLOSE` before each closing one. A value holding a mark crossed
the end of a code block (a fence line inside the value closed the block on the page), so part
of it was rendered as prose and is not what the model wrote.

It also says how much of the text is *stable*: what a later snapshot of the same growing reply
cannot change. The page closes a code block that is still arriving, so the last line of the
last block (it may still grow) and any prose after the last block (markdown may still re-render
it) are not stable until the reply is complete.
"""

from __future__ import annotations

import html as _html
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from bs4.element import Tag

__all__ = ["CODE_CLOSE", "CODE_OPEN", "DecodeCache", "Decoded", "decode_html", "fragment_to_text", "looks_like_html",
           "strip_marks"]

CODE_OPEN = "\ue001"  # put before the opening fence of a code block of the page
CODE_CLOSE = "\ue000"  # put before its closing fence

HTML_TAGS = frozenset(
    ["p", "div", "pre", "code", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "table", "thead", "tbody", "tr", "td", "th", "hr", "br", "span", "em", "strong", "b", "i", "a", "section", "article", "details", "summary", "html", "body", "head", "main", "figure", "img", "html"]
)
_START_TAG_RE = re.compile(r"<(!|[A-Za-z][A-Za-z0-9]*)([\s/>])?")
_PRE_CODE_RE = re.compile(r"<pre\b[^>]*>\s*<code\b([^>]*)>", re.IGNORECASE)
_LANG_RE = re.compile(r"(?:language|lang)-([\w+.-]+)")
_ONLY_CLOSERS_RE = re.compile(r"(?:\s*</[A-Za-z][A-Za-z0-9]*\s*>)*\s*\Z")
_FENCE_LINE_RE = re.compile(r"^[ \t]*(`{3,})", re.MULTILINE)
_PRE_END_RE = re.compile(r"\s*</pre\s*>", re.IGNORECASE)
_BR_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]*>")
_PARTIAL_ENTITY_RE = re.compile(r"&[#\w]*\Z")
_PARTIAL_CODE_TAG_RE = re.compile(r"<(?:pr|pre\b[^>]*|c|co|cod|code\b[^>]*)\Z|<pre\b[^>]*>\s*\Z", re.IGNORECASE)
_BLOCKS = frozenset(["p", "div", "blockquote", "ul", "ol", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "details"])


def looks_like_html(buf: str, pos: int, final: bool) -> bool | None:
    """Does the reply starting at ``buf[pos]`` start with an HTML element? ``None``: can't tell yet."""
    if pos >= len(buf):
        return False if final else None
    if buf[pos] != "<":
        return False
    m = _START_TAG_RE.match(buf, pos)
    if m is None:
        return None if (not final and pos + 1 >= len(buf)) else False
    if m.group(2) is None and not final:
        return None if len(m.group(1)) < 12 else False
    return m.group(1) == "!" or m.group(1).lower() in HTML_TAGS


def code_text(fragment: str) -> str:
    """The text of a piece of a code element's HTML: tags removed, entities undone."""
    if "<" in fragment:
        fragment = _TAG_RE.sub("", _BR_RE.sub("\n", fragment))
    return _html.unescape(fragment) if "&" in fragment else fragment


def fragment_to_text(fragment: str) -> str:
    """Render an HTML fragment (prose) as plain markdown-like text."""
    if not fragment.strip():
        return fragment
    # BeautifulSoup is imported on the first HTML reply: most services send markdown, and a
    # process that never sees a page's HTML keeps the parser's ~1.6 MiB of modules out.
    from bs4 import BeautifulSoup

    parts: list[str] = []
    _render(BeautifulSoup(fragment, "html.parser"), parts)
    return "".join(parts)


def _render(node: Tag, parts: list[str]) -> None:
    from bs4.element import Comment, NavigableString, Tag

    for child in node.children:
        if isinstance(child, Comment):
            continue
        if isinstance(child, NavigableString):
            parts.append(str(child))
        elif isinstance(child, Tag):
            _render_tag(child, parts)


def _render_tag(tag: Tag, parts: list[str]) -> None:
    from bs4.element import Tag

    name = tag.name.lower()
    if name in ("script", "style", "button"):
        return
    if name == "br":
        parts.append("\n")
    elif name == "pre":
        code = tag.find("code")
        lang = _language(" ".join(code.get("class") or ()) if isinstance(code, Tag) else "")
        parts.append(f"\n```{lang}\n{tag.get_text()}\n```\n")
    elif name == "code":
        parts.append(f"`{tag.get_text()}`")
    elif name == "li":
        parts.append("- ")
        _render(tag, parts)
        parts.append("\n")
    elif name in ("h1", "h2", "h3", "h4", "h5", "h6"):
        parts.append("#" * int(name[1]) + " ")
        _render(tag, parts)
        parts.append("\n\n")
    else:
        _render(tag, parts)
        if name in _BLOCKS:
            parts.append("\n\n")


def _language(attrs: str) -> str:
    m = _LANG_RE.search(attrs)
    return m.group(1) if m else ""


class Decoded(NamedTuple):
    """One page fragment as text, and how much of that text no later snapshot can change;
    ``cut_off``: the (final) page ended inside a code block or its opening tag."""

    text: str
    stable: int
    cut_off: bool = False


class _Lines(NamedTuple):
    """A code element's HTML up to the end of a line outside any tag, and what it decodes to."""

    html: str
    text: str  # code_text(html)
    fence: int  # _longest_fence(text)


_NO_LINES = _Lines("", "", 0)


@dataclass
class DecodeCache:
    """What :func:`decode_html` keeps between the snapshots of one growing reply, so that each
    snapshot costs what is new in it: rendered prose fragments, closed code blocks, and the
    complete lines of the code block still arriving. Everything kept is a function of the HTML
    it was made from, so a snapshot that re-renders its past is decoded afresh, never wrongly."""

    prose: dict[str, str] = field(default_factory=dict)
    blocks: dict[str, tuple[str, int]] = field(default_factory=dict)
    growing: _Lines = field(default_factory=lambda: _NO_LINES)


def decode_html(page: str, final: bool, cache: DecodeCache | None = None) -> Decoded:
    """Decode *page*, the whole reply so far as HTML (``final``: the reply is complete).

    *cache* remembers what earlier calls on the same growing reply decoded.
    """
    out: list[str] = []
    size = 0  # len("".join(out))
    stable = 0
    pos = 0
    cache = cache if cache is not None else DecodeCache()
    while True:
        m = _PRE_CODE_RE.search(page, pos)
        if m is None or (not final and m.end() >= len(page)):
            break
        size += _add(out, _prose(page[pos:m.start()], cache.prose))
        j = page.find("</code>", m.end())
        body_end = j if j >= 0 else _safe_cut(page, m.end(), len(page))  # not inside a tag or entity
        end = _PRE_END_RE.match(page, j + 7) if j >= 0 else None
        after = end.end() if end else (j + 7 if j >= 0 else len(page))
        last = j < 0 or _ONLY_CLOSERS_RE.match(page, after) is not None
        code, longest = _code(page[m.end():body_end], not last, cache)
        if out and not out[-1].endswith("\n"):
            size += _add(out, "\n")
        fence = "`" * max(3, longest + 1)
        size += _add(out, f"{CODE_OPEN}{fence}{_language(m.group(1))}\n")
        code_at = size
        size += _add(out, code)
        pos = after
        if not final and last:
            stable = code_at + _stable_lines(code)
            return Decoded("".join(out), stable)
        if code and not code.endswith("\n"):
            size += _add(out, "\n")
        size += _add(out, f"{CODE_CLOSE}{fence}\n")
        stable = size
        if j < 0:
            return Decoded("".join(out), size, cut_off=True)
    if final:
        size += _add(out, _prose(page[pos:], cache.prose))
        return Decoded("".join(out), size, cut_off=_ends_in_code_opening(page, pos))
    return Decoded("".join(out), stable)


def strip_marks(text: str) -> str:
    """*text* without the code-block marks :func:`decode_html` put in."""
    if CODE_OPEN in text or CODE_CLOSE in text:
        return text.replace(CODE_OPEN, "").replace(CODE_CLOSE, "")
    return text


def _add(out: list[str], piece: str) -> int:
    if piece:
        out.append(piece)
    return len(piece)


def _prose(fragment: str, cache: dict[str, str]) -> str:
    if not fragment.strip():
        return ""
    text = cache.get(fragment)
    if text is None:
        text = cache[fragment] = fragment_to_text(fragment)
    return text


def _code(body: str, settled: bool, cache: DecodeCache) -> tuple[str, int]:
    """The text of a code element's HTML *body* and its longest fence: a *settled* block (one
    with more of the page after it) looked up whole, the last one, which may still grow, decoded
    only beyond the complete lines decoded before."""
    if settled:
        found = cache.blocks.get(body)
        if found is None:
            text = code_text(body)
            found = cache.blocks[body] = (text, _longest_fence(text))
        return found
    lines = cache.growing if body.startswith(cache.growing.html) else _NO_LINES
    cut = _line_end(body, len(lines.html))
    if cut > len(lines.html):
        head = code_text(body[len(lines.html):cut])
        lines = cache.growing = _Lines(body[:cut], lines.text + head, max(lines.fence, _longest_fence(head)))
    tail = code_text(body[cut:])
    return lines.text + tail, max(lines.fence, _longest_fence(tail))


def _line_end(body: str, start: int) -> int:
    """Just after the last newline of ``body[start:]`` if :func:`code_text` can split there, else
    *start* (``body[:start]`` ends at such a place). It can where, once ``<br>`` tags are line
    breaks, every ``<`` before the newline has a ``>`` after it, before the newline: then no tag
    match crosses it (nor an entity or a fence line: neither holds a newline)."""
    nl = body.rfind("\n", start)
    if nl < 0:
        return start
    if "<" in (head := body[start:nl]):
        head = _BR_RE.sub("\n", head)
        if head.rfind("<") > head.rfind(">"):
            return start
    return nl + 1


def _longest_fence(code: str) -> int:
    """The longest run of backticks that opens a line of *code* (0 if none)."""
    return max((len(m.group(1)) for m in _FENCE_LINE_RE.finditer(code)), default=0)


def _stable_lines(code: str) -> int:
    """How much of a code block's text is complete lines before its last line (which may grow)."""
    body = code.removesuffix("\n")
    return body.rfind("\n") + 1


def _ends_in_code_opening(html: str, start: int) -> bool:
    """Does *html* end inside ``<pre ...><code ...`` (a code block's opening cut short)?"""
    return _PARTIAL_CODE_TAG_RE.search(html, max(start, len(html) - 300)) is not None


def _safe_cut(html: str, start: int, end: int) -> int:
    """Move *end* back before an unfinished tag or entity at the end of ``html[start:end]``."""
    lt = html.rfind("<", start, end)
    if lt >= 0 and html.find(">", lt, end) < 0:
        end = lt
    amp = html.rfind("&", max(start, end - 12), end)
    if amp >= 0 and _PARTIAL_ENTITY_RE.match(html, amp, end):
        end = amp
    return end
