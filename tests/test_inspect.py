"""The inspection API: the turn log and the conversations, behind the key when keys are set."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from support import no_keepalive

from roogab.config import load_config
from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import Running, start_demo

pytestmark = pytest.mark.loopback

COOKIE = "sessionid-9f8e7d6c5b4a"
ROOT = Path(__file__).resolve().parent.parent


def _get(url: str, key: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_turns_newest_first_with_the_exact_prompt(stack: Running, demo: DemoChatService,
                                                  client: openai.OpenAI) -> None:
    for word in ("first", "second"):
        demo.push(ScriptedReply(f'```lua\nreturn {{ text = [==[{word}]==] }}\n```'))
        client.chat.completions.create(model="demo/gab-1", messages=[
            {"role": "user", "content": f"inspect me {word}"}])
    status, body = _get(stack.url + "/inspect/turns.json?limit=2")
    assert status == 200
    newest, older = body["data"]
    assert "inspect me second" in newest["provider_prompt"] and "inspect me first" in older["provider_prompt"]
    assert newest["raw_reply"].startswith("```lua") and newest["verdict"] == "ok"
    assert newest["response"]["text"] == "second" and newest["usage"]["completion_tokens"] > 0
    assert {"conversation_id", "replayed", "started_at", "duration_ms"} <= set(newest)
    status, convs = _get(stack.url + "/inspect/conversations.json")
    assert status == 200 and newest["conversation_id"] in {c["id"] for c in convs["data"]}


def test_bad_limit_is_a_400(stack: Running) -> None:
    status, body = _get(stack.url + "/inspect/turns.json?limit=abc")
    assert status == 400 and body["error"]["param"] == "limit"


@pytest.fixture(scope="module")
def keyed() -> Iterator[Running]:
    config = load_config(env={"ROOGAB_API_KEYS": "k3y-for-tests"}, overrides={"port": 0, "store": "memory"})
    running = start_demo(dataclasses.replace(config))
    yield running
    running.close()


def test_inspection_needs_the_key(keyed: Running) -> None:
    assert _get(keyed.url + "/inspect/turns.json")[0] == 401
    assert _get(keyed.url + "/inspect/conversations.json", "wrong")[0] == 401
    assert _get(keyed.url + "/inspect/turns.json", "k3y-for-tests")[0] == 200
    assert _get(keyed.url + "/healthz")[0] == 200


def test_secrets_never_reach_the_turn_log(keyed: Running) -> None:
    assert keyed.demo is not None
    keyed.demo.push(ScriptedReply('```lua\nreturn { text = [==[your key is k3y-for-tests]==] }\n```'))
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key="k3y-for-tests", max_retries=0, http_client=no_keepalive())
    client.chat.completions.create(model="demo/gab-1", messages=[
        {"role": "user", "content": f"Cookie: session={COOKIE}\nmy key is k3y-for-tests"}])
    status, body = _get(keyed.url + "/inspect/turns.json", "k3y-for-tests")
    text = json.dumps(body)
    assert status == 200 and body["data"]
    assert "k3y-for-tests" not in text and COOKIE not in text and "[redacted]" in text


# -- truthful cards, navigation, the download bundle, running turns ---------------------------

READ_FILE = {"type": "function", "function": {"name": "read_file", "description": "Read a file.",
             "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                            "required": ["path"]}}}


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.loads(exc.read())


def _html(url: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


def _turn(stack: Running, turn_id: str) -> dict[str, Any]:
    body = _get(stack.url + "/inspect/turns.json?limit=1000")[1]
    return next(t for t in body["data"] if t["id"] == turn_id)


def test_a_card_names_the_local_model_and_a_retry_names_the_turn_it_repeats(
        stack: Running, demo: DemoChatService) -> None:
    demo.push(ScriptedReply('```lua\nreturn { text = [==[recorded answer]==] }\n```'))
    body = {"model": "demo/gab-1", "messages": [{"role": "user", "content": "retry-record probe 7731"}]}
    status, first, _ = _post(stack.url + "/v1/chat/completions", body)
    assert status == 200 and "x-roogab-from-record" not in first
    status, again, answer = _post(stack.url + "/v1/chat/completions", body)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "recorded answer"
    assert again["x-roogab-from-record"] == first["x-roogab-turn"]
    original, retry = _turn(stack, first["x-roogab-turn"]), _turn(stack, again["x-roogab-turn"])
    assert (original["provider"], original["model"]) == ("demo", "gab-1")
    assert retry["verdict"] == "retry answered from the record" and retry["request"]["from_record"] == original["id"]
    assert [r.prompt is not None for r in demo.received].count(True) == 1  # the chat service was asked once
    page = _html(stack.url + "/inspect?q=7731")
    assert "demo/gab-1" in page and "demo/demo/gab-1" not in page
    assert "Answered from the retry record" in page and f"#turn-{original['id']}" in page


def test_a_failed_turn_shows_its_error_and_its_conversation(stack: Running, demo: DemoChatService) -> None:
    demo.push(ScriptedReply(error="the model is overloaded\nplease retry"))
    body = {"model": "demo/gab-1", "messages": [{"role": "user", "content": "failing probe 5512"}]}
    status, headers, error = _post(stack.url + "/v1/chat/completions", body)
    assert status >= 500 and error["error"]["message"]
    turn = _turn(stack, headers["x-roogab-turn"])
    assert turn["verdict"] == "failed" and "overloaded" in turn["error"]
    assert turn["conversation_id"] not in {c["id"] for c in _get(stack.url + "/inspect/conversations.json")[1]["data"]}
    page = _html(stack.url + f"/inspect/conversations/{turn['conversation_id']}")
    assert f'href="/inspect/conversations/{turn["conversation_id"]}"' in page  # the table lists it
    assert "ended (its last turn failed)" in page and 'class="got-error"' in page
    assert "\\n" not in page.split('class="got-error"')[1].split("</pre>")[0]


def test_healthz_times_are_iso(stack: Running) -> None:
    status, body = _get(stack.url + "/healthz")
    since = body["providers"]["demo"]["since"]
    assert status == 200 and since.endswith("Z") and since[4] == "-" and "T" in since


def test_the_downloaded_turn_replays_offline_through_roogab_parse(stack: Running, demo: DemoChatService,
                                                                  tmp_path: Path) -> None:
    demo.push(ScriptedReply('```lua\nreturn { tool_calls = { { name = "read_file", '
                            'arguments = { path = "a.txt" } } } }\n```'))
    body = {"model": "demo/gab-1", "tools": [READ_FILE],
            "messages": [{"role": "user", "content": "bundle probe: read a.txt"}]}
    status, headers, answer = _post(stack.url + "/v1/chat/completions", body)
    assert status == 200 and answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "read_file"
    url = stack.url + f"/inspect/turns/{headers['x-roogab-turn']}.json"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert "attachment" in response.headers["Content-Disposition"]
        saved = tmp_path / "turn.json"
        saved.write_bytes(response.read())
    bundle = json.loads(saved.read_text())
    assert bundle["requests"][0]["body"]["tools"] == [READ_FILE] and bundle["verdict"] == "ok"
    result = subprocess.run([sys.executable, "-m", "roogab", "parse", "--request", str(saved)],
                            check=False, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, result.stderr
    assert {"type": "tool_call", "name": "read_file", "arguments": {"path": "a.txt"}} in lines
    assert lines[-1] == {"type": "verdict", "compliant": True, "problems": []}


def test_a_running_turn_is_listed_with_its_reply_so_far(stack: Running, demo: DemoChatService) -> None:
    reply = '```lua\nreturn { text = [==[' + "slowly streamed words " * 6 + ']==] }\n```'
    demo.push(ScriptedReply(reply, chunk=6, delay_ms=120))
    body = {"model": "demo/gab-1", "messages": [{"role": "user", "content": "running probe kwzv9044"}]}
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(_post(stack.url + "/v1/chat/completions", body)[0]))
    worker.start()
    seen: list[int] = []
    try:
        while not done and len(set(seen)) < 2:
            running = [t for t in _get(stack.url + "/inspect/turns.json?q=kwzv9044")[1]["data"]
                       if t["verdict"] == "running"]
            if running and running[0]["raw_reply"]:
                assert "running probe kwzv9044" in running[0]["provider_prompt"]
                assert reply.startswith(running[0]["raw_reply"])
                seen.append(len(running[0]["raw_reply"]))
    finally:
        worker.join()
    assert done == [200] and len(set(seen)) >= 2 and seen == sorted(seen)  # it grew while streaming
    ended = _get(stack.url + "/inspect/turns.json?q=kwzv9044")[1]["data"]
    assert [t["verdict"] for t in ended] == ["ok"] and ended[0]["raw_reply"] == reply


def test_the_wire_view_lists_the_demos_socketio_events_in_order(stack: Running, demo: DemoChatService) -> None:
    demo.push(ScriptedReply('```lua\nreturn { text = [==[over the wire]==] }\n```', chunk=10))
    body = {"model": "demo/gab-1", "messages": [{"role": "user", "content": "wire probe 6620"}]}
    status, headers, _ = _post(stack.url + "/v1/chat/completions", body)
    assert status == 200
    wire = _turn(stack, headers["x-roogab-turn"])["wire"]
    ev = stack.providers["demo"].profile.events  # type: ignore[attr-defined]
    names = [(f["direction"], f["name"]) for f in wire]
    assert names[:3] == [("out", ev.create), ("in", ev.created), ("out", ev.subscribe)]
    assert names[-1] == ("in", ev.end) and {n for n in names[3:-1]} == {("in", ev.delta)}
    assert "wire probe 6620" in wire[0]["payload"] and all(f["kind"] == "socket.io" for f in wire)
    assert [f["ms"] for f in wire] == sorted(f["ms"] for f in wire)
    page = _html(stack.url + "/inspect?q=6620")
    assert 'class="frame-name">' + ev.delta in page


def test_the_stream_to_the_agent_is_listed_in_order(stack: Running, demo: DemoChatService) -> None:
    demo.push(ScriptedReply('```lua\nreturn { text = [==[streamed to you]==] }\n```', chunk=6))
    body = {"model": "demo/gab-1", "stream": True,
            "messages": [{"role": "user", "content": "agent stream probe 3307"}]}
    request = urllib.request.Request(stack.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        turn_id, sent = response.headers["x-roogab-turn"], response.read().decode()
    frames = _turn(stack, turn_id)["agent_wire"]
    assert "".join(f["payload"] for f in frames) == sent
    assert frames[-1]["payload"].strip() == "data: [DONE]" and all(f["kind"] == "sse" for f in frames)
