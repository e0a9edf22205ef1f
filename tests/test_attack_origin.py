"""Forged requests over real HTTP: the content-type and origin guards on the live demo stack
(issue 13, item 3). Raw http.client, so every header is exactly what a browser would send; the
demo's received log proves nothing refused reached the chat service, and agents still get through.
"""

from __future__ import annotations

import http.client
import json
import uuid
from typing import Any

import pytest
from support import CLINE, FIXTURES, KILO, ROO, as_demo_model, captured_bodies

from roogab.demo import DemoChatService
from roogab.runtime import Running

pytestmark = pytest.mark.loopback

def _body() -> str:
    """A turn no earlier test asked (an identical one would be answered from the record)."""
    return json.dumps({"model": "demo/gab-1",
                       "messages": [{"role": "user", "content": f"forged turn {uuid.uuid4().hex}"}]})


def _post(stack: Running, headers: dict[str, str], body: str | None = None,
          path: str = "/v1/chat/completions") -> tuple[int, dict[str, Any]]:
    body = _body() if body is None else body
    conn = http.client.HTTPConnection("127.0.0.1", stack.server.port)
    try:
        conn.request("POST", path, body=body.encode(), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None, "application/jsonx"])
def test_a_body_that_is_not_json_is_a_415(stack: Running, demo: DemoChatService, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, body = _post(stack, headers)
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"
    assert demo.received == []


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "http://evil.example:8787"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1.evil.example"},
    {"Origin": "http://localhost.evil.example:3000"},
    {"Origin": "file://"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "cross-site"},
])
def test_a_cross_site_request_is_a_403(stack: Running, demo: DemoChatService, headers: dict[str, str]) -> None:
    status, body = _post(stack, {"Content-Type": "application/json", **headers})
    assert status == 403 and body["error"]["code"] == "forbidden_origin"
    assert body["error"]["type"] == "permission_error"
    assert demo.received == []


@pytest.mark.parametrize("origin", ["http://127.0.0.1:3000", "http://localhost:5173", "http://[::1]:8080", None])
def test_loopback_pages_and_agents_are_served(stack: Running, demo: DemoChatService, origin: str | None) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if origin:
        headers["Origin"] = origin
    status, body = _post(stack, headers)
    assert status == 200, body
    assert any(r.prompt and "forged turn" in r.prompt for r in demo.received)


def test_the_server_s_own_origin_is_served(stack: Running, demo: DemoChatService) -> None:
    status, _ = _post(stack, {"Content-Type": "application/json", "Origin": stack.url,
                              "Sec-Fetch-Site": "same-origin"})
    assert status == 200 and demo.received


@pytest.mark.parametrize("name", [ROO, CLINE, KILO])
def test_captured_agent_requests_pass_the_guards(stack: Running, demo: DemoChatService, name: str) -> None:
    """The agents' own bodies and headers (content type included) as captured."""
    data = json.loads((FIXTURES / "captured" / name).read_text("utf-8"))
    request = next(r for r in data["requests"] if isinstance(r.get("body"), dict))
    headers = {k: v for k, v in (request.get("headers") or {}).items()
               if k.lower() in ("content-type", "user-agent", "accept", "origin", "sec-fetch-site")}
    body = as_demo_model(captured_bodies(name)[0])
    body["stream"] = False
    body.pop("stream_options", None)
    status, answer = _post(stack, headers, json.dumps(body))
    assert status == 200, answer
    assert demo.received


@pytest.mark.parametrize("path", ["/inspect", "/inspect/fragment?since=0", "/inspect/turns.json"])
def test_inspector_answers_carry_frame_sniff_and_script_policies(stack: Running, path: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.server.port)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 200
    assert response.getheader("X-Frame-Options") == "DENY"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert "frame-ancestors 'none'" in (response.getheader("Content-Security-Policy") or "")


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:3000", "https://evil.example", "null"])
def test_the_try_page_form_runs_a_turn_only_from_roogab_s_own_page(stack: Running, demo: DemoChatService,
                                                                   origin: str | None) -> None:
    """The inspector's try-it form posts form-encoded, so only its own page may send it: even a
    page on another loopback port may not (it would run a turn on the signed-in chat session)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", **({"Origin": origin} if origin else {})}
    status, body = _post(stack, headers, body="model=demo%2Fgab-1&message=forged", path="/inspect/try")
    assert status == 403 and body["error"]["code"] == "forbidden_origin"
    assert demo.received == []
