"""The demo's markdown-to-HTML renderer renders replies as chat pages do (markdown-it + Pygments)."""

from __future__ import annotations

from roogab.demo import markdown_to_html
from roogab.envelope.html import decode_html, strip_marks


def test_paragraphs_emphasis_and_inline_code() -> None:
    html = markdown_to_html("First line\nsecond *line*\n\nUse `a < b` & go.")
    assert html == ("<p>First line\nsecond <em>line</em></p>\n"
                    "<p>Use <code>a &lt; b</code> &amp; go.</p>\n")


def test_fenced_code_is_highlighted_and_decodes_back_exactly() -> None:
    code = 'return { text = [==[<p class="x">it\'s &amp; \t </p>]==] }\n'
    html = markdown_to_html(f"Reply:\n```lua\n{code}```\nafter")
    assert '<pre><code class="language-lua"><span class="kr">return</span>' in html
    assert "&lt;p class=" in html
    text = strip_marks(decode_html(html, final=True).text)
    assert text.startswith("Reply:\n") and f"\n```lua\n{code}```\n" in text and text.rstrip().endswith("after")


def test_unclosed_fence_renders_as_a_closed_block() -> None:
    assert markdown_to_html("```\nreturn {") == "<pre><code>return {</code></pre>\n"


def test_raw_html_is_escaped_as_chat_pages_do() -> None:
    assert markdown_to_html("<b>x</b>") == "<p>&lt;b&gt;x&lt;/b&gt;</p>\n"


def test_headings_and_empty() -> None:
    assert markdown_to_html("# Title\nbody") == "<h1>Title</h1>\n<p>body</p>\n"
    assert markdown_to_html("") == ""
