"""End to end with the official openai SDK: a long Roo session's later turns are decoded from the
client's previous body (roogab/body_prefix.py): each takes over every history element of the turn
before it, and the answers and what the chat service receives are as without it."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from support import ROO, as_demo_model, captured_bodies

from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import Running

pytestmark = pytest.mark.loopback

TURNS = 8


def _reply(i: int) -> str:
    return ('```lua\nreturn {\n  text = [==[Listing.]==],\n  tool_calls = {\n'
            f'    {{ name = "list_files", arguments = {{ path = "src/p{i}" }} }},\n  }},\n}}\n```')


def test_later_turns_take_over_the_whole_previous_history(stack: Running, client: openai.OpenAI,
                                                          demo: DemoChatService) -> None:
    bodies = stack.app.extensions["roogab"].bodies
    body: dict[str, Any] = as_demo_model(captured_bodies(ROO)[0])
    body["stream"] = False
    body.pop("stream_options", None)
    body["messages"][1]["content"][0]["text"] += f" (body prefix test {time.time_ns()})"
    taken_over = []
    for i in range(TURNS):
        demo.push(ScriptedReply(_reply(i)))
        reused = bodies.reused
        message = client.chat.completions.create(**body).choices[0].message
        taken_over.append(bodies.reused - reused)
        [call] = message.tool_calls or []
        assert call.function.name == "list_files" and json.loads(call.function.arguments)["path"] == f"src/p{i}"
        sent = len(body["messages"])
        body["messages"] = body["messages"] + [
            {"role": "assistant", "content": message.content,
             "tool_calls": [{"id": call.id, "type": "function",
                             "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": f"files of src/p{i}: a.py b.py"},
        ]
        if i:
            assert taken_over[-1] == sent - 2, taken_over  # all of the previous turn's history
    assert taken_over[0] <= 1  # at most the system prompt other tests sent too
    prompts = [r.prompt for r in demo.received if r.prompt]
    assert len(prompts) == TURNS  # every turn reached the chat service
    assert all(f"files of src/p{i - 1}" in prompts[i] and len(prompts[i]) < 1500 for i in range(1, TURNS))
