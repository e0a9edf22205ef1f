"""Through RooGab with the openai SDK, against a real Gradio app (tests/fixtures/gradio_app, a
``gr.ChatInterface`` that streams scripted envelopes), with and without ``auth=``: tool round
trips, the whole history handed to the app every turn, a killed and restarted app, `roogab check`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from gradio_server import PASSWORD, GradioServer
from support import LAZY, no_keepalive

from roogab.config import ProviderProfile, load_config
from roogab.runtime import Running, start

pytestmark = [pytest.mark.loopback, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
READ_FILE = {"type": "function", "function": {"name": "read_file", "description": "Read a file.",
             "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                            "required": ["path"]}}}
CALL = ('```lua\nreturn {\n  text = [==[Reading it.]==],\n  tool_calls = {\n'
        '    { name = "read_file", arguments = { path = "src/app.py" } },\n  },\n}\n```')
DONE = '```lua\nreturn { text = [==[The file prints hello.]==] }\n```'


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """conftest's thread check, except that the kill test tolerates gradio_client's own workers
    that the app's death strands (a gradio_client limitation: they wait for events of a stream
    that is gone; RooGab's turn has already failed and its client is closed)."""
    before = set(threading.enumerate())
    yield
    stranded_ok = request.node.name.startswith("test_killed_mid_reply")
    deadline = time.monotonic() + 5
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive() and t.name not in LAZY
                and not (stranded_ok and t.name.startswith("ThreadPoolExecutor-"))]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    gc.collect()
    assert not left, f"threads still running after the test: {[t.name for t in left]}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GradioServer]:
    s = GradioServer(tmp_path_factory.mktemp("gradio-e2e"))
    s.start()
    yield s
    s.stop()


def _roogab(url: str, *, username: str = "", password: str = "", **settings: Any) -> Running:
    config = load_config(env={}, overrides={"port": 0, "store": "memory", "ping_interval": 0.2, **settings})
    profile = ProviderProfile(name="gr", kind="gradio", url=url, models=(), username=username, password=password)
    return start(dataclasses.replace(config, providers=(profile,)))


@pytest.fixture(scope="module")
def roogab(server: GradioServer) -> Iterator[Running]:
    running = _roogab(server.open_url)
    yield running
    running.close()


@pytest.fixture
def fresh(server: GradioServer, roogab: Running) -> GradioServer:
    server.reset()
    return server


def _client(running: Running) -> openai.OpenAI:
    """An SDK client for *running*, closed after the test (no socket left to the collector)."""
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, http_client=no_keepalive())
    OPEN.append(client)
    return client


OPEN: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def _messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are a test agent."}, {"role": "user", "content": text}]


