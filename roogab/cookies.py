"""The user's browser cookies: loading exported cookie files and building ``Cookie`` headers.

Two file formats are read:

- Netscape ``cookies.txt`` (curl, wget, yt-dlp, "Get cookies.txt" extensions): one cookie a
  line, seven tab-separated fields ``domain  include_subdomains  path  secure  expiry  name
  value``; ``#`` starts a comment, except the ``#HttpOnly_`` prefix some exporters put on the
  domain; expiry ``0`` means a session cookie.
- JSON, as browser cookie exporters write it (Cookie-Editor, EditThisCookie, Playwright's
  ``storage_state``): a list of ``{name, value, domain, path, secure, hostOnly, session,
  expirationDate | expires}`` objects, or an object holding that list under ``"cookies"``.

Cookie values are secrets: they go into ``Cookie`` headers and nowhere else. Messages, warnings
and ``repr`` name cookies, never their values.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["Cookie", "cookie_header", "expiry_warnings", "load_cookies", "parse_json", "parse_netscape"]

_DAY = 86_400.0
_SECURE_SCHEMES = ("https", "wss")
_FORBIDDEN = frozenset("\r\n\0;")


@dataclass(frozen=True)
class Cookie:
    """One cookie. ``expires`` is a Unix time, ``None`` for a session cookie.

    ``host_only`` cookies match their domain exactly; the others match its subdomains too.
    """

    name: str
    value: str = field(repr=False)
    domain: str
    path: str = "/"
    secure: bool = False
    expires: float | None = None
    host_only: bool = False

    def matches(self, url: str, now: float | None = None) -> bool:
        """True when a browser would send this cookie with a request to *url*."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if self.expires is not None and self.expires <= (time.time() if now is None else now):
            return False
        if self.secure and parts.scheme not in _SECURE_SCHEMES:
            return False
        return _domain_matches(host, self.domain, self.host_only) and _path_matches(parts.path or "/", self.path)


def load_cookies(path: Path, *, key: str = "cookie_file") -> list[Cookie]:
    """Read a Netscape ``cookies.txt`` or a JSON cookie export (told apart by the content).

    *key* names the setting in error messages.

    Raises:
        ConfigError: the file cannot be read or is malformed; the message names the file and
            the line (or JSON entry), never a cookie value.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")  # bytes: keep a stray \r for the checks
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(key, f"{path} is not UTF-8 text (byte {exc.start})") from exc
    if text.lstrip().startswith(("[", "{")):
        return parse_json(text, source=str(path), key=key)
    return parse_netscape(text, source=str(path), key=key)


def parse_netscape(text: str, *, source: str = "cookies.txt", key: str = "cookie_file") -> list[Cookie]:
    """Parse Netscape ``cookies.txt`` text.

    Raises:
        ConfigError: a line is malformed; the message gives *source* and the line number.
    """
    cookies = []
    for number, line in enumerate(text.split("\n"), start=1):  # a lone \r stays in its line
        host_only_prefix = line.startswith("#HttpOnly_")
        if host_only_prefix:
            line = line[len("#HttpOnly_"):]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cookies.append(_netscape_line(line, f"{source}, line {number}", key))
    return cookies


def _netscape_line(line: str, where: str, key: str) -> Cookie:
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) == 6:  # an empty value loses its trailing tab in some exporters
        fields.append("")
    if len(fields) != 7:
        raise ConfigError(key, f"{where}: expected 7 tab-separated fields, found {len(fields)}")
    domain, subdomains, path, secure, expiry, name, value = fields
    flags = {"TRUE": True, "FALSE": False}
    if subdomains.upper() not in flags or secure.upper() not in flags:
        raise ConfigError(key, f"{where}: the 2nd and 4th fields must be TRUE or FALSE")
    try:
        expires = float(expiry)
    except ValueError:
        raise ConfigError(key, f"{where}: the expiry (5th field) is not a number") from None
    return _checked(Cookie(name=name, value=value, domain=domain.lower(), path=path or "/",
                           secure=flags[secure.upper()], expires=expires if expires > 0 else None,
                           host_only=not flags[subdomains.upper()]), where, key)


def parse_json(text: str, *, source: str = "cookies.json", key: str = "cookie_file") -> list[Cookie]:
    """Parse a JSON cookie export (a list of cookie objects, or ``{"cookies": [...]}``).

    Raises:
        ConfigError: the JSON is invalid (the message gives the line) or an entry is malformed
            (the message gives its index).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(key, f"{source}, line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("cookies"), list):
        data = data["cookies"]
    if not isinstance(data, list):
        raise ConfigError(key, f"{source}: expected a list of cookies (or {{\"cookies\": [...]}})")
    return [_json_entry(entry, f"{source}, entry {index}", key) for index, entry in enumerate(data)]


def _json_entry(entry: Any, where: str, key: str) -> Cookie:
    if not isinstance(entry, Mapping):
        raise ConfigError(key, f"{where}: a cookie must be an object")
    name, value, domain = entry.get("name"), entry.get("value"), entry.get("domain")
    if not isinstance(name, str) or not name or not isinstance(value, str) or not isinstance(domain, str):
        raise ConfigError(key, f"{where}: needs string fields name, value and domain")
    path = entry.get("path") or "/"
    if not isinstance(path, str):
        raise ConfigError(key, f"{where} ({name}): path must be a string")
    host_only = entry.get("hostOnly")
    if not isinstance(host_only, bool):
        host_only = not domain.startswith(".")
    return _checked(Cookie(name=name, value=value, domain=domain.lower(), path=path,
                           secure=bool(entry.get("secure", False)), expires=_json_expiry(entry, where, key),
                           host_only=host_only), where, key)


def _json_expiry(entry: Mapping[str, Any], where: str, key: str) -> float | None:
    if entry.get("session") is True:
        return None
    raw = entry.get("expirationDate", entry.get("expires"))
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw) if raw > 0 else None  # Playwright writes -1 for session cookies
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ConfigError(key, f"{where} ({entry.get('name')}): expiry must be a Unix time or an ISO date")


