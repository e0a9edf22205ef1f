"""Requests a web page may not make: cross-site request forgery guards (design.md §7). Pure.

A page on another site cannot read RooGab's answers (no CORS), but a browser still *sends*
"simple" requests for it — a form post, ``navigator.sendBeacon``, a ``no-cors`` fetch — and each
would run a turn on the user's signed-in chat session. Two rules stop them on every bind, before
anything reads the body: a request body must be ``application/json`` (a page can send that only
after a CORS preflight, which RooGab never grants), and a request that a browser marks as coming
from another site (``Origin`` not this server, a loopback address or an allowed host;
``Sec-Fetch-Site: cross-site``) is refused. Coding agents send neither header.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from .errors import ForbiddenOrigin, UnsupportedMediaType

__all__ = ["BODY_METHODS", "check_content_type", "check_origin", "check_own_form"]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
JSON_TYPES = frozenset({"application/json"})


def check_origin(headers: Mapping[str, str], own_host: str, allowed_hosts: Collection[str]) -> None:
    """Refuse a request a browser sent for a page of another site.

    *headers* have lower-case names; *own_host* is the request's ``Host`` (host[:port]).

    Raises:
        ForbiddenOrigin: ``Sec-Fetch-Site`` says ``cross-site``, or ``Origin`` names a site that
            is neither this server, nor a loopback address, nor one of *allowed_hosts*.
    """
    if headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
        raise ForbiddenOrigin("a web page of another site may not use RooGab (Sec-Fetch-Site: cross-site)")
    origin = headers.get("origin")
    if origin is None:
        return
    if not _origin_allowed(origin.strip(), own_host.lower(), allowed_hosts):
        raise ForbiddenOrigin(f"Origin '{origin[:100]}' may not use RooGab: only this server, loopback "
                              "pages and allowed_hosts may (agents send no Origin)")


def check_content_type(method: str, headers: Mapping[str, str]) -> None:
    """Refuse a request body that is not JSON (what HTML forms and beacons send).

    Raises:
        UnsupportedMediaType: a body-carrying method without ``Content-Type: application/json``.
    """
    if method.upper() not in BODY_METHODS:
        return
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES:
        shown = media[:60] or "none"
        raise UnsupportedMediaType(f"the request body must be application/json, not {shown}")


def check_own_form(method: str, headers: Mapping[str, str], own_host: str) -> None:
    """A form of RooGab's own pages (the inspector's sign-in, its try-it page) may post
    form-encoded, but only from this server's own pages: a browser names the page's origin on
    every form post, and it must be this server exactly.

    Raises:
        ForbiddenOrigin: a body-carrying request without ``Origin``, or from another origin.
    """
    if method.upper() not in BODY_METHODS:
        return
    origin = headers.get("origin", "").strip()
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:
        netloc = ""
    if not netloc or netloc != own_host.lower():
        raise ForbiddenOrigin("this form may be sent only from RooGab's own pages")


def _origin_allowed(origin: str, own_host: str, allowed_hosts: Collection[str]) -> bool:
    if origin.lower() == "null":  # a sandboxed frame, a file:// page, a redirect across sites
        return False
    try:
        parts = urlsplit(origin)
        name = (parts.hostname or "").lower()
        netloc = parts.netloc.lower()
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not name:
        return False
    return netloc == own_host or name in LOOPBACK_NAMES or name in {h.lower() for h in allowed_hosts}
