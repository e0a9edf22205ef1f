"""Every reply in the corpus, through the live demo chat service, as Roo, Cline and Kilo see it.

The request is the captured client request with its tools replaced by the corpus case's tools
(permissive schemas), so the reply is judged exactly as in production: streamed over the real
socket (pieces or cumulative snapshots), parsed, validated, repaired once when needed, rendered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from support import CLINE, FIXTURES, KILO, ROO, as_demo_model, captured_bodies

from roogab.demo import DemoChatService, ScriptedReply

pytestmark = pytest.mark.loopback

CASES = sorted((FIXTURES / "replies").glob("*.json"))
CLIENTS = {"roo": (ROO, "delta", 7), "cline": (CLINE, "cumulative", 5), "kilo": (KILO, "delta", 64)}
GOOD_TEXT = '```lua\nreturn { text = [==[Recovered.]==] }\n```'


def _case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return case


def _request(client_name: str, case: dict[str, Any], name: str) -> dict[str, Any]:
    capture, _, _ = CLIENTS[client_name]
    body = as_demo_model(captured_bodies(capture)[0])
    body["messages"] = body["messages"][:2]
    body["messages"][0]["content"] += f"\n(corpus case {name})"  # each case is a task of its own
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    if case["tool_names"]:
        schema = {"type": "object", "properties": {}, "additionalProperties": True}
        body["tools"] = [{"type": "function", "function": {"name": n, "parameters": schema}}
                         for n in case["tool_names"]]
    else:
        body.pop("tools", None)
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    return body


def _expected(case: dict[str, Any]) -> tuple[str, list[tuple[str, Any]], bool]:
    """(text, calls, repaired) the agent must get for this corpus case.

    For a repaired reply, *calls* are the valid ones streamed before the problem showed: an
    agent keeps what it was sent, and the repaired reply must not send them twice.
    """
    events = case["expected"]
    end = events[-1]
    offered = set(case["tool_names"])
    calls: list[tuple[str, Any]] = []
    for e in events:
        if e["type"] == "tool_call":
            if offered and e["name"] not in offered:
                return "", calls, True
            calls.append((e["name"], e["arguments"]))
    if end["problem"] is not None and (end["envelope"] or offered):
        return "", calls, True
    text = "".join(e["text"] for e in events if e["type"] == "text")
    return text, calls, not text and not calls


def _run(client: openai.OpenAI, body: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
    text, calls = "", {}
    for chunk in client.chat.completions.create(**body):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, ["", ""])
                entry[0] += (tc.function.name or "") if tc.function else ""
                entry[1] += (tc.function.arguments or "") if tc.function else ""
    return text, [(name, json.loads(args)) for name, args in calls.values()]


@pytest.mark.parametrize("client_name", list(CLIENTS))
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_corpus_reply_reaches_the_agent(client: openai.OpenAI, demo: DemoChatService, path: Path,
                                        client_name: str) -> None:
    case = _case(path)
    _, stream, chunk = CLIENTS[client_name]
    expected_text, expected_calls, repaired = _expected(case)
    demo.push(ScriptedReply(case["reply"], stream=stream, chunk=chunk))
    if repaired:
        demo.push(ScriptedReply(GOOD_TEXT, stream=stream, chunk=chunk))
    body = _request(client_name, case, path.stem)
    if not body.get("tools") and any(e["type"] == "tool_call" for e in case["expected"]):
        pytest.skip("calls in a request without tools are rendered as XML text (tested in test_service)")
    text, calls = _run(client, body)
    prompts = [r.prompt for r in demo.received if r.prompt]
    if repaired:
        assert text.endswith("Recovered.") and calls == expected_calls
        assert len(prompts) == 2 and prompts[1].startswith("Your last reply could not be used")
        return
    assert len(prompts) == 1
    assert text == expected_text
    assert calls == expected_calls


def test_two_bad_replies_give_non_compliant_response(client: openai.OpenAI, demo: DemoChatService) -> None:
    case = _case(FIXTURES / "replies" / "hand_call_without_name.json")
    demo.push(ScriptedReply(case["reply"]), ScriptedReply(case["reply"]))
    with pytest.raises(openai.APIError) as info:
        _run(client, _request("roo", case, "two-bad-stream"))
    assert "non_compliant_response" in str(info.value.body) or "reply format" in str(info.value)
    assert len([r for r in demo.received if r.prompt]) == 2


def test_non_compliant_before_streaming_is_a_502(client: openai.OpenAI, demo: DemoChatService) -> None:
    case = _case(FIXTURES / "replies" / "hand_call_without_name.json")
    demo.push(ScriptedReply(case["reply"]), ScriptedReply(case["reply"]))
    body = _request("roo", case, "two-bad-json")
    body["stream"] = False
    body.pop("stream_options")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**body)
    assert info.value.status_code == 502
    assert info.value.body["code"] == "non_compliant_response"  # type: ignore[index]