def _checked(cookie: Cookie, where: str, key: str) -> Cookie:
    """Refuse names and values that would break (or smuggle lines into) a header."""
    if not cookie.name or "=" in cookie.name or any(c in _FORBIDDEN or c.isspace() for c in cookie.name):
        raise ConfigError(key, f"{where}: invalid cookie name")
    if any(c in _FORBIDDEN for c in cookie.value):
        raise ConfigError(key, f"{where} ({cookie.name}): the value holds a character not allowed in a header")
    if not cookie.domain.lstrip("."):
        raise ConfigError(key, f"{where} ({cookie.name}): empty domain")
    return cookie


def _domain_matches(host: str, domain: str, host_only: bool) -> bool:
    domain = domain.lstrip(".")
    if host == domain:
        return True
    if host_only or _is_ip(host):
        return False
    return host.endswith("." + domain)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 §5.1.4 path-match."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/")


def cookie_header(cookies: Iterable[Cookie], url: str, *, now: float | None = None) -> str:
    """The ``Cookie`` header value a browser would send to *url* ("" when none match).

    Expired cookies and secure cookies on plain http are left out; longer paths come first, and
    of two cookies with the same name, domain and path the later one wins.
    """
    chosen: dict[tuple[str, str, str], Cookie] = {}
    for cookie in cookies:
        if cookie.matches(url, now):
            chosen[(cookie.name, cookie.domain.lstrip("."), cookie.path)] = cookie
    ordered = sorted(chosen.values(), key=lambda c: -len(c.path))
    return "; ".join(f"{c.name}={c.value}" for c in ordered)


def expiry_warnings(cookies: Iterable[Cookie], now: float) -> list[str]:
    """Warnings for cookies that have expired or expire within a day; names only, never values."""
    warnings = []
    for cookie in cookies:
        if cookie.expires is None:
            continue
        left = cookie.expires - now
        where = cookie.domain.lstrip(".")
        if left <= 0:
            warnings.append(f"cookie {cookie.name!r} for {where} expired {_span(-left)} ago")
        elif left < _DAY:
            warnings.append(f"cookie {cookie.name!r} for {where} expires in {_span(left)}")
    return warnings


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * _DAY:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / _DAY:.0f} days"
