"""decode_html with a DecodeCache: each snapshot decoded as if fresh, whatever came before.

The cache keeps rendered prose, settled code blocks and the complete lines of the code block still
arriving; every kept piece is a function of the HTML it came from. So for any sequence of pages
(growing, re-rendered, shrinking, unrelated), decoding with one shared cache must equal decoding
each page whole: without a cache, and without splitting the growing block at its line ends.
"""

from __future__ import annotations

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from roogab.envelope import html as html_module
from roogab.envelope.html import DecodeCache, Decoded, decode_html

OPEN = '<pre><code class="language-lua">'
CLOSE = "</code></pre>"
# what code elements hold on real pages, and what breaks naive splitting: entities (long named
# ones past _safe_cut's look-back, legacy ones without ';'), highlighting tags (one with a newline
# inside it), <br>, fence lines
CODE_PIECES = ["a", "b = 1", "\n", "```", "  ```", "````\n", "&amp;", "&lt;", "&gt;", "&quot;", "&notin;", "&not",
               "&CounterClockwiseContourIntegral;", "&#x41;", "&#65", "<span class=\"k\">", "</span>", "<br>",
               "<br/>", "<span\nclass=\"s\">", "<", ">", "\t", "[==[", "]==]", "é"]
PROSE_PIECES = ["<p>Answer:</p>\n", "<p>a <code>x</code> b</p>", "text ", "<ul><li>one</li></ul>", "\n"]


def page_of(parts: list[tuple[bool, list[str]]]) -> str:
    return "".join(OPEN + "".join(pieces) + CLOSE if code else "".join(pieces) for code, pieces in parts)


PAGES = st.lists(st.tuples(st.booleans(), st.lists(st.sampled_from(CODE_PIECES + PROSE_PIECES), max_size=12)),
                 min_size=1, max_size=4).map(page_of)


def snapshots_of(page: str) -> list[str]:
    """Every prefix of *page*, with the code block it ends inside closed, as a page re-renders."""
    out = []
    for cut in range(len(page) + 1):
        head = page[:cut]
        inside = head.rfind(OPEN) > head.rfind(CLOSE)
        out.append(head + CLOSE if inside else head)
    return out


def whole(page: str, final: bool) -> Decoded:
    """*page* decoded with every code block's HTML decoded in one piece."""
    with mock.patch.object(html_module, "_line_end", lambda body, start: start):
        return decode_html(page, final)


def check_sequence(pages: list[str]) -> None:
    cache = DecodeCache()
    for n, page in enumerate(pages):
        final = n == len(pages) - 1
        assert decode_html(page, final, cache) == whole(page, final), (n, page)


def test_a_growing_page_cut_at_every_position_decodes_as_fresh() -> None:
    code = "".join(CODE_PIECES) * 2
    page = "<p>Answer:</p>\n" + OPEN + code + CLOSE + "<p>then</p>" + OPEN + "x\n" + code + CLOSE
    check_sequence(snapshots_of(page) + [page])


@settings(max_examples=150, deadline=None)
@given(PAGES)
def test_growing_snapshots_of_any_page_decode_as_fresh(page: str) -> None:
    check_sequence(snapshots_of(page)[::3] + [page])


@settings(max_examples=150, deadline=None)
@given(st.lists(PAGES, min_size=1, max_size=6))
def test_any_sequence_of_pages_decodes_as_fresh(pages: list[str]) -> None:
    check_sequence(pages)


def test_a_re_rendered_past_is_decoded_afresh() -> None:
    cache = DecodeCache()
    first = OPEN + "line one\nline two\nthr" + CLOSE
    assert decode_html(first, False, cache) == whole(first, False)
    assert cache.growing.html == "line one\nline two\n"  # the complete lines are kept
    changed = OPEN + "LINE one\nline two\nthree\n" + CLOSE
    assert decode_html(changed, True, cache) == whole(changed, True)
    assert "LINE one" in decode_html(changed, True, cache).text


def test_a_final_page_that_ends_inside_a_code_block_keeps_all_of_its_code() -> None:
    for page in ("<pre><code>abc\ndef", "<pre><code>abc\ndef&am", "<pre><code>abc\ndef<spa"):
        decoded = decode_html(page, True)
        assert decoded.cut_off and decoded.text == "\ue001```\nabc\ndef\n\ue000```\n", page
