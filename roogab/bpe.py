"""Exact byte-pair token counts from a compact table: tiktoken's counts without tiktoken's tables.

tiktoken's Rust encoder keeps every token three times over (an encoder map, a decoder map and a
sorted list, each with a heap block per token): about 23 MiB for cl100k's 100 256 tokens, most of
``roogab serve``'s memory after its first turn. RooGab only counts tokens; it never decodes them.
Here a table is four flat arrays: the tokens' bytes end to end, ordered by a bucket of each
one's ``hash``, with their offsets, their ranks, and where each bucket starts (about 2 MiB for
cl100k). Finding a token is one hash and a comparison of the bytes of each token in its bucket
(0.76 on average), so a hash that two byte strings share can never change a rank. The arrays
are a few objects, not 100 256: a forked worker reading them dirties almost no page of its
parent's copy (a few objects' reference counts, not one per token).

The count is tiktoken's ``encode_ordinary`` counted, step for step: the encoding's own split
pattern (``regex``: it needs ``\\p{L}`` and possessive quantifiers), a piece that is a token is one,
and any other piece is merged as tiktoken's ``byte_pair_merge`` does, the adjacent pair of lowest
rank first and the leftmost among equals. A heap holds the pairs, so a piece of n bytes costs
n log n, but in Python: ~10 µs a token (on one long run of letters, 24–44 times tiktoken's
time; on ordinary text, where most pieces are tokens, counting takes 2–3 times tiktoken's). A
piece over ``LONG_PIECE`` bytes (a line of letters with no space; real requests have none) is
handed to the caller's *long_piece* counter instead (``usage`` gives it tiktoken's own encoder,
built for the count that needs it).
``tests/test_bpe.py`` checks the counts against tiktoken's own encoder. Pure: no I/O.
"""

from __future__ import annotations

import heapq
import itertools
from array import array
from collections.abc import Callable, Mapping

from .utf16 import well_formed

__all__ = ["LONG_PIECE", "PAUSE_CHARS", "CompactBPE"]

#: The rank of a byte string that is no token (above every real rank).
_NO_RANK = 1 << 32

#: A piece of more bytes than this (one run of letters, of spaces or of punctuation) goes to the
#: count's *long_piece* counter when it has one: merging here costs ~10 µs a token (a run of
#: 16 KiB: ~80 ms), so one run the size of a whole request body (32 MiB allowed) would hold a
#: request thread for minutes.
LONG_PIECE = 16384

#: A count calls its *pause* about every this many characters.
PAUSE_CHARS = 2048

#: Tokens are found by their hash's bucket (2**17 buckets: cl100k puts 0.76 tokens in each).
_BUCKET_BITS = 17
_BUCKETS = 1 << _BUCKET_BITS

#: Pieces of at most this many characters have their counts remembered (most are words).
_MEMO_CHARS = 32

#: How many piece counts are remembered; all are forgotten at once when this many are held (a
#: plain dict, not ``memo.Memo``: a hit is one lookup inline in the loop, ~9 000 for 40 KB).
_MEMO_SIZE = 8192


