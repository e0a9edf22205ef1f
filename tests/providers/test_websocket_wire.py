"""The wire view of the WebSocket kind: the real websocket-client provider against the loopback
Cheshire-Cat-shaped aiohttp server of test_websocket, its frames read through the live board."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp_server import AiohttpServer
from test_websocket import QUICK, CatService, make
from wire_frames import assert_no_secret, shown_frames

from roogab.providers.base import Created, Done

pytestmark = pytest.mark.loopback

COOKIE = "c00kie-value-9931"
BEARER = "sk-bearer-token-5577aa"


@pytest.fixture
def cat() -> Iterator[tuple[CatService, str]]:
    service = CatService(require_cookie=f"session={COOKIE}")
    server = AiohttpServer(service.app())
    url = server.start()
    yield service, url
    server.stop()


def test_the_frames_of_a_websocket_turn_in_order_with_no_secret(cat: tuple[CatService, str], tmp_path: Path) -> None:
    cookie_file = tmp_path / "cookies.json"
    cookie_file.write_text(json.dumps([{"name": "session", "value": COOKIE, "domain": "127.0.0.1", "path": "/",
                                        "hostOnly": True}]))
    p = make(cat[1], cookie_file=cookie_file, headers=(("Authorization", f"Bearer {BEARER}"), ("X-Team", "blue")))
    p.start()
    try:
        turn = p.send(None, "default", "wire probe 4471", QUICK)
        got = [e for e in turn.events(tick=0.1) if e is not None]
        assert isinstance(got[0], Created) and got[-1] == Done("you said: wire probe 4471 (#1)")
        assert cat[0].received == [{"text": "wire probe 4471"}]  # the service got the turn
        frames = shown_frames(turn, "wire probe 4471")
        handle = got[0].handle
        second = p.send(handle, "default", "again 5", QUICK)
        assert [e for e in second.events(tick=0.1) if e is not None][-1] == Done("you said: again 5 (#2)")
        again = shown_frames(second, "again 5")
    finally:
        p.close()
    names = [(f["direction"], f["name"]) for f in frames]
    assert names[:3] == [("out", "handshake"), ("in", "handshake"), ("out", "text")]
    assert names[-1] == ("in", "chat") and set(names[3:-1]) == {("in", "chat_token")}
    assert all(f["kind"] == "websocket" for f in frames)
    assert json.loads(str(frames[2]["payload"])) == {"text": "wire probe 4471"}
    assert "blue" in str(frames[0]["payload"]) and "101" in str(frames[1]["payload"])
    assert [f["ms"] for f in frames] == sorted(f["ms"] for f in frames)  # type: ignore[type-var]
    assert_no_secret(frames + again, [COOKIE, BEARER])
    # a second turn on the same connection: no handshake, its own frames only
    assert (again[0]["direction"], again[0]["name"]) == ("out", "text")
    assert "wire probe 4471" not in json.dumps(again)
