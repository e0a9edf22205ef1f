"""UTF-16 halves in Python strings: what ``json`` makes of a ``\\ud83d`` escape without its
partner, which no UTF-8 body can hold. Pure; one place for the envelope, the wire check and the
providers."""

from __future__ import annotations

import re

__all__ = ["HALF", "is_high_surrogate", "well_formed"]

#: One UTF-16 half (a surrogate code point) in a str.
HALF = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """*text* as valid Unicode. A chat service's JSON may spell a character as UTF-16 halves
    (``"\\ud83d\\ude00"``, or one half per frame when it cut its reply between them), which
    ``json`` decodes to lone surrogates that no encoder takes: adjacent halves are joined into
    their character, a half without its partner becomes U+FFFD."""
    if text.isascii() or HALF.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def is_high_surrogate(char: str) -> bool:
    """Whether *char* is the first half of a UTF-16 pair (its partner may come in the next piece)."""
    return "\ud800" <= char <= "\udbff"
