"""How chunks of a reply may skip the table reader for a while (the parser's fast paths).

The reader says, between chunks, what could change its course: :class:`Bypass` holds the pattern
a chunk must not match to be skipped, and where a skipped chunk belongs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["STREAMING", "WAITING", "Bypass", "in_long_string"]

_CLOSERS_RE = re.compile(r"[\]})]")
_LONG_END_RE = re.compile(r"\]")
_QUOTED_END_RE = re.compile(r"[\\\"']")


def _quiet(wake: re.Pattern[str]) -> frozenset[str]:
    """The one-character chunks in which *wake* finds nothing (ASCII; others go to the regex)."""
    return frozenset(c for c in map(chr, range(128)) if wake.search(c) is None)


_QUIET = {wake: _quiet(wake) for wake in (_CLOSERS_RE, _LONG_END_RE, _QUOTED_END_RE)}


@dataclass(frozen=True, slots=True, eq=False)
class Bypass:
    """How chunks may skip the reader for a while; see :meth:`~roogab.envelope.tables.TableReader.bypass`.

    Compared and hashed by identity: the parser keeps the fast path it made from each of the
    fixed ones below.
    """

    wake: re.Pattern[str]  # a chunk in which this finds something must be parsed
    target: str | None = None  # the stream a skipping chunk belongs to; None: it waits unparsed
    closer: str | None = None  # waiting inside a long string: a "]" matters only if it ends this

    @property
    def quiet(self) -> frozenset[str]:
        """One-character chunks ``wake`` finds nothing in: a set lookup is cheaper than the regex
        (a reply fed a character at a time checks every character)."""
        return _QUIET[self.wake]


# The bypasses that do not depend on the string being read, made once (the parser keeps the fast
# path it builds from each).
WAITING = Bypass(_CLOSERS_RE)
STREAMING = {(long, target): Bypass(_LONG_END_RE if long else _QUOTED_END_RE, target)
             for long in (True, False) for target in ("text", "reasoning", "legacy")}


def in_long_string(closer: str) -> Bypass:
    """Waiting inside a long string of a call: only a "]" that ends *closer* matters."""
    return Bypass(_LONG_END_RE, None, closer)
