"""The compact byte-pair counter: tiktoken's counts, from a table a tenth of tiktoken's size."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import CLINE, ROO, captured_bodies

from roogab import bpe
from roogab.bpe import CompactBPE
from roogab.usage import OFFLINE_ENCODING, _compact_encoding

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _tiktoken() -> Any:
    """tiktoken's own encoder of the same table: the reference every count here must equal."""
    import tiktoken
    return tiktoken.get_encoding(OFFLINE_ENCODING)


@functools.cache
def _compact() -> CompactBPE:
    encoding, _ = _compact_encoding(OFFLINE_ENCODING)
    assert isinstance(encoding, CompactBPE)
    return encoding


def _expected(text: str) -> int:
    return len(_tiktoken().encode_ordinary(text))


def test_every_token_of_cl100k_is_found_with_its_rank() -> None:
    ranks: dict[bytes, int] = _tiktoken()._mergeable_ranks
    compact = _compact()
    assert compact.size == len(ranks) == 100_256
    assert all(compact.rank(token) == rank for token, rank in ranks.items())
    assert compact.rank(b"no such token in cl100k, surely") is None and compact.rank(b"") is None


def test_the_table_is_a_few_flat_arrays_not_an_object_per_token() -> None:
    """What the counter is for: a tenth of tiktoken's ~23 MiB, in objects a fork does not dirty."""
    held = _compact()
    size = sum(sys.getsizeof(getattr(held, name)) for name in ("_buckets", "_ranks", "_starts", "_blob"))
    assert size < 4 << 20


def test_real_source_and_agent_requests_count_as_tiktoken_counts() -> None:
    compact = _compact()
    for path in sorted((ROOT / "roogab").rglob("*.py")):
        text = path.read_text()
        assert compact.count(text) == _expected(text), path
    for body in captured_bodies(ROO)[:4] + captured_bodies(CLINE)[:4]:
        for message in body["messages"]:
            content = message["content"]
            text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            assert compact.count(text) == _expected(text)


@pytest.mark.parametrize("text", [
    "", "a", "hello world", "<|endoftext|> is text here", "\ud83d lone half", "\ud83d\ude00 a pair of halves",
    "x" * 5000, "qwxzjk" * 700, "   \n\n\t  \x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000 ", "1234567890" * 30,
    "naïve café — Привет, мир! 你好，世界 🙂👍🏽", "I'll've we'RE he'd 'S 's",
])
def test_hard_texts_count_as_tiktoken_counts(text: str) -> None:
    assert _compact().count(text) == _expected(text)


_TRICKY = " \n\r\t\x0b\x0c\x1c\x1f\x85\xa0\u2028\u200b\u3000\ufeff'sdmtlvreSDLV aZé9٣Ⅻǅ.,!?#(){}<>|_-\"\\😀中\x00"


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.text(alphabet=_TRICKY, max_size=80)))
def test_any_text_counts_as_tiktoken_counts(text: str) -> None:
    assert _compact().count(text) == _expected(text)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet="qwxzjkaeiouéß", min_size=30, max_size=3000))
def test_long_pieces_merge_as_tiktoken_merges_them(text: str) -> None:
    """A run of letters is one piece, rarely one token: the heap's merges, many at a time."""
    assert _compact().count(text) == _expected(text)


def test_the_memo_of_piece_counts_stays_bounded() -> None:
    compact = _compact()
    words = " ".join(f"w{i}x" for i in range(3 * bpe._MEMO_SIZE))
    assert compact.count(words) == _expected(words)
    assert 0 < len(compact._memo) <= bpe._MEMO_SIZE


# -- the merge order, on small made-up tables against tiktoken's reference implementation ------------

def _reference_count(ranks: dict[bytes, int], pattern: str, text: str) -> int:
    """What tiktoken's encoder does with a table: a piece that is a token is one, any other is
    merged by ``tiktoken._educational.bpe_encode`` (the lowest rank first, leftmost among equals)."""
    import regex
    from tiktoken._educational import bpe_encode

    total = 0
    for piece in regex.findall(pattern, text):
        data = piece.encode()
        total += 1 if data in ranks else len(bpe_encode(ranks, data, visualise=None))
    return total


