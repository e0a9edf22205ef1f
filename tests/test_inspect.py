"""The inspection API: the turn log and the conversations, behind the key when keys are set."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from roogab.config import load_config
from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import Running, start_demo

pytestmark = pytest.mark.loopback

COOKIE = "sessionid-9f8e7d6c5b4a"


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
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key="k3y-for-tests", max_retries=0)
    client.chat.completions.create(model="demo/gab-1", messages=[
        {"role": "user", "content": f"Cookie: session={COOKIE}\nmy key is k3y-for-tests"}])
    status, body = _get(keyed.url + "/inspect/turns.json", "k3y-for-tests")
    text = json.dumps(body)
    assert status == 200 and body["data"]
    assert "k3y-for-tests" not in text and COOKIE not in text and "[redacted]" in text
