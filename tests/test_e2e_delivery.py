"""The four wrong-call cases seen in issue 10, through `roogab demo` and the official openai SDK.

1. HTML snapshots re-render their past (an open code block closed after its partial last line):
   the calls arrive exactly. 2. XML tags inside content are never calls. 3. Fence lines inside a
   value on an HTML page: exact, or repaired with the problem named. 4. A repair cannot take back
   calls already streamed: streaming and non-streaming agents end with the same calls.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from roogab.demo import DemoChatService, ScriptedReply

pytestmark = pytest.mark.loopback

WRITE = {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
         "required": ["path", "content"]}
READ = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


def _body(task: str, stream: bool = True) -> dict[str, Any]:
    return {"model": "demo/gab-1", "stream": stream,
            "messages": [{"role": "system", "content": "You are a coding agent."},
                         {"role": "user", "content": task}],
            "tools": [{"type": "function", "function": {"name": "write_to_file", "parameters": WRITE}},
                      {"type": "function", "function": {"name": "read_file", "parameters": READ}}]}


def _calls(client: openai.OpenAI, body: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
    if not body["stream"]:
        message = client.chat.completions.create(**body).choices[0].message
        return message.content or "", [(c.function.name, json.loads(c.function.arguments))
                                       for c in message.tool_calls or []]
    text, calls = "", {}
    for chunk in client.chat.completions.create(**body):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, ["", ""])
                entry[0] += (tc.function.name or "") if tc.function else ""
                entry[1] += (tc.function.arguments or "") if tc.function else ""
    return text, [(name, json.loads(args)) for name, args in calls.values()]


def _prompts(demo: DemoChatService) -> list[str]:
    return [r.prompt for r in demo.received if r.prompt]


TRICKY = ('Reading it.\n\n```lua\nreturn {\n  text = [==[See inline `code` & <tags>.]==],\n  tool_calls = {\n'
          '    { name = "read_file", arguments = { path = "x.ts" } },\n'
          '    { name = "write_to_file", arguments = { path = "src/a.ts", content = [==[function f() {\n'
          '  return {\n\ta: "*b*" && 1 < 2,   \n  };\n}\n]==] } },\n  },\n}\n```\n')


@pytest.mark.parametrize("chunk", [3, 7, 100, 100_000])
def test_html_snapshots_that_rerender_their_past_give_exact_calls(
        client: openai.OpenAI, demo: DemoChatService, chunk: int) -> None:
    demo.push(ScriptedReply(TRICKY, format="html", stream="cumulative", chunk=chunk))
    text, calls = _calls(client, _body(f"html snapshots {chunk}"))
    assert len(_prompts(demo)) == 1
    assert calls == [("read_file", {"path": "x.ts"}),
                     ("write_to_file", {"path": "src/a.ts",
                                        "content": 'function f() {\n  return {\n\ta: "*b*" && 1 < 2,   \n  };\n}\n'})]
    assert text == "See inline `code` & <tags>."


GOOD = '```lua\nreturn { text = [==[Fixed.]==] }\n```'


def test_xml_tags_inside_content_are_never_calls(client: openai.OpenAI, demo: DemoChatService) -> None:
    garbled = ('```lua\nreturn { tool_calls = { { name = "write_to_file", arguments = { path = "meant.txt", '
               'content = [==[\n<write_to_file>\n<path>evil.txt</path>\n<content>x</content>\n'
               '</write_to_file>\n]==] } }, {{ oops\n```')
    demo.push(ScriptedReply(garbled), ScriptedReply(GOOD))
    text, calls = _calls(client, _body("garbled envelope with xml inside"))
    assert all(args.get("path") != "evil.txt" for _, args in calls)
    assert text.endswith("Fixed.") and len(_prompts(demo)) == 2  # repaired, never mined
    demo.reset()
    example = ('```lua\nreturn { text = [==[Call it like this:\n```xml\n<read_file>\n<path>a.py</path>\n'
               '</read_file>\n```\n]==] }\n```')
    demo.push(ScriptedReply(example))
    text, calls = _calls(client, _body("xml example in text"))
    assert calls == [] and "<read_file>" in text and len(_prompts(demo)) == 1


README = "# Title\n\n```sh\nnpm i\n```\n\nThen *run* it:\n\n```\nnpm test\n```\n"


def test_fence_lines_inside_a_value_survive_html_or_are_repaired(
        client: openai.OpenAI, demo: DemoChatService) -> None:
    def reply(fence: str) -> str:
        return (f'{fence}lua\nreturn {{ tool_calls = {{ {{ name = "write_to_file", arguments = {{ '
                f'path = "README.md", content = [==[{README}]==] }} }} }} }}\n{fence}\n')

    demo.push(ScriptedReply(reply("```"), format="html", stream="cumulative", chunk=9),
              ScriptedReply(reply("````"), format="html", stream="cumulative", chunk=9))
    _, calls = _calls(client, _body("readme with fences"))
    prompts = _prompts(demo)
    assert len(prompts) == 2 and "fence line" in prompts[1]  # repaired, the problem named
    assert calls == [("write_to_file", {"path": "README.md", "content": README})]
    demo.reset()
    demo.push(ScriptedReply(reply("````"), format="html", stream="cumulative", chunk=9))
    _, calls = _calls(client, _body("readme with fences, longer fence"))
    assert calls == [("write_to_file", {"path": "README.md", "content": README})]
    assert len(_prompts(demo)) == 1


FIRST = ('```lua\nreturn { tool_calls = {\n'
         '  { name = "write_to_file", arguments = { path = "a.txt", content = [==[one]==] } },\n'
         '  { name = "write_to_file", arguments = { path = "b.txt" } },\n} }\n```')
SECOND = ('```lua\nreturn { tool_calls = {\n'
          '  { name = "write_to_file", arguments = { path = "a.txt", content = [==[rewritten]==] } },\n'
          '  { name = "write_to_file", arguments = { path = "b.txt", content = [==[two]==] } },\n} }\n```')


@pytest.mark.parametrize("stream", [True, False])
def test_a_repair_cannot_take_back_streamed_calls(client: openai.OpenAI, demo: DemoChatService,
                                                  stream: bool) -> None:
    demo.push(ScriptedReply(FIRST), ScriptedReply(SECOND))
    _, calls = _calls(client, _body(f"repair after an accepted call {stream}", stream=stream))
    assert calls == [("write_to_file", {"path": "a.txt", "content": "one"}),
                     ("write_to_file", {"path": "b.txt", "content": "two"})]
    prompts = _prompts(demo)
    assert len(prompts) == 2 and "already accepted" in prompts[1] and "a.txt" in prompts[1]
