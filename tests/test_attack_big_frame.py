"""A single service frame over 4 MB (aiohttp's default limit) does not drop the provider (issue 13, Low).

The demo service sends a 5 MB reply as one Socket.IO event; the agent gets all of it, and the
next turn on the same connection still works.
"""

from __future__ import annotations

import uuid

import openai
import pytest

from roogab.demo import DemoChatService, ScriptedReply

pytestmark = pytest.mark.loopback


def test_a_five_megabyte_frame_is_received_whole(demo: DemoChatService, client: openai.OpenAI) -> None:
    text = "0123456789abcdef" * (5 * 1024 * 1024 // 16)
    demo.push(ScriptedReply(f"```lua\nreturn {{ text = [==[{text}]==] }}\n```", chunk=6_000_000),
              ScriptedReply("```lua\nreturn { text = [==[still here]==] }\n```"))
    big = client.chat.completions.create(model="demo/gab-1",
                                         messages=[{"role": "user", "content": f"big {uuid.uuid4().hex}"}])
    assert big.choices[0].message.content == text and big.choices[0].finish_reason == "stop"
    after = client.chat.completions.create(model="demo/gab-1",
                                           messages=[{"role": "user", "content": f"after {uuid.uuid4().hex}"}])
    assert after.choices[0].message.content == "still here"
