"""Through RooGab with the openai SDK, against a real Chainlit app (tests/fixtures/chainlit_app):
login, chat profiles as models, tool calls, sessions across turns, a killed and restarted server.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

if importlib.util.find_spec("chainlit") is None:  # importing chainlit would write .chainlit/ here
    pytest.skip("chainlit is not installed", allow_module_level=True)

from chainlit_server import PASSWORD, ChainlitServer, new_server
from support import no_keepalive

from roogab.config import ProviderProfile, load_config
from roogab.runtime import Running, start

pytestmark = [pytest.mark.loopback, pytest.mark.slow]

FACTS = re.compile(r"profile=(?P<profile>[^;]*); messages=(?P<messages>\d+)")
READ_FILE = {"type": "function", "function": {"name": "read_file", "description": "Read a file.",
             "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                            "required": ["path"]}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainlitServer]:
    s = new_server(tmp_path_factory.mktemp("chainlit-e2e"))
    s.start()
    yield s
    s.stop()


def _roogab(server: ChainlitServer, password: str = PASSWORD, **settings: Any) -> Running:
    env = {"TEAM_PASSWORD": password}
    config = load_config(env=env, overrides={"port": 0, "store": "memory", **settings})
    profile = ProviderProfile(name="team", kind="chainlit", url=server.url, models=(), username="alice",
                              password=password)
    return start(dataclasses.replace(config, providers=(profile,)))


@pytest.fixture(scope="module")
def roogab(server: ChainlitServer) -> Iterator[Running]:
    running = _roogab(server)
    yield running
    running.close()


def _client(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0, http_client=no_keepalive())


def _task(text: str, tools: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "team/Fast Lane", "messages": [
        {"role": "system", "content": "You are a test agent."}, {"role": "user", "content": text}]}
    if tools:
        body["tools"] = [READ_FILE]
    return body


def test_chat_profiles_are_the_models(roogab: Running) -> None:
    assert [m.id for m in _client(roogab).models.list()] == ["team/Fast Lane", "team/Deep Thought"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_call_round_trip(roogab: Running, stream: bool) -> None:
    client = _client(roogab)
    body = _task(f"ROOGAB-TOOL read the readme ({'stream' if stream else 'json'})")
    if not stream:
        [call] = client.chat.completions.create(**body).choices[0].message.tool_calls or []
        name, arguments = call.function.name, call.function.arguments
    else:
        name, arguments = "", ""
        for chunk in client.chat.completions.create(**body, stream=True):
            for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                name += tc.function.name or "" if tc.function else ""
                arguments += tc.function.arguments or "" if tc.function else ""
    assert name == "read_file" and json.loads(arguments) == {"path": "README.md"}


def test_two_turn_task_stays_on_one_session(roogab: Running) -> None:
    client = _client(roogab)
    first = _task("ROOGAB-TOOL two turns, please")
    message = client.chat.completions.create(**first).choices[0].message
    [call] = message.tool_calls or []
    second = dict(first, messages=first["messages"] + [
        {"role": "assistant", "content": message.content,
         "tool_calls": [{"id": call.id, "type": "function",
                         "function": {"name": "read_file", "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "# README\nhello"}])
    answer = client.chat.completions.create(**second).choices[0].message.content or ""
    facts = FACTS.search(answer)
    assert facts and facts["messages"] == "2"  # the app saw both messages in one session


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_reply_the_app_rewrites_shorter_is_never_passed_on_as_the_long_draft(roogab: Running,
                                                                               stream: bool) -> None:
    """The app streams a draft, then rewrites the message shorter: the agent never gets the draft
    as the answer. Text already passed on cannot be taken back, so the reply is repaired (the
    app saw the repair request: its second message)."""
    body = _task("ROOGAB-SHORTEN answer briefly", tools=False)
    client = _client(roogab)
    if stream:
        answer = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**body, stream=True)
                         if c.choices)
    else:
        answer = client.chat.completions.create(**body).choices[0].message.content or ""
    facts = FACTS.search(answer)
    assert facts and facts["messages"] == "2", answer  # the repair reached the app
    assert stream or "LONG first draft" not in answer


@pytest.mark.parametrize("profile", ["Fast Lane", "Deep Thought"])
def test_choosing_a_model_reaches_that_profile(roogab: Running, profile: str) -> None:
    body = _task(f"which profile? ({profile})", tools=False)
    body["model"] = f"team/{profile}"
    answer = _client(roogab).chat.completions.create(**body).choices[0].message.content or ""
    facts = FACTS.search(answer)
    assert facts and facts["profile"] == profile


def test_wrong_password_is_clear_at_start_and_in_healthz(server: ChainlitServer) -> None:
    running = _roogab(server, password="not-the-password")
    try:
        with urllib.request.urlopen(running.url + "/healthz", timeout=5) as response:
            raise AssertionError(f"healthz answered {response.status}")
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
        assert exc.code == 503
        error = body["providers"]["team"]["last_error"]
        assert "refused" in error and "alice" in error and "not-the-password" not in error
    finally:
        running.close()


def test_killed_mid_reply_is_an_error_then_replay_after_restart(tmp_path: Path) -> None:
    own = new_server(tmp_path)
    own.start()
    running = _roogab(own, first_token_timeout=20, silence_timeout=10)
    try:
        with _client(running) as client:
            first = _task("hello before the crash", tools=False)
            message = client.chat.completions.create(**first).choices[0].message
            second = dict(first, messages=first["messages"] + [
                {"role": "assistant", "content": message.content}, {"role": "user", "content": "ROOGAB-SLOW go on"}])
            text, error = "", None
            with client.chat.completions.create(**second, stream=True) as stream:  # closed even when it errors
                try:
                    for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            text += chunk.choices[0].delta.content
                            if len(text) > 20 and own.process is not None:
                                own.kill()
                except openai.APIError as exc:
                    error = exc
            assert error is not None, f"a cut-off reply was presented as complete: {text[-80:]!r}"
            own.start()
            third = dict(second, messages=second["messages"][:-1] + [{"role": "user", "content": "after restart"}])
            answer = client.chat.completions.create(**third).choices[0].message.content or ""
            assert "after restart" in answer  # a fresh session, the task replayed onto it
    finally:
        running.close()
        own.kill()


def test_the_wire_view_has_the_turns_socket_events_in_order(server: ChainlitServer, roogab: Running) -> None:
    """The inspector's wire view of a Chainlit turn: the message out, then the app's events in
    the order they came, the prompt in the first, the password and the session cookie in none."""
    answer = _client(roogab).chat.completions.create(**_task("wire probe 6607", tools=False))
    assert "wire probe 6607" in (answer.choices[0].message.content or "")  # the app got the turn
    with urllib.request.urlopen(roogab.url + "/inspect/turns.json?limit=1") as r:
        [turn] = json.load(r)["data"]
    frames = turn["wire"]
    names = [(f["direction"], f["name"]) for f in frames]
    assert names[0] == ("out", "client_message") and "wire probe 6607" in str(frames[0]["payload"])
    incoming = [name for direction, name in names[1:] if direction == "in"]
    assert incoming[0] == "task_start" and incoming[-1] == "task_end"
    assert incoming.index("stream_start") < incoming.index("stream_token")
    for frame in frames:
        assert PASSWORD not in str(frame["payload"])
