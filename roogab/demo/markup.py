"""A small markdown-to-HTML renderer, the way a chat page renders a reply.

Enough for the demo service's ``"format": "html"`` replies: paragraphs become ``<p>``, fenced
code blocks ``<pre><code class="language-X">`` with their text escaped by ``html.escape``,
``` `inline code` ``` becomes ``<code>``, ``#`` headings ``<hN>``. An unclosed fence (a reply cut
mid-stream) renders as a closed code block, as a page re-rendering a growing reply does.
"""

from __future__ import annotations

import html
import re

__all__ = ["markdown_to_html"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)


def markdown_to_html(text: str) -> str:
    """Render *text* (markdown) to HTML."""
    out: list[str] = []
    paragraph: list[str] = []
    fence: str | None = None
    code: list[str] = []
    language = ""
    for line in text.split("\n"):
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                out.append(_code_block(language, code))
                fence, code = None, []
            else:
                code.append(line)
            continue
        opened = _FENCE.match(line)
        if opened:
            _flush(paragraph, out)
            fence, language = opened.group(1), opened.group(2)
            continue
        heading = _HEADING.match(line)
        if heading:
            _flush(paragraph, out)
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.strip():
            paragraph.append(line)
        else:
            _flush(paragraph, out)
    if fence is not None:
        out.append(_code_block(language, code))
    _flush(paragraph, out)
    return "\n".join(out)


def _flush(paragraph: list[str], out: list[str]) -> None:
    if paragraph:
        out.append(f"<p>{_inline(chr(10).join(paragraph))}</p>")
        paragraph.clear()


def _code_block(language: str, lines: list[str]) -> str:
    attr = f' class="language-{html.escape(language)}"' if language else ""
    body = "".join(line + "\n" for line in lines)
    return f"<pre><code{attr}>{html.escape(body)}</code></pre>"


def _inline(text: str) -> str:
    parts: list[str] = []
    last = 0
    for match in _INLINE_CODE.finditer(text):
        parts.append(html.escape(text[last:match.start()]))
        parts.append(f"<code>{html.escape(match.group(2).strip())}</code>")
        last = match.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)
