"""Browser access to the inspector behind API keys: a sign-in cookie. Pure.

A browser cannot send ``Authorization``; ``/inspect/signin`` takes a key in a form and sets an
HttpOnly, SameSite=Strict cookie holding a token derived from the key (never the key itself).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["COOKIE", "token", "valid"]

COOKIE = "roogab_inspector"


def token(key: str) -> str:
    """The cookie value for *key*: an HMAC of a fixed label, so the cookie is not the key."""
    return hmac.new(key.encode(), b"roogab inspector sign-in", hashlib.sha256).hexdigest()


def valid(cookie: str, keys: Iterable[str]) -> bool:
    """True when *cookie* is the token of one of *keys* (compared in constant time)."""
    matches = [hmac.compare_digest(cookie.encode(), token(key).encode()) for key in keys]
    return bool(cookie) and any(matches)
