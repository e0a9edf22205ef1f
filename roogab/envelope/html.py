"""Replies rendered to HTML by the chat page: back to the markdown-like text the model wrote.

Some services only deliver the answer as rendered HTML, often as cumulative snapshots whose last
closing tags change from one event to the next (``...hel</code></pre>``, then
``...hello</code></pre>``). :class:`HtmlDecoder` turns such HTML into text that the reply parser
reads as usual: each ``<pre><code class="language-X">`` block becomes a ```` ```X ```` fence around
its text (highlighting spans removed, entities undone), and the prose between blocks is rendered
with BeautifulSoup (paragraphs, line breaks, list items, inline code). It works incrementally:
code text is emitted as it arrives, holding back only an unfinished tag or entity and deciding
that a block ended only when something other than closing tags follows its ``</code>``. Prose is
converted when the next code block starts, and the prose after the last block at ``close()``.
"""

from __future__ import annotations

import html as _html
import logging
import re

from bs4 import BeautifulSoup
from bs4.element import Comment, NavigableString, Tag

__all__ = ["HtmlDecoder", "fragment_to_text", "looks_like_html"]

logger = logging.getLogger(__name__)

HTML_TAGS = frozenset(
    ["p", "div", "pre", "code", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "table", "thead", "tbody", "tr", "td", "th", "hr", "br", "span", "em", "strong", "b", "i", "a", "section", "article", "details", "summary", "html", "body", "head", "main", "figure", "img", "html"]
)
_START_TAG_RE = re.compile(r"<(!|[A-Za-z][A-Za-z0-9]*)([\s/>])?")
_PRE_CODE_RE = re.compile(r"<pre\b[^>]*>\s*<code\b([^>]*)>", re.IGNORECASE)
_LANG_RE = re.compile(r"(?:language|lang)-([\w+.-]+)")
_TAIL_CLOSERS_RE = re.compile(r"</code>(?:\s*</[A-Za-z][A-Za-z0-9]*\s*>)*\s*\Z")
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
    parts: list[str] = []
    _render(BeautifulSoup(fragment, "html.parser"), parts)
    return "".join(parts)


def _render(node: Tag, parts: list[str]) -> None:
    for child in node.children:
        if isinstance(child, Comment):
            continue
        if isinstance(child, NavigableString):
            parts.append(str(child))
        elif isinstance(child, Tag):
            _render_tag(child, parts)


def _render_tag(tag: Tag, parts: list[str]) -> None:
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


class HtmlDecoder:
    """Incremental HTML → text; ``feed`` deltas or ``feed_snapshot`` whole replies, then ``close``."""

    def __init__(self) -> None:
        self._html = ""
        self._consumed = 0
        self._in_code = False
        self._code_start = 0
        self._code_len = 0
        self._skip = 0
        self._stable = ""
        self.cut_off = False  # set by close(): the HTML ended inside a code block or its opening tag

    def feed(self, chunk: str) -> str:
        """Append *chunk* (a delta of the HTML) and return the text it completes."""
        self._html = self._html[self._consumed:] + chunk
        self._code_start -= self._consumed
        self._consumed = 0
        return self._process(final=False)

    def feed_snapshot(self, full: str) -> str:
        """Take *full*, the whole HTML so far, and return the text that is new since the last one."""
        if not full.startswith(self._stable):
            self._resync(full)
        self._html = full
        out = self._process(final=False)
        self._stable = full[:self._consumed]
        return out

    def close(self) -> str:
        """The HTML is complete: return the rest of the text."""
        return self._process(final=True)

    def _resync(self, full: str) -> None:
        """Markup before our position changed (re-highlighting): redo the current code block."""
        if self._in_code and full.startswith(self._stable[:self._code_start]):
            self._skip += self._code_len
            self._code_len = 0
            self._consumed = self._code_start
        else:
            logger.debug("HTML snapshot changed before the decoded position; continuing")

    def _process(self, final: bool) -> str:
        out: list[str] = []
        more = True
        while more:
            more = self._code(final, out) if self._in_code else self._outside(final, out)
        return "".join(out)

    def _outside(self, final: bool, out: list[str]) -> bool:
        html = self._html
        m = _PRE_CODE_RE.search(html, self._consumed)
        if m is None or (not final and m.end() >= len(html)):
            if final:
                self.cut_off = self.cut_off or _ends_in_code_opening(html, self._consumed)
                out.append(fragment_to_text(html[self._consumed:]))
                self._consumed = len(html)
            return False
        out.append(fragment_to_text(html[self._consumed:m.start()]))
        out.append(f"\n```{_language(m.group(1))}\n")
        self._consumed = self._code_start = m.end()
        self._in_code, self._code_len = True, 0
        return True

    def _code(self, final: bool, out: list[str]) -> bool:
        html, start = self._html, self._consumed
        j = html.find("</code>", start)
        ended = j >= 0 and (final or not _TAIL_CLOSERS_RE.match(html, j))
        end = j if j >= 0 else len(html)
        if not ended and not final:
            end = _safe_cut(html, start, end)
        self._emit_code(code_text(html[start:end]), out)
        self._consumed = end
        if not ended and not final:
            return False
        self.cut_off = self.cut_off or j < 0
        out.append("\n```\n")
        self._in_code = False
        if j >= 0:
            m = _PRE_END_RE.match(html, j + 7)
            self._consumed = m.end() if m else j + 7
        return j >= 0

    def _emit_code(self, text: str, out: list[str]) -> None:
        self._code_len += len(text)
        if self._skip:
            drop = min(self._skip, len(text))
            text, self._skip = text[drop:], self._skip - drop
        if text:
            out.append(text)


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
