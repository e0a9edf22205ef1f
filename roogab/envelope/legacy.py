"""The original RooGab reply form: ``print([====[ ... ]====])`` read as text.

Inside it, triple backticks were written ``@F_BLOCK@`` and ``====`` was written ``@E_QUAD@`` (so the
text could not close the block or the long bracket). :class:`LegacyUnescaper` undoes both while
the text streams, holding back only a trailing piece that may be the start of an escape.
"""

from __future__ import annotations

import re

__all__ = ["ESCAPES", "LegacyUnescaper"]

ESCAPES = {"@F_BLOCK@": "```", "@E_QUAD@": "===="}
_ESCAPE_RE = re.compile("|".join(map(re.escape, ESCAPES)))
_LONGEST = max(map(len, ESCAPES))


class LegacyUnescaper:
    """Streaming replacement of the legacy escapes; ``feed`` pieces, then ``flush``."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        """Return the unescaped text that is certain so far."""
        buf = self._held + text
        cut = _safe_end(buf)
        self._held = buf[cut:]
        return _ESCAPE_RE.sub(_replace, buf[:cut])

    def flush(self) -> str:
        """Return whatever is still held back (the text has ended)."""
        held, self._held = self._held, ""
        return _ESCAPE_RE.sub(_replace, held)


def _replace(m: re.Match[str]) -> str:
    return ESCAPES[m.group()]


def _safe_end(buf: str) -> int:
    """Where the part of *buf* that cannot be the start of an escape ends."""
    start = max(0, len(buf) - _LONGEST)
    last = None
    for last in _ESCAPE_RE.finditer(buf, max(0, start - _LONGEST)):
        pass
    if last is not None:
        start = max(start, last.end())
    i = buf.find("@", start)
    while i >= 0:
        tail = buf[i:]
        if any(esc.startswith(tail) for esc in ESCAPES):
            return i
        i = buf.find("@", i + 1)
    return len(buf)