_BYTES = {bytes([b]): b for b in range(256)}
_TOKENS = st.lists(st.text(alphabet="abc", min_size=2, max_size=5).map(str.encode), unique=True, max_size=30)


@settings(max_examples=300, deadline=None)
@given(tokens=_TOKENS, order=st.randoms(use_true_random=False), text=st.text(alphabet="abc ", max_size=40))
def test_merges_follow_the_lowest_rank_and_then_the_leftmost_pair(tokens: list[bytes], order: Any, text: str) -> None:
    ranks = dict(_BYTES)
    shuffled = list(tokens)
    order.shuffle(shuffled)
    ranks.update((token, 256 + i) for i, token in enumerate(shuffled))
    pattern = r" ?\S+|\s+"
    assert CompactBPE(ranks, pattern).count(text) == _reference_count(ranks, pattern, text)


def test_equal_pairs_merge_from_the_left() -> None:
    """"aaab": "aa" at 0 and at 1 rank the same; the left one merges, and "ab" can still follow."""
    ranks = dict(_BYTES) | {b"aa": 300, b"ab": 301}
    assert CompactBPE(ranks, r"\S+").count("aaab") == 2  # "aa" "ab"; from the right: "a" "aa" "b"
    ranks = dict(_BYTES) | {b"aa": 300, b"ab": 299}
    assert CompactBPE(ranks, r"\S+").count("aab") == 2  # "a" "ab": the lower rank wins over the left


# -- pieces too long to merge in Python go to tiktoken's own encoder ------------------------------

def test_a_long_piece_goes_to_the_long_piece_counter_and_a_short_one_never_does() -> None:
    asked: list[bytes] = []

    def long_piece(data: bytes) -> int:
        asked.append(data)
        return 7

    table = _compact()
    at_the_line = "short words\n" + "q" * bpe.LONG_PIECE  # a piece of exactly LONG_PIECE bytes: merged here
    assert table.count(at_the_line, long_piece) == _expected(at_the_line) and asked == []
    run = "qwxzjk" * (bpe.LONG_PIECE // 6 + 1)  # one piece, over LONG_PIECE bytes
    assert table.count(f"a {run} b", long_piece) == 1 + 7 + 1 and asked == [(" " + run).encode()]


def test_a_long_piece_is_merged_here_when_its_counter_cannot_help() -> None:
    run = "qwxzjk" * (bpe.LONG_PIECE // 6 + 1)
    assert _compact().count(run, lambda data: None) == _compact().count(run) == _expected(run)


def test_the_counter_builds_tiktoken_only_for_a_count_with_a_long_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    from roogab import usage

    built: list[object] = []
    build = usage._rust_encoding

    def counted(name: str) -> Any:
        built.append(name)
        return build(name)

    monkeypatch.setattr(usage, "_rust_encoding", counted)
    counter = usage.TokenCounter()
    text = "  ".join(json.dumps(m["content"]) for body in captured_bodies(ROO)[:2] for m in body["messages"])
    assert counter.count(text) == _expected(text) and built == []  # real requests: no piece that long
    runs = ["x" * (bpe.LONG_PIECE + 1), "qwxzjk" * 5000, " " * 40_000 + "end", "=" * 20_000 + "\n\n", "é" * 9000]
    assert counter.count("\n\n".join(runs)) == _expected("\n\n".join(runs)) and len(built) == 1  # once a count
    for run in runs:
        assert counter.count(run) == _expected(run), run[:10]
    assert len(built) == 1 + len(runs)  # and let go after it: no process keeps tiktoken's 23 MiB


def test_the_table_refuses_to_be_pickled() -> None:
    """``hash`` is salted per process: a copy in another process would find no token."""
    import pickle
    with pytest.raises(TypeError, match="only valid in the process that built it"):
        pickle.dumps(_compact())
