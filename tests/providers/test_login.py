"""WebClient and form_login against a loopback aiohttp server: retries for 5xx only, cookies kept."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp_server import AiohttpServer

from roogab.errors import ProviderRejected, ProviderUnavailable
from roogab.providers.login import Retry, WebClient, form_login

pytestmark = pytest.mark.loopback

FAST = Retry(attempts=4, first=0.02, cap=0.05, max_time=5.0)
SECRET = "hunter2-S3CR3T"


@dataclass
class Service:
    failures: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    cookies_seen: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/login", self.login)
        app.router.add_get("/flaky", self.flaky)
        app.router.add_get("/user", self.user)
        return app

    def hit(self, name: str) -> int:
        self.hits[name] = self.hits.get(name, 0) + 1
        return self.hits[name]

    async def login(self, request: web.Request) -> web.Response:
        self.hit("login")
        form = await request.post()
        if form.get("username") != "alice" or form.get("password") != SECRET:
            return web.json_response({"detail": "credentialssignin"}, status=401)
        response = web.json_response({"success": True})
        response.set_cookie("access_token", "jwt-S3CR3T", httponly=True, max_age=1296000, path="/")
        return response

    async def flaky(self, request: web.Request) -> web.Response:
        if self.hit("flaky") <= self.failures:
            return web.Response(status=503, text="busy")
        return web.json_response({"ok": True})

    async def user(self, request: web.Request) -> web.Response:
        self.cookies_seen.append(request.headers.get("Cookie", ""))
        return web.json_response({"identifier": "alice"})


@pytest.fixture
def service() -> Iterator[tuple[Service, str]]:
    s = Service()
    server = AiohttpServer(s.app())
    url = server.start()
    yield s, url
    server.stop()


def test_login_keeps_the_cookie_and_sends_it(service: tuple[Service, str]) -> None:
    s, url = service
    client = WebClient("team", url, headers=[("Cookie", "theme=dark")], retry=FAST)
    cookies = form_login(client, "/login", "alice", SECRET)
    assert [(c.name, c.value, c.host_only) for c in cookies] == [("access_token", "jwt-S3CR3T", True)]
    assert client.get("/user").json() == {"identifier": "alice"}
    assert s.cookies_seen == ["theme=dark; access_token=jwt-S3CR3T"]


def test_a_refused_login_is_not_retried_and_hides_the_password(
        service: tuple[Service, str], caplog: pytest.LogCaptureFixture) -> None:
    s, url = service
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderRejected) as caught:
        form_login(WebClient("team", url, retry=FAST), "/login", "alice", "wrong-" + SECRET)
    assert str(caught.value) == "login to team refused for user 'alice' (401)"
    assert s.hits["login"] == 1
    assert SECRET not in caplog.text


def test_5xx_is_retried_with_backoff(service: tuple[Service, str]) -> None:
    s, url = service
    s.failures = 2
    reply = WebClient("team", url, retry=FAST).get("/flaky")
    assert reply.ok and s.hits["flaky"] == 3


def test_retries_are_bounded(service: tuple[Service, str]) -> None:
    s, url = service
    s.failures = 100
    with pytest.raises(ProviderUnavailable, match=r"GET http://127.0.0.1:\d+/flaky failed: the service answered 503"):
        WebClient("team", url, retry=FAST).get("/flaky")
    assert s.hits["flaky"] == FAST.attempts


def test_connection_errors_are_retried_then_unavailable() -> None:
    client = WebClient("team", "http://127.0.0.1:1/", retry=Retry(attempts=2, first=0.01, cap=0.01))
    with pytest.raises(ProviderUnavailable, match="Connection refused"):
        client.get("/auth/config")