class CompactBPE:
    """Counts the tokens of a byte-pair encoding given its *ranks* (token bytes → rank, as in a
    ``.tiktoken`` file) and its split *pattern* (tiktoken's ``pat_str``). Thread-safe: the table
    is read-only once built, and the memo of piece counts is a dict changed one item at a time.
    Not picklable: ``hash`` is salted per process, so the buckets hold only where they were built."""

    __slots__ = ("_blob", "_buckets", "_memo", "_ranks", "_split", "_starts")

    def __init__(self, ranks: Mapping[bytes, int], pattern: str) -> None:
        import regex  # boundary: the pattern's \p{L} and possessive quantifiers are not re's

        order = sorted(ranks, key=_bucket)
        self._ranks = array("I", map(ranks.__getitem__, order))
        self._starts = array("I", itertools.accumulate(map(len, order), initial=0))
        self._blob = b"".join(order)
        sizes = array("I", bytes(4 * (_BUCKETS + 1)))
        for token in order:
            sizes[_bucket(token) + 1] += 1
        self._buckets = array("I", itertools.accumulate(sizes))  # bucket b: tokens [b] to [b + 1]
        self._split = regex.compile(pattern)
        self._memo: dict[str, int] = {}

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a CompactBPE is only valid in the process that built it (and its forks)")

    @property
    def size(self) -> int:
        """The number of tokens in the table."""
        return len(self._ranks)

    def count(self, text: str, long_piece: Callable[[bytes], int | None] | None = None,
              pause: Callable[[], object] | None = None) -> int:
        """The number of tokens tiktoken's ``encode_ordinary(text)`` returns: special tokens'
        text is counted as text, and a lone UTF-16 half as U+FFFD (tiktoken's own repair).

        A piece over ``LONG_PIECE`` bytes is counted by *long_piece* when given (None from it:
        merged here). *pause* is called about every ``PAUSE_CHARS`` characters, between pieces:
        the caller's chance to let other threads run."""
        memo, total, mark = self._memo, 0, 0
        try:
            for match in self._split.finditer(text):  # no list of the pieces: a prompt may be 8 MiB
                piece = match[0]
                known = memo.get(piece)  # most pieces are words seen before: no call
                total += self._piece(piece, long_piece) if known is None else known
                if pause is not None and match.end() - mark >= PAUSE_CHARS:
                    mark = match.end()
                    pause()
        except UnicodeEncodeError:
            return self.count(well_formed(text), long_piece, pause)
        return total

    def rank(self, token: bytes) -> int | None:
        """The rank of *token*, or None when it is no token of this encoding."""
        found = self._rank(token)
        return None if found == _NO_RANK else found

    def _piece(self, piece: str, long_piece: Callable[[bytes], int | None] | None) -> int:
        """The tokens of one piece the pattern split off (remembered if it is short)."""
        memo = self._memo
        data = piece.encode("utf-8")  # UnicodeEncodeError: a lone half (count() repairs the text)
        if len(data) > LONG_PIECE and long_piece is not None:
            tokens = long_piece(data)
            if tokens is not None:
                return tokens
        tokens = 1 if len(data) == 1 or self._rank(data) != _NO_RANK else self._merged(data)
        if len(piece) <= _MEMO_CHARS:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[piece] = tokens
        return tokens

    def _rank(self, token: bytes) -> int:
        bucket, blob, starts = _bucket(token), self._blob, self._starts
        i, end = self._buckets[bucket], self._buckets[bucket + 1]
        while i < end:  # fewer than one token a bucket, on average
            if blob[starts[i]:starts[i + 1]] == token:
                return self._ranks[i]
            i += 1
        return _NO_RANK

    def _merged(self, data: bytes) -> int:
        """How many tokens *data* (no token itself) merges into: ``byte_pair_merge`` with a heap.

        The parts are a linked list of start offsets (``after[s]``: where the part at *s* ends;
        ``before[s]``: where the part before it starts). The heap holds (rank, start) of adjacent
        pairs; an entry whose pair has since changed is stale (``pair[s]`` differs) and skipped."""
        end = len(data)
        after = list(range(1, end + 1))
        before = list(range(-1, end))
        pair = [self._rank(data[s:s + 2]) for s in range(end - 1)] + [_NO_RANK]
        heap = [(r, s) for s, r in enumerate(pair) if r != _NO_RANK]
        heapq.heapify(heap)
        parts = end
        while heap:
            r, s = heapq.heappop(heap)
            if pair[s] != r:
                continue
            gone = after[s]  # the part merged into the one at s
            after[s] = after[gone]
            if after[s] < end:
                before[after[s]] = s
            pair[gone] = _NO_RANK
            parts -= 1
            pair[s] = self._pair_rank(data, s, after)
            if pair[s] != _NO_RANK:
                heapq.heappush(heap, (pair[s], s))
            if s > 0:
                left = before[s]
                pair[left] = self._pair_rank(data, left, after)
                if pair[left] != _NO_RANK:
                    heapq.heappush(heap, (pair[left], left))
        return parts

    def _pair_rank(self, data: bytes, start: int, after: list[int]) -> int:
        """The rank of the part at *start* joined to the part after it (none after: no rank)."""
        middle = after[start]
        return _NO_RANK if middle >= len(data) else self._rank(data[start:after[middle]])


def _bucket(token: bytes) -> int:
    """The bucket of *token*: its hash's low bits (``hash`` of bytes is SipHash, salted per
    process: the table is built in the process that reads it, or inherited by a fork)."""
    return hash(token) & (_BUCKETS - 1)
