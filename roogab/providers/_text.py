"""Small text helpers the providers share for messages and logs: URLs without secrets, short quotes."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["safe_url", "short"]

_MAX_SERVICE_MESSAGE = 200


def safe_url(url: str) -> str:
    """*url* without credentials, query or fragment, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def short(value: object, limit: int = _MAX_SERVICE_MESSAGE) -> str:
    """``str(value)`` cut to *limit* characters ("" for ``None``), for quoting a service's words."""
    text = str(value) if value is not None else ""
    return text if len(text) <= limit else text[:limit - 3] + "..."
