"""/v1/responses against the live demo stack, with the official ``openai`` SDK as the client.

Captured Codex 0.171.0 requests are sent as they were (model and conversation key changed); the
demo chat service answers with scripted envelopes; the SDK's own stream accumulation and response
parsing must produce exactly the meant text, reasoning and tool calls. Faults: a chat service
dropped mid-reply ends the stream with ``response.failed`` (Codex retries on it) and never with a
partial or unfinished tool call.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import httpx
import openai
import pytest

from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import Running

from .test_responses_wire import FALLBACK, GPT55, codex_requests, sse_events

pytestmark = pytest.mark.loopback

MODEL = "demo/gab-1"
PATCH = ("*** Begin Patch\n*** Add File: hello.txt\n+`ticks` \"q\" 'q' \\ ]] ]==] </content> héllo 🚀\n"
         "+```\n*** End Patch\n")


def body_of(name: str, turn: int = 0, key: str | None = None) -> dict[str, Any]:
    """A captured Codex request addressed to the demo model, with a conversation key of its own."""
    body = copy.deepcopy(codex_requests(name)[turn]["body"])
    body["model"] = MODEL
    body["prompt_cache_key"] = key or uuid.uuid4().hex
    return body


def sdk_args(body: dict[str, Any]) -> dict[str, Any]:
    args = {k: body[k] for k in ("model", "input", "tools", "tool_choice", "parallel_tool_calls", "store",
                                 "include", "prompt_cache_key") if k in body}
    return args


def last_prompt(demo: DemoChatService) -> str:
    """The last prompt the demo chat service received: proof the turn reached it."""
    return [r.prompt for r in demo.received if r.prompt][-1]


def lua_call(name: str, **arguments: str) -> str:
    inner = ", ".join(f"{k} = [===[{v}]===]" for k, v in arguments.items())
    return f'{{ name = "{name}", arguments = {{ {inner} }} }}'


def envelope(text: str = "", *calls: str, reasoning: str = "") -> str:
    parts = ["```lua", "return {"]
    if reasoning:
        parts.append(f"  reasoning = [===[{reasoning}]===],")
    if text:
        parts.append(f"  text = [===[{text}]===],")
    if calls:
        parts.append("  tool_calls = {\n" + "".join(f"    {c},\n" for c in calls) + "  },")
    return "\n".join(parts + ["}", "```"])


def test_sdk_stream_accumulates_reasoning_text_and_a_function_call(client: openai.OpenAI,
                                                                    demo: DemoChatService) -> None:
    body = body_of(FALLBACK)
    demo.push(ScriptedReply(envelope("Reading the README.", lua_call("exec_command", cmd="cat README.md"),
                                     reasoning="Look at the README first."), chunk=7))
    with client.responses.stream(**sdk_args(body)) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.done" in kinds and "response.reasoning_summary_text.delta" in kinds
    reasoning, message, call = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Look at the README first."
    assert message.type == "message" and message.content[0].text == "Reading the README."  # type: ignore[union-attr]
    assert call.type == "function_call" and call.name == "exec_command"
    assert json.loads(call.arguments) == {"cmd": "cat README.md"}
    assert call.call_id.startswith("call_") and final.output_text == "Reading the README."
    assert final.usage is not None and final.usage.input_tokens > 1000  # Codex's 40 KB turn 1
    assert final.id.startswith("resp_") and final.status == "completed"
    assert "exec_command" in last_prompt(demo)


def test_sdk_custom_freeform_apply_patch_and_two_calls(client: openai.OpenAI, demo: DemoChatService) -> None:
    body = body_of(GPT55)
    demo.push(ScriptedReply(envelope("", lua_call("apply_patch", input=PATCH),
                                     lua_call("exec_command", cmd="wc -c hello.txt")), chunk=5))
    with client.responses.stream(**sdk_args(body)) as stream:
        deltas = [e.delta for e in stream if e.type == "response.custom_tool_call_input.delta"]
        final = stream.get_final_response()
    patch, shell = final.output
    assert patch.type == "custom_tool_call" and patch.name == "apply_patch" and patch.input == PATCH
    assert "".join(deltas) == PATCH
    assert shell.type == "function_call" and json.loads(shell.arguments) == {"cmd": "wc -c hello.txt"}
    assert patch.call_id != shell.call_id
    prompt = last_prompt(demo)
    assert "apply_patch" in prompt and "begin_patch hunk+ end_patch" in prompt
    assert "web_search" in prompt.split("## Examples")[0]  # named as unavailable, not offered


def test_sdk_create_non_streaming_then_the_next_turn_continues(client: openai.OpenAI, stack: Running,
                                                                demo: DemoChatService) -> None:
    body = body_of(FALLBACK)
    body.pop("stream", None)
    demo.push(ScriptedReply(envelope("Reading.", lua_call("exec_command", cmd="cat README.md"))))
    first = client.responses.create(**sdk_args(body))
    assert first.status == "completed" and first.output_text == "Reading."
    call = first.output[-1]
    assert call.type == "function_call" and json.loads(call.arguments) == {"cmd": "cat README.md"}
    # Turn 2, as Codex sends it: the whole history, our items echoed, the command's output.
    echoed = [item.model_dump(exclude_none=True) for item in first.output]
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "# Capture workspace\n"}
    demo.push(ScriptedReply(envelope("It is a capture workspace.")))
    second = client.responses.create(**{**sdk_args(body), "input": body["input"] + echoed + [output]})
    assert second.output_text == "It is a capture workspace."
    prompts = [r.prompt or "" for r in demo.received if r.prompt]
    assert len(prompts) == 2 and "# Capture workspace" in prompts[1]
    assert "You are a coding agent" not in prompts[1]  # a continuation: only the new messages were sent
    turns = stack.app.extensions["roogab"].service.registry.turns(limit=2)
    assert turns[0].conversation_id == turns[1].conversation_id and not turns[0].replayed


def test_compaction_turn_without_tools_then_the_restarted_history(client: openai.OpenAI, stack: Running,
                                                                  demo: DemoChatService) -> None:
    """Codex's compaction request (``tools: []``) continues the conversation with a text answer;
    the request after it (a new, shorter history) diverges and is replayed, not refused."""
    key = uuid.uuid4().hex
    requests = codex_requests("codex_0.171.0_compaction")
    demo.push(ScriptedReply(envelope("Reading.", lua_call("exec_command", cmd="cat README.md"))))
    demo.push(ScriptedReply(envelope("## Summary\nRead the README; hello.txt is next.")))
    demo.push(ScriptedReply(envelope("Writing hello.txt now.")))
    outs = []
    for n in range(3):
        body = body_of("codex_0.171.0_compaction", n, key)
        if n == 1:  # the compaction turn echoes turn 1's items: ours, not the capture's
            first_items = [i.model_dump(exclude_none=True) for i in outs[0].output]
            call_id = outs[0].output[-1].call_id
            history = requests[1]["body"]["input"]
            tail = [{**i, "call_id": call_id} if i.get("type") == "function_call_output" else i
                    for i in history[len(requests[0]["body"]["input"]):] if i.get("role") != "assistant"
                    and i.get("type") != "function_call"]
            body["input"] = requests[0]["body"]["input"] + first_items + tail
        outs.append(client.responses.create(**sdk_args(body)))
    assert [o.status for o in outs] == ["completed"] * 3
    assert outs[1].output_text.startswith("## Summary") and outs[2].output_text == "Writing hello.txt now."
    turns = stack.app.extensions["roogab"].service.registry.turns(limit=3)[::-1]
    assert [t.verdict for t in turns] == ["ok"] * 3
    assert turns[0].conversation_id == turns[1].conversation_id and not turns[1].replayed
    assert turns[2].conversation_id != turns[1].conversation_id


def test_previous_response_id_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, input="hi", previous_response_id="resp_unknown")
    assert "previous_response_id" in str(info.value) and "store: false" in str(info.value)
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == "previous_response_id"


def test_unknown_model_is_a_404_in_openai_shape(stack: Running) -> None:
    reply = httpx.post(stack.url + "/responses", json={"model": "nope", "input": "hi"})
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "model_not_found"


def _turn_events(stack: Running, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """(status, stream events, error body) of one streaming turn sent as raw HTTP."""
    with httpx.stream("POST", stack.url + "/v1/responses", json=body, timeout=60) as reply:
        raw = reply.read().decode()
    if reply.status_code != 200:
        return reply.status_code, [], json.loads(raw)
    return 200, sse_events(raw), {}


@pytest.mark.parametrize("drop_after", [0, 2, 9, 14], ids=["at-once", "in-text", "in-call", "late-call"])
def test_service_dropped_mid_reply_fails_without_a_partial_call(stack: Running, demo: DemoChatService,
                                                                 drop_after: int) -> None:
    """Either a retryable 5xx before the stream began, or ``response.failed`` inside it (Codex
    retries both); never ``response.completed``, and no call that is not whole and final."""
    text = envelope("Starting.", lua_call("exec_command", cmd="printf 'one two three four five'"),
                    lua_call("exec_command", cmd="ls -la /workspace/and/a/long/path"))
    demo.push(ScriptedReply(text, chunk=12, drop_after=drop_after))
    status, events, error = _turn_events(stack, {**body_of(FALLBACK), "stream": True})
    assert any(r.prompt for r in demo.received)  # the turn reached the chat service
    if status != 200:
        assert status in (502, 503, 504) and error["error"]["code"] == "provider_disconnected"
        return
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    added = [e for e in events if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"]
    calls = [e["item"] for e in events if e["type"] == "response.output_item.done"
             and e["item"]["type"] == "function_call"]
    assert len(added) == len(calls) <= 1  # a call is delivered whole (added and done at once) or not at all
    for call in calls:
        assert json.loads(call["arguments"]) == {"cmd": "printf 'one two three four five'"}
    texts = [e["item"]["content"][0]["text"] for e in events
             if e["type"] == "response.output_item.done" and e["item"]["type"] == "message"]
    assert texts in ([], ["Starting."])  # a text item is done only once it is whole


def test_status_page_prints_the_codex_settings(stack: Running) -> None:
    text = httpx.get(stack.url + "/", headers={"Accept": "text/plain"}).text
    assert 'wire_api = "responses"' in text and f'base_url = "{stack.url}/v1"' in text
    assert f'model = "{MODEL}"' in text


def test_inspector_shows_the_protocol_of_each_turn(client: openai.OpenAI, stack: Running,
                                                    demo: DemoChatService) -> None:
    demo.push(ScriptedReply(envelope("Seen in the inspector.")))
    response = client.responses.create(model=MODEL, input=f"inspect me {uuid.uuid4().hex}")
    assert response.output_text == "Seen in the inspector."
    [turn] = httpx.get(stack.url + "/inspect/turns.json?limit=1").json()["data"]
    assert turn["protocol"] == "responses" and turn["request"]["protocol"] == "responses"
    page = httpx.get(stack.url + "/inspect").text
    assert '<span class="protocol">responses</span>' in page
