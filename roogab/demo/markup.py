"""Markdown to HTML the way chat pages render replies: markdown-it with Pygments highlighting.

Chat pages render a reply with a markdown library (markdown-it or marked) and highlight code
blocks (highlight.js); the demo service's ``"format": "html"`` replies do the same with
markdown-it-py (CommonMark plus tables and strikethrough, raw HTML escaped as chat pages do)
and Pygments, so RooGab's HTML decoding meets real renderings: emphasis that appears once its
closer arrives, highlighting spans, entities, an unclosed fence rendered as a closed block.
"""

from __future__ import annotations

# markdown-it and Pygments are imported where they are used: ``roogab serve`` imports the demo
# package (runtime.py) but never renders, and the two cost ~1.5 MiB of its RSS.

__all__ = ["markdown_to_html"]


def _highlight(code: str, language: str, _attrs: str) -> str:
    """Code as highlighted HTML spans (markdown-it wraps them in ``<pre><code>``); "" when the
    language is unknown (markdown-it then escapes the code itself)."""
    if not language:
        return ""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return ""
    return str(highlight(code, lexer, HtmlFormatter(nowrap=True)))


def markdown_to_html(text: str) -> str:
    """Render *text* (markdown) to HTML."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "highlight": _highlight}).enable(["table", "strikethrough"])
    return str(md.render(text))
