"""The demo's markdown-to-HTML renderer, as a chat page renders replies."""

from __future__ import annotations

from roogab.demo import markdown_to_html


def test_paragraphs_and_inline_code() -> None:
    text = "First line\nsecond line\n\nUse `a < b` & go."
    assert markdown_to_html(text) == ("<p>First line\nsecond line</p>\n"
                                      "<p>Use <code>a &lt; b</code> &amp; go.</p>")


def test_fenced_code_is_escaped_with_its_language() -> None:
    text = 'Reply:\n```lua\nreturn { text = [==[<p class="x">it\'s</p>]==] }\n```\nafter'
    assert markdown_to_html(text) == (
        "<p>Reply:</p>\n"
        '<pre><code class="language-lua">return { text = [==[&lt;p class=&quot;x&quot;&gt;'
        "it&#x27;s&lt;/p&gt;]==] }\n</code></pre>\n"
        "<p>after</p>")


def test_unclosed_fence_renders_as_a_closed_block() -> None:
    assert markdown_to_html("```lua\nreturn {") == '<pre><code class="language-lua">return {\n</code></pre>'


def test_fence_without_language_and_tilde_fences() -> None:
    assert markdown_to_html("~~~\nx\n~~~") == "<pre><code>x\n</code></pre>"
    assert markdown_to_html("````\n```\n````") == "<pre><code>```\n</code></pre>"


def test_headings() -> None:
    assert markdown_to_html("# Title\nbody") == "<h1>Title</h1>\n<p>body</p>"


def test_empty() -> None:
    assert markdown_to_html("") == ""
