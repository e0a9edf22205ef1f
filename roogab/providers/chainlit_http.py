"""Chainlit's start-up over plain HTTP: the app's auth config, the login, and the chat profiles.

``GET /auth/config`` says whether the app wants a login; then a password form (``POST /login`` →
``access_token`` cookie), a cookie file, or header auth (``POST /auth/header``); then the chat
profiles from ``GET /project/settings`` when the profile lists no models (providers.md §1.2,
§1.6). Blocking, on the caller's thread (``start``) or an executor (a login again after the
socket was refused).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..config import ProviderProfile
from ..cookies import expiry_warnings, load_cookies
from ..errors import ProviderRejected, ProviderUnavailable
from ._text import safe_url
from .login import Retry, WebClient, form_login

__all__ = ["DEFAULT_MODEL", "ChainlitWeb"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"  # the one model of an app without chat profiles


class ChainlitWeb:
    """The HTTP side of one Chainlit app: login state, its cookies and its chat profiles."""

    def __init__(self, profile: ProviderProfile, *, timeout: float, retry: Retry) -> None:
        self.profile = profile
        self.name = profile.name
        self.client = WebClient(self.name, profile.url, headers=profile.headers, timeout=timeout, retry=retry)
        self.models: list[str] = list(profile.models)
        self.chat_profiles: set[str] = set(profile.models)
        self.login_required = False
        self._where = safe_url(profile.url)

    def start(self) -> None:
        """Read the auth config, log in when the app asks for it, discover the chat profiles.

        Raises:
            ConfigError: the cookie file cannot be read.
            ProviderRejected: the login was refused, or the app needs one and none is configured.
            ProviderUnavailable: the app could not be reached, or does not look like Chainlit.
        """
        auth = self._json("/auth/config")
        self.login_required = bool(auth.get("requireLogin"))
        self._load_cookie_file()
        if self.login_required:
            self._log_in(auth)
        if not self.profile.models:
            self.models = self._discover()

    def cookie_line(self, url: str) -> str:
        """The ``Cookie`` header for *url*: configured plus collected at login."""
        return self.client.cookie_line(url)

    def relogin(self) -> bool:
        """Log in again with the password (a refused socket after the token expired); False when
        no password is configured, so there is nothing to try."""
        p = self.profile
        if not (self.login_required and p.username and p.password):
            return False
        self.client.cookies.clear()
        self._load_cookie_file()
        form_login(self.client, "/login", p.username, p.password)
        return True

    def _json(self, path: str) -> dict[str, Any]:
        reply = self.client.get(path)
        if reply.status in (401, 403):
            raise ProviderRejected(f"{self.name}: {path} refused ({reply.status}): not logged in",
                                   provider=self.name)
        data = reply.json()
        if not reply.ok or not isinstance(data, dict):
            raise ProviderUnavailable(f"{self.name}: {self._where.rstrip('/')}{path} answered {reply.status}"
                                      " without JSON: is this a Chainlit >= 2.0 app?", provider=self.name)
        return data

    def _load_cookie_file(self) -> None:
        path = self.profile.cookie_file
        if path is None:
            return
        cookies = load_cookies(path, key=f"providers.{self.name}.cookie_file")
        for warning in expiry_warnings(cookies, time.time()):
            logger.warning("%s: %s (%s)", self.name, warning, path)
        self.client.cookies.extend(cookies)

    def _log_in(self, auth: dict[str, Any]) -> None:
        p, web = self.profile, self.client
        if p.username and p.password:
            if not auth.get("passwordAuth"):
                raise ProviderRejected(f"{self.name}: the app does not offer password login", provider=self.name)
            form_login(web, "/login", p.username, p.password)
            return
        if auth.get("headerAuth") and p.headers and not web.cookie_line():
            reply = web.post_form("/auth/header", {})
            if not reply.ok:
                raise ProviderRejected(f"header login to {self.name} refused ({reply.status})", provider=self.name)
            web.cookies.extend(reply.cookies)
            return
        if not web.cookie_line():
            raise ProviderRejected(f"{self.name}: the app requires login: configure username and "
                                   "password_env, a cookie_file, or headers", provider=self.name)
        reply = web.get("/user")
        if not reply.ok:
            source = f"the cookies from {p.cookie_file}" if p.cookie_file else "the configured cookie"
            raise ProviderRejected(f"{self.name}: the app refused {source} ({reply.status}); sign in "
                                   "in the browser and export them again", provider=self.name)

    def _discover(self) -> list[str]:
        settings = self._json("/project/settings")
        raw = settings.get("chatProfiles") or []
        names = [p["name"] for p in raw if isinstance(p, dict) and isinstance(p.get("name"), str)]
        self.chat_profiles = set(names)
        return names or [DEFAULT_MODEL]