def _texts(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(role, text) of each message of a history as the app received it."""
    out = []
    for m in history:
        content = m["content"]
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        out.append((m["role"], text))
    return out


def test_the_chat_endpoint_is_the_model(roogab: Running) -> None:
    assert [m.id for m in _client(roogab).models.list().data] == ["gr/chat"]
    with urllib.request.urlopen(roogab.url + "/healthz") as r:
        health = json.load(r)["providers"]["gr"]
    assert health["ready"] and health["connected"] and health["logged_in"] is None


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_tool_call_round_trip_hands_the_app_the_whole_history(fresh: GradioServer, roogab: Running,
                                                                stream: bool) -> None:
    fresh.script(CALL, DONE)
    client = _client(roogab)
    task = f"Explain src/app.py ({'stream' if stream else 'json'})"
    messages = _messages(task)
    call_id, content = _first_turn(client, messages, stream)
    messages += [{"role": "assistant", "content": content, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "read_file",
                                                        "arguments": json.dumps({"path": "src/app.py"})}}]},
                 {"role": "tool", "tool_call_id": call_id, "content": "print('hello')"}]
    second = client.chat.completions.create(model="gr/chat", messages=messages, tools=[READ_FILE])  # type: ignore[arg-type]
    assert second.choices[0].message.content == "The file prints hello."
    assert second.choices[0].finish_reason == "stop"
    first_seen, second_seen = fresh.received()
    assert first_seen["app"] == "open" and first_seen["history"] == []
    assert task in first_seen["message"]
    assert _texts(second_seen["history"]) == [("user", first_seen["message"]), ("assistant", CALL)]
    assert "print('hello')" in second_seen["message"] and task not in second_seen["message"]


def _first_turn(client: openai.OpenAI, messages: list[dict[str, Any]], stream: bool) -> tuple[str, str]:
    if not stream:
        first = client.chat.completions.create(model="gr/chat", messages=messages, tools=[READ_FILE])  # type: ignore[arg-type]
        [call] = first.choices[0].message.tool_calls or []
        assert first.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "read_file" and json.loads(call.function.arguments) == {"path": "src/app.py"}
        return call.id, first.choices[0].message.content or ""
    text, calls, finish = "", {}, None
    for chunk in client.chat.completions.create(model="gr/chat", messages=messages, tools=[READ_FILE],  # type: ignore[arg-type]
                                                stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for c in delta.tool_calls or []:
            entry = calls.setdefault(c.index, {"id": c.id, "name": "", "arguments": ""})
            entry["name"] += (c.function.name or "") if c.function else ""
            entry["arguments"] += (c.function.arguments or "") if c.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and text == "Reading it."
    [call] = calls.values()
    assert call["name"] == "read_file" and json.loads(call["arguments"]) == {"path": "src/app.py"}
    return str(call["id"]), text


def test_two_turns_the_app_gets_the_full_history(fresh: GradioServer, roogab: Running) -> None:
    one = '```lua\nreturn { text = [==[First answer.]==] }\n```'
    two = '```lua\nreturn { text = [==[Second answer.]==] }\n```'
    fresh.script(one, two)
    client = _client(roogab)
    messages = _messages("Say something, twice.")
    first = client.chat.completions.create(model="gr/chat", messages=messages)  # type: ignore[arg-type]
    assert first.choices[0].message.content == "First answer."
    messages += [{"role": "assistant", "content": "First answer."}, {"role": "user", "content": "Again."}]
    second = client.chat.completions.create(model="gr/chat", messages=messages)  # type: ignore[arg-type]
    assert second.choices[0].message.content == "Second answer."
    a, b = fresh.received()
    assert _texts(b["history"]) == [("user", a["message"]), ("assistant", one)]
    assert "Again." in b["message"] and "Say something" not in b["message"]


def test_an_auth_app_is_logged_into(server: GradioServer) -> None:
    server.reset()
    running = _roogab(server.locked_url, username="alice", password=PASSWORD)
    try:
        reply = _client(running).chat.completions.create(model="gr/chat", messages=_messages("Hello?"))  # type: ignore[arg-type]
        assert reply.choices[0].message.content == "Hello from Gradio."
        assert [r["app"] for r in server.received()] == ["locked"]
        assert running.providers["gr"].health().logged_in is True
    finally:
        running.close()


@pytest.mark.parametrize("password", ["not-it", ""], ids=["wrong", "none"])
def test_a_refused_login_is_clear_in_healthz(server: GradioServer, password: str) -> None:
    running = _roogab(server.locked_url, username="alice" if password else "", password=password)
    try:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(running.url + "/healthz")
        with caught.value:
            health = json.load(caught.value)["providers"]["gr"]
        assert caught.value.code == 503 and not health["ready"]
        assert ("refused the login" if password else "requires a login") in health["last_error"]
        assert PASSWORD not in json.dumps(health) and (not password or password not in json.dumps(health))
        assert _client(running).models.list().data == []  # no placeholder model
    finally:
        running.close()


def test_roogab_check_passes_against_the_app(fresh: GradioServer, tmp_path: Path) -> None:
    config = tmp_path / "roogab.toml"
    config.write_text(f'[[providers]]\nname = "gr"\nkind = "gradio"\nurl = "{fresh.open_url}"\n')
    result = subprocess.run([sys.executable, "-m", "roogab", "check", "--config", str(config)], cwd=ROOT, check=False,
                            capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                                 "GRADIO_ANALYTICS_ENABLED": "False"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "models: chat" in result.stdout and "valid envelope" in result.stdout
    assert [r["app"] for r in fresh.received()] == ["open"]


def test_killed_mid_reply_is_an_error_then_the_restarted_app_gets_the_history(fresh: GradioServer,
                                                                             roogab: Running) -> None:
    one = '```lua\nreturn { text = [==[Before the crash.]==] }\n```'
    fresh.script(one, {"reply": DONE, "delay": 0.5})  # type: ignore[arg-type]
    client = _client(roogab)
    messages = _messages("Survive a crash.")
    assert client.chat.completions.create(model="gr/chat", messages=messages).choices[0].message.content \
        == "Before the crash."  # type: ignore[arg-type]
    messages += [{"role": "assistant", "content": "Before the crash."}, {"role": "user", "content": "Go on."}]
    finishes, errors = [], []
    with client.chat.completions.create(model="gr/chat", messages=messages,  # type: ignore[arg-type]
                                        stream=True) as stream:  # closed even when it errors
        try:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].finish_reason:
                    finishes.append(chunk.choices[0].finish_reason)
                if len(fresh.received()) == 2 and fresh.process is not None:
                    fresh.kill()
        except openai.APIError as exc:
            errors.append(exc)
    assert finishes == [] and errors, "a reply cut off by a crash must not look complete"
    fresh.start()
    fresh.script("```lua\nreturn { text = [==[After the restart.]==] }\n```")
    again = client.chat.completions.create(model="gr/chat", messages=messages)  # type: ignore[arg-type]
    assert again.choices[0].message.content == "After the restart."
    last = fresh.received()[-1]
    assert ("Survive a crash." in last["message"]) or _texts(last["history"])[0][1].find("Survive") >= 0


def test_the_wire_view_has_the_page_protocols_requests_and_messages_in_order(server: GradioServer) -> None:
    from wire_frames import assert_no_secret
    server.reset()
    server.script('```lua\nreturn { text = [==[On the wire.]==] }\n```', '```lua\nreturn { text = [==[Twice.]==] }\n```')
    bearer = "sk-gradio-wire-" + "7" * 20
    config = load_config(env={}, overrides={"port": 0, "store": "memory"})
    profile = ProviderProfile(name="gr", kind="gradio", url=server.locked_url, models=(), username="alice",
                              password=PASSWORD, headers=(("Authorization", f"Bearer {bearer}"),))
    running = start(dataclasses.replace(config, providers=(profile,)))
    try:
        client = _client(running)
        messages = _messages("wire probe 3391")
        first = client.chat.completions.create(model="gr/chat", messages=messages)  # type: ignore[arg-type]
        assert first.choices[0].message.content == "On the wire."
        messages += [{"role": "assistant", "content": "On the wire."}, {"role": "user", "content": "again 3392"}]
        client.chat.completions.create(model="gr/chat", messages=messages)  # type: ignore[arg-type]
        assert [r["app"] for r in server.received()] == ["locked", "locked"]  # the app got both turns
        with urllib.request.urlopen(running.url + "/inspect/turns.json?limit=2") as r:
            second, first_turn = json.load(r)["data"]
    finally:
        running.close()
    frames = first_turn["wire"]
    names = [(f["direction"], f["kind"], f["name"]) for f in frames]
    join = ("out", "http", "POST /locked/gradio_api/queue/join")
    assert names[0] == ("out", "http", "GET /locked/config") and names.count(join) == 1
    assert "wire probe 3391" in frames[names.index(join)]["payload"]
    stream = [n[2] for n in names if n[1] == "sse"]
    assert stream[-1] == "process_completed" and "process_generating" in stream
    assert stream.index("process_starts") < stream.index("process_generating")
    assert names.index(join) < names.index(("in", "sse", "process_starts"))
    assert "On the wire." in frames[-1]["payload"] + frames[-2]["payload"]
    assert [f["ms"] for f in frames] == sorted(f["ms"] for f in frames)
    # the second turn hands the app the history first (the chatbot-sync event), then the message
    joins = [f["payload"] for f in second["wire"] if (f["direction"], f["name"]) == ("out", join[2])]
    assert len(joins) == 2 and "On the wire." in joins[0] and "again 3392" in joins[1]
    assert_no_secret(frames + second["wire"], [bearer, PASSWORD])
