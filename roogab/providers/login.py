"""Blocking HTTP for a provider's start-up: login forms, auth checks and model discovery.

``WebClient`` sends small requests to one chat service with the profile's headers and cookies.
Connection errors, timeouts and 5xx answers are retried with the ``backoff`` package (exponential
delays with full jitter, bounded in tries and in time); any 4xx answer is returned at once and
never retried, so a wrong password is not hammered. ``form_login`` posts a username/password form
and returns the cookies the service set.

Nothing here puts a password or a cookie value into a message or a log line.

This is the only module that names ``urllib``'s exceptions; they become RooGab errors here.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import backoff

from ..cookies import Cookie, cookie_header
from ..errors import ProviderRejected, ProviderUnavailable
from ._text import safe_url

__all__ = ["Reply", "Retry", "WebClient", "form_login"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retry:
    """How hard to retry a request that failed for a transient reason.

    Delays grow as ``first * 2**n`` up to ``cap`` seconds (each drawn at random below that, full
    jitter); at most ``attempts`` tries in all and no new try after ``max_time`` seconds.
    """

    attempts: int = 4
    first: float = 0.25
    cap: float = 4.0
    max_time: float = 20.0


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body and the cookies it set."""

    status: int
    body: bytes
    cookies: tuple[Cookie, ...] = ()

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; ``None`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None


class _Transient(Exception):
    """A failure worth another try (connection error, timeout, 5xx); carries a safe reason."""


class WebClient:
    """Blocking HTTP to one chat service, with its headers and cookies, retried where it helps."""

    def __init__(self, provider: str, base_url: str, *, headers: Iterable[tuple[str, str]] = (),
                 timeout: float = 10.0, retry: Retry = Retry()) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/") + "/"
        self._headers = [(k, v) for k, v in headers if k.lower() != "cookie"]
        self._cookie_line = next((v for k, v in headers if k.lower() == "cookie"), "")
        self._timeout = timeout
        self._retry = retry
        self.cookies: list[Cookie] = []
        self.bearer = ""  # sent as ``Authorization: Bearer`` when set (a token-based login)

    def url(self, path: str) -> str:
        """The absolute URL of *path* on the service."""
        return urljoin(self.base_url, path.lstrip("/"))

    def cookie_line(self, url: str | None = None) -> str:
        """The ``Cookie`` header for *url* (default: the base URL): configured plus collected."""
        collected = cookie_header(self.cookies, url or self.base_url)
        return "; ".join(part for part in (self._cookie_line, collected) if part)

    def get(self, path: str) -> Reply:
        """GET *path*.

        Raises:
            ProviderUnavailable: the service could not be reached, or kept answering 5xx.
        """
        return self._send("GET", path, None)

    def post_form(self, path: str, fields: Mapping[str, str]) -> Reply:
        """POST *fields* form-encoded to *path*; never logs the fields.

        Raises:
            ProviderUnavailable: the service could not be reached, or kept answering 5xx.
        """
        return self._send("POST", path, urlencode(dict(fields)).encode())

    def post_json(self, path: str, data: object) -> Reply:
        """POST *data* as JSON to *path*; never logs it.

        Raises:
            ProviderUnavailable: the service could not be reached, or kept answering 5xx.
        """
        return self._send("POST", path, json.dumps(data).encode(), "application/json")

    def _send(self, method: str, path: str, body: bytes | None,
              content_type: str = "application/x-www-form-urlencoded") -> Reply:
        url = self.url(path)
        r = self._retry
        attempt: Callable[[], Reply] = backoff.on_exception(
            backoff.expo, _Transient, max_tries=max(1, r.attempts), max_time=r.max_time,
            jitter=backoff.full_jitter, on_backoff=self._log_retry, logger=None,
            factor=r.first, max_value=r.cap)(lambda: self._once(method, url, body, content_type))
        try:
            return attempt()
        except _Transient as exc:
            raise ProviderUnavailable(f"{self.provider}: {method} {safe_url(url)} failed: {exc}",
                                      provider=self.provider) from exc

    def _once(self, method: str, url: str, body: bytes | None, content_type: str) -> Reply:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(self._headers))
        if body is not None:
            request.add_header("Content-Type", content_type)
        request.add_header("Accept", "application/json")
        if self.bearer:
            request.add_header("Authorization", f"Bearer {self.bearer}")
        cookie = self.cookie_line(url)
        if cookie:
            request.add_header("Cookie", cookie)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return self._reply(url, response.status, response.read(), response.headers)
        except urllib.error.HTTPError as exc:
            with exc:
                reply = self._reply(url, exc.code, exc.read(), exc.headers or Message())
            if exc.code >= 500:
                raise _Transient(f"the service answered {exc.code}") from exc
            return reply
        except urllib.error.URLError as exc:
            raise _Transient(_reason(exc.reason)) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(_reason(exc)) from exc

    def _reply(self, url: str, status: int, body: bytes, headers: Message) -> Reply:
        cookies = tuple(_set_cookies(headers.get_all("Set-Cookie") or [], url))
        return Reply(status, body, cookies)

    def _log_retry(self, details: Any) -> None:
        logger.info("%s: retrying in %.2f s (try %d): %s", self.provider, details["wait"], details["tries"],
                    details["exception"] if isinstance(details.get("exception"), _Transient) else "")


def _reason(exc: object) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _set_cookies(lines: Iterable[str], url: str) -> Iterable[Cookie]:
    """The cookies of ``Set-Cookie`` lines, scoped as a browser would scope them for *url*."""
    host = (urlsplit(url).hostname or "").lower()
    for line in lines:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(line)
        except CookieError:
            logger.warning("ignoring a Set-Cookie header that does not parse")
            continue
        for name, morsel in jar.items():
            domain = morsel["domain"].lower()
            max_age = morsel["max-age"]
            expires = time.time() + float(max_age) if str(max_age).lstrip("-").isdigit() else None
            yield Cookie(name=name, value=morsel.value, domain=domain or host, path=morsel["path"] or "/",
                         secure=bool(morsel["secure"]), expires=expires, host_only=not domain)


def form_login(client: WebClient, path: str, username: str, password: str) -> tuple[Cookie, ...]:
    """Log in with a username/password form; keep and return the cookies the service set.

    Raises:
        ProviderRejected: the service refused the credentials (the message gives the user and
            the status, never the password), or set no cookie.
        ProviderUnavailable: the service could not be reached.
    """
    reply = client.post_form(path, {"username": username, "password": password})
    name = client.provider
    if reply.status in (401, 403):
        raise ProviderRejected(f"login to {name} refused for user {username!r} ({reply.status})", provider=name)
    if not reply.ok:
        raise ProviderRejected(f"login to {name} for user {username!r} failed ({reply.status})", provider=name)
    if not reply.cookies:
        raise ProviderRejected(f"login to {name} for user {username!r} set no cookie", provider=name)
    client.cookies.extend(reply.cookies)
    return reply.cookies
