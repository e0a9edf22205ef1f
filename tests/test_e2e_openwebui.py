"""RooGab against a real Open WebUI server (``open-webui serve`` from its own venv), whose one model
is the loopback ``FakeModels`` backend answering with scripted envelopes.

Skipped where the venv is absent; ``.ci/run`` installs it and sets ROOGAB_REQUIRE_OPENWEBUI=1,
which turns the skip into a failure. Every test proves its turn reached the model: it reads what
``FakeModels`` received through Open WebUI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openwebui_server import ADMIN_EMAIL, ADMIN_PASSWORD, MODEL, FakeModels, OpenWebUIServer, venv
from support import no_keepalive

from roogab.check import check_providers
from roogab.config import ProviderProfile, load_config
from roogab.errors import ConversationGone, ProviderRejected
from roogab.providers import kinds
from roogab.providers.base import Created, Deadlines, Done
from roogab.providers.loop import ProviderLoop
from roogab.providers.openwebui_impl import OpenWebUIProvider
from roogab.runtime import Running, start

VENV = venv()
if VENV is None:
    if os.environ.get("ROOGAB_REQUIRE_OPENWEBUI"):
        raise RuntimeError("the Open WebUI venv is required: set ROOGAB_OPENWEBUI_VENV (see .ci/run)")
    pytest.skip("no Open WebUI venv (ROOGAB_OPENWEBUI_VENV) on this machine", allow_module_level=True)

pytestmark = [pytest.mark.loopback, pytest.mark.slow]

READ_FILE = {"type": "function", "function": {"name": "read_file", "description": "Read a file.",
             "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                            "required": ["path"]}}}
TOOL_REPLY = ('```lua\nreturn {\n  text = [==[Reading it.]==],\n  tool_calls = {\n'
              '    { name = "read_file", arguments = { path = "README.md" } },\n  },\n}\n```')
DEADLINES = Deadlines(first_token=60, silence=30, total=120)


def _text(reply: str) -> str:
    return "```lua\nreturn { text = [==[" + reply + "]==] }\n```"


@pytest.fixture(scope="session")
def models() -> Iterator[FakeModels]:
    fake = FakeModels()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, models: FakeModels) -> Iterator[OpenWebUIServer]:
    assert VENV is not None
    s = OpenWebUIServer(VENV, tmp_path_factory.mktemp("openwebui"), models.url)
    s.start()
    s.sign_up_admin()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def every_scripted_reply_is_served(models: FakeModels) -> Iterator[None]:
    """A reply scripted and never asked for means a turn never reached the model."""
    yield
    left = list(models.replies)
    models.replies.clear()
    assert not left, f"{len(left)} scripted repl(ies) never reached the model through Open WebUI"


def _profile(server: OpenWebUIServer, **options: Any) -> ProviderProfile:
    return ProviderProfile(name="owui", kind="openwebui", url=server.url, models=(), username=ADMIN_EMAIL,
                           password=ADMIN_PASSWORD, options=tuple(options.items()))


@pytest.fixture
def loop() -> Iterator[ProviderLoop]:
    provider_loop = ProviderLoop()
    provider_loop.start()
    yield provider_loop
    provider_loop.stop()


def _provider(server: OpenWebUIServer, loop: ProviderLoop, **options: Any) -> OpenWebUIProvider:
    provider = kinds.build(_profile(server, **options), kinds.Context(loop, connect_timeout=10))
    assert isinstance(provider, OpenWebUIProvider)
    return provider


def _roogab(server: OpenWebUIServer, **options: Any) -> Running:
    config = load_config(env={}, overrides={"port": 0, "store": "memory"})
    return start(dataclasses.replace(config, providers=(_profile(server, **options),)))


@contextlib.contextmanager
def _client(running: Running) -> Iterator[openai.OpenAI]:
    """The official SDK as the agent, closed afterwards (its pool keeps sockets open)."""
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, http_client=no_keepalive())
    try:
        yield client
    finally:
        client.close()


def _api(server: OpenWebUIServer, path: str) -> Any:
    body = json.dumps({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode()
    signin = urllib.request.Request(server.url + "/api/v1/auths/signin", data=body,
                                    headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(signin, timeout=30) as r:
        token = json.loads(r.read())["token"]
    request = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def _last_prompt(models: FakeModels) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = models.completions()[-1]["messages"]
    return messages


# -- the provider on its own ---------------------------------------------------------------


def test_login_and_the_model_list(server: OpenWebUIServer, loop: ProviderLoop) -> None:
    provider = _provider(server, loop)
    try:
        provider.start()
        health = provider.health()
        assert (health.ready, health.connected, health.logged_in) == (True, True, True)
        assert [m.id for m in provider.models()] == [MODEL]
    finally:
        provider.close()


def test_a_wrong_password_is_refused_without_echoing_it(server: OpenWebUIServer, loop: ProviderLoop) -> None:
    profile = dataclasses.replace(_profile(server), password="not-the-password")
    provider = kinds.build(profile, kinds.Context(loop))
    with pytest.raises(ProviderRejected, match="refused") as caught:
        provider.start()
    assert "not-the-password" not in str(caught.value)
    provider.close()


def test_a_cookie_file_with_the_token_cookie_logs_in(server: OpenWebUIServer, loop: ProviderLoop,
                                                     tmp_path: Path) -> None:
    body = json.dumps({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode()
    signin = urllib.request.Request(server.url + "/api/v1/auths/signin", data=body,
                                    headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(signin, timeout=30) as r:
        token = json.loads(r.read())["token"]
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\ttoken\t{token}\n")
    profile = dataclasses.replace(_profile(server), username="", password="", cookie_file=cookies)
    provider = kinds.build(profile, kinds.Context(loop))
    try:
        provider.start()
        assert provider.health().logged_in and [m.id for m in provider.models()] == [MODEL]
    finally:
        provider.close()


@pytest.mark.parametrize("temporary", [False, True], ids=["saved", "temporary"])
def test_two_turns_on_one_chat(server: OpenWebUIServer, loop: ProviderLoop, models: FakeModels,
                               temporary: bool) -> None:
    provider = _provider(server, loop, temporary_chats=temporary)
    provider.start()
    try:
        models.script(_text(f"first {temporary}"), _text(f"second {temporary}"))
        first = [e for e in provider.send(None, MODEL, f"turn one {temporary}", DEADLINES).events() if e]
        assert isinstance(first[0], Created) and isinstance(first[-1], Done)
        assert first[-1].text == _text(f"first {temporary}")
        handle = first[0].handle
        second = [e for e in provider.send(handle, MODEL, f"turn two {temporary}", DEADLINES).events() if e]
        assert isinstance(second[-1], Done) and second[-1].text == _text(f"second {temporary}")
        assert _last_prompt(models) == [{"role": "user", "content": f"turn one {temporary}"},
                                        {"role": "assistant", "content": _text(f"first {temporary}")},
                                        {"role": "user", "content": f"turn two {temporary}"}]
        assert "tools" not in models.completions()[-1]  # no Open WebUI tools: RooGab's are the only ones
        sidebar = [c["id"] for c in _api(server, "/api/v1/chats/")]
        assert (handle in sidebar) is (not temporary)
    finally:
        provider.close()


def test_a_new_roogab_continues_a_saved_chat_and_replays_a_temporary_one(
        server: OpenWebUIServer, loop: ProviderLoop, models: FakeModels) -> None:
    handles = {}
    for temporary in (False, True):
        provider = _provider(server, loop, temporary_chats=temporary)
        provider.start()
        models.script(_text("before"))
        events = [e for e in provider.send(None, MODEL, "before the restart", DEADLINES).events() if e]
        assert isinstance(events[0], Created)
        handles[temporary] = events[0].handle
        provider.close()
    again = _provider(server, loop)
    again.start()
    try:
        models.script(_text("after"))
        done = [e for e in again.send(handles[False], MODEL, "after the restart", DEADLINES).events() if e]
        assert isinstance(done[-1], Done) and done[-1].text == _text("after")
        assert [m["content"] for m in _last_prompt(models)] == ["before the restart", _text("before"),
                                                                "after the restart"]
        with pytest.raises(ConversationGone):
            list(again.send(handles[True], MODEL, "lost", DEADLINES).events())
    finally:
        again.close()


# -- through RooGab, with the openai SDK -----------------------------------------------------


@pytest.fixture(scope="module")
def roogab(server: OpenWebUIServer) -> Iterator[Running]:
    running = _roogab(server)
    yield running
    running.close()


def test_models_are_published(roogab: Running) -> None:
    with _client(roogab) as client:
        assert [m.id for m in client.models.list()] == [f"owui/{MODEL}"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_call_round_trip(roogab: Running, models: FakeModels, stream: bool) -> None:
    with _client(roogab) as client:
        task = f"read the readme ({'stream' if stream else 'json'})"
        body: dict[str, Any] = {"model": f"owui/{MODEL}", "tools": [READ_FILE], "messages": [
            {"role": "system", "content": "You are a test agent."}, {"role": "user", "content": task}]}
        models.script(TOOL_REPLY, _text("The readme says hello."))
        if not stream:
            message = client.chat.completions.create(**body).choices[0].message
            [call] = message.tool_calls or []
            call_id, name, arguments = call.id, call.function.name, call.function.arguments
        else:
            call_id, name, arguments = "", "", ""
            for chunk in client.chat.completions.create(**body, stream=True):
                for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    call_id = tc.id or call_id
                    name += tc.function.name or "" if tc.function else ""
                    arguments += tc.function.arguments or "" if tc.function else ""
        assert name == "read_file" and json.loads(arguments) == {"path": "README.md"}
        assert task in _last_prompt(models)[-1]["content"]  # the turn went through Open WebUI to the model
        second = dict(body, messages=body["messages"] + [
            {"role": "assistant", "content": "Reading it.", "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "# README\nhello"}])
        answer = client.chat.completions.create(**second).choices[0].message.content
        assert answer == "The readme says hello."
        prompt = _last_prompt(models)
        assert len(prompt) == 3 and task in prompt[0]["content"] and "# README" in prompt[2]["content"]


def test_roogab_check_passes(server: OpenWebUIServer, models: FakeModels) -> None:
    config = load_config(env={}, overrides={"port": 0, "store": "memory"})
    models.script(_text("OK"))
    [result] = check_providers(dataclasses.replace(config, providers=(_profile(server),)))
    assert result.ok, result.lines
    assert "RooGab check" in _last_prompt(models)[-1]["content"]


def test_a_restart_of_open_webui_mid_task(server: OpenWebUIServer, models: FakeModels) -> None:
    """Turn one; Open WebUI is killed in the middle of turn two's reply, which fails (never a short
    answer); it comes back on the same data and port, and the retried turn replays the task into
    a fresh chat (the cut-off chat's state is unknown), whose one prompt holds the whole history."""
    running = _roogab(server)
    stack = contextlib.ExitStack()
    stall = threading.Event()
    try:
        client = stack.enter_context(_client(running))
        body: dict[str, Any] = {"model": f"owui/{MODEL}", "messages": [{"role": "user", "content": "before"}]}
        models.script(_text("one"))
        assert client.chat.completions.create(**body).choices[0].message.content == "one"
        body["messages"] += [{"role": "assistant", "content": "one"}, {"role": "user", "content": "after"}]
        models.script(_text("two, cut off"))
        models.stalled.clear()
        models.stall = stall
        outcome: dict[str, object] = {}

        def ask() -> None:
            try:
                outcome["answer"] = client.chat.completions.create(**body).choices[0].message.content
            except openai.APIError as exc:
                outcome["error"] = exc

        asking = threading.Thread(target=ask)
        asking.start()
        assert models.stalled.wait(120)
        server.kill()
        asking.join(120)
        stall.set()
        assert "answer" not in outcome and isinstance(outcome.get("error"), openai.APIStatusError)
        assert outcome["error"].status_code in (502, 503)
        server.start()
        models.script(_text("two"))
        assert client.chat.completions.create(**body).choices[0].message.content == "two"
        [replay] = _last_prompt(models)
        assert replay["role"] == "user"
        assert all(part in replay["content"] for part in ("before", "one", "after"))
        assert "two, cut off" not in replay["content"]
    finally:
        stall.set()
        stack.close()
        running.close()


def test_the_wire_view_has_the_turns_requests_and_socket_events_in_order(
        server: OpenWebUIServer, loop: ProviderLoop, models: FakeModels) -> None:
    from wire_frames import assert_no_secret, shown_frames
    provider = _provider(server, loop)
    provider.start()
    try:
        models.script(_text("seen on the wire"))
        turn = provider.send(None, MODEL, "wire probe 8123", DEADLINES)
        got = [e for e in turn.events() if e]
        assert isinstance(got[-1], Done) and got[-1].text == _text("seen on the wire")
        assert _last_prompt(models)[-1]["content"] == "wire probe 8123"  # the model got the turn
        frames = shown_frames(turn, "wire probe 8123")
        token = provider._web.token
    finally:
        provider.close()
    names = [(f["direction"], f["kind"], f["name"]) for f in frames]
    assert names[:4] == [("out", "http", "POST /api/v1/chats/new"), ("in", "http", "POST /api/v1/chats/new"),
                         ("out", "http", "POST /api/chat/completions"), ("in", "http", "POST /api/chat/completions")]
    assert set(names[4:]) == {("in", "socket.io", "events")}
    assert "wire probe 8123" in str(frames[2]["payload"]) and "seen on the wire" in str(frames[-1]["payload"]) + \
        str(frames[-2]["payload"])
    assert [f["ms"] for f in frames] == sorted(f["ms"] for f in frames)  # type: ignore[type-var]
    assert token and ADMIN_PASSWORD
    assert_no_secret(frames, [token, ADMIN_PASSWORD])
