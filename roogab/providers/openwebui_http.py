"""Open WebUI's start-up over plain HTTP: the login and the model list (providers.md §8).

Login as the page does it: ``POST /api/v1/auths/signin {email, password}`` answers with a JWT
(also set as the ``token`` cookie); or a cookie file exported from a signed-in browser, whose
``token`` cookie is that JWT. Either way the JWT then goes as ``Authorization: Bearer`` on REST
calls and as ``auth: {token}`` on the Socket.IO connection. ``GET /api/v1/auths/`` checks it;
``GET /api/models`` lists the models the account may use. Blocking, on the caller's thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..config import ProviderProfile
from ..cookies import expiry_warnings, load_cookies
from ..errors import ProviderRejected, ProviderUnavailable
from ._text import safe_url
from .login import Reply, Retry, WebClient

__all__ = ["OpenWebUIWeb"]

logger = logging.getLogger(__name__)

TOKEN_COOKIE = "token"


class OpenWebUIWeb:
    """The HTTP side of one Open WebUI: the account's JWT and the models it may use."""

    def __init__(self, profile: ProviderProfile, *, timeout: float, retry: Retry | None = None) -> None:
        self.profile = profile
        self.name = profile.name
        self.client = WebClient(self.name, profile.url, headers=profile.headers, timeout=timeout,
                                retry=retry or Retry())
        self.models: list[str] = list(profile.models)
        self.token = ""
        self.user = ""
        self._where = safe_url(profile.url)

    def start(self) -> None:
        """Log in (password or cookie file), check the token, and list the models.

        Raises:
            ConfigError: the cookie file cannot be read.
            ProviderRejected: the login was refused, the token is not (or no longer) valid, or
                no login is configured.
            ProviderUnavailable: the server could not be reached, or does not look like Open WebUI.
        """
        self.log_in()
        if not self.profile.models:
            self.models = self._discover()

    def log_in(self) -> None:
        """Get a token (again): sign in with the password, else take the cookie file's.

        Raises:
            ConfigError, ProviderRejected, ProviderUnavailable: as for ``start``.
        """
        p = self.profile
        if p.username and p.password:
            self.token = self._sign_in(p.username, p.password)
        elif p.cookie_file is not None:
            self.token = self._cookie_token()
        else:
            raise ProviderRejected(f"{self.name}: Open WebUI needs a login: configure username (the "
                                   "account's email) and password_env, or a cookie_file", provider=self.name)
        self.client.bearer = self.token
        me = self._json(self.client.get("/api/v1/auths/"), "/api/v1/auths/")
        self.user = str(me.get("id") or "")

    def _sign_in(self, email: str, password: str) -> str:
        reply = self.client.post_json("/api/v1/auths/signin", {"email": email, "password": password})
        if reply.status in (400, 401, 403):
            raise ProviderRejected(f"login to {self.name} refused for user {email!r} ({reply.status})",
                                   provider=self.name)
        token = self._json(reply, "/api/v1/auths/signin").get("token")
        if not isinstance(token, str) or not token:
            raise ProviderRejected(f"login to {self.name} for user {email!r} gave no token", provider=self.name)
        return token

    def _cookie_token(self) -> str:
        path = self.profile.cookie_file
        assert path is not None
        cookies = load_cookies(path, key=f"providers.{self.name}.cookie_file")
        for warning in expiry_warnings(cookies, time.time()):
            logger.warning("%s: %s (%s)", self.name, warning, path)
        for cookie in cookies:
            if cookie.name == TOKEN_COOKIE and cookie.value:
                return cookie.value
        raise ProviderRejected(f"{self.name}: {path} has no {TOKEN_COOKIE!r} cookie: export the cookies of "
                               "the signed-in Open WebUI page", provider=self.name)

    def _discover(self) -> list[str]:
        data = self._json(self.client.get("/api/models"), "/api/models").get("data")
        if not isinstance(data, list):
            raise ProviderUnavailable(f"{self.name}: /api/models gave no model list", provider=self.name)
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def _json(self, reply: Reply, path: str) -> dict[str, Any]:
        if reply.status in (401, 403):
            source = f"the token from {self.profile.cookie_file}" if self.profile.cookie_file and not \
                self.profile.password else "the token"
            raise ProviderRejected(f"{self.name}: {path} refused {source} ({reply.status}); sign in again",
                                   provider=self.name)
        data = reply.json()
        if not reply.ok or not isinstance(data, dict):
            raise ProviderUnavailable(f"{self.name}: {self._where.rstrip('/')}{path} answered {reply.status}"
                                      " without JSON: is this an Open WebUI server?", provider=self.name)
        return data
