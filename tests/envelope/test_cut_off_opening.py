"""A reply cut off where its envelope opens is never a complete answer (issue 13, item 1).

Without tools a reply with no envelope is plain prose and a fine answer; a reply that visibly
opened an envelope and never closed it is not, with or without tools: ``End`` carries a problem
and says an envelope was found. Every case is fed whole and split at every position.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from roogab.envelope import End, ReplyParser, SnapshotFeeder, parse_reply

CUT_OFF = [
    "```lua\nreturn {\n  text",
    "```lua\nreturn {\n  text ",
    "```lua\nreturn {",
    "```lua\nret",
    "```lua\n",
    "```lua",
    "```lu",
    "```",
    "Sure, here it is:\n```lua\nreturn {\n  text",
    "print([====",
    "print(\"",
    '```json\n{"text"',
    '{"tool_calls"',
    "```lua return { te",
    '<pre><code class="language-lua">return {',
    '<pre><code class="language-lua">ret',
    '<pre><code class="language-lua">',
    '<pre><code class="langu',
    "<p>Here:</p><pre><code>return { text = [==[half",
    '```lua\nreturn { text = "a" }\n```\n```lua\nreturn { tool_c',
    "```lua\nret\n```",
]

PROSE = [
    "Just an answer.",
    "Use this:\n```python\nprint('hi')\n```",
    "A JSON example:\n```json\n{\n  \"name\": 1\n}\n```\nDone.",
    "Code:\n```\nx = 1\n```",
    "<p>Hello <b>there</b></p>",
    "<p>Code:</p><pre><code class=\"language-python\">print(1)</code></pre>",
    "The word return alone.\nreturn to sender",
]


def _end(events: list[object]) -> End:
    end = events[-1]
    assert isinstance(end, End)
    return end


@pytest.mark.parametrize("reply", CUT_OFF)
def test_cut_off_opening_is_an_envelope_with_a_problem(reply: str) -> None:
    for tools in ((), ("read_file",)):
        end = _end(parse_reply(reply, tools))
        assert end.envelope and end.problem is not None and "cut off" in end.problem, (reply, end)


@pytest.mark.parametrize("reply", CUT_OFF)
def test_cut_off_opening_split_anywhere(reply: str) -> None:
    for cut in range(len(reply) + 1):
        parser = ReplyParser()
        end = _end([*parser.feed(reply[:cut]), *parser.feed(reply[cut:]), *parser.close()])
        assert end.envelope and end.problem is not None, (reply, cut)


@pytest.mark.parametrize("reply", [r for r in CUT_OFF if r.startswith("<")])
def test_cut_off_html_snapshots(reply: str) -> None:
    parser = ReplyParser()
    feeder = SnapshotFeeder(parser)
    events: list[object] = []
    for cut in range(1, len(reply) + 1):
        events += feeder.feed_snapshot(reply[:cut])
    end = _end([*events, *feeder.close()])
    assert end.envelope and end.problem is not None


@pytest.mark.parametrize("reply", PROSE)
def test_prose_without_tools_stays_a_fine_answer(reply: str) -> None:
    end = _end(parse_reply(reply))
    assert end.problem is None or not end.envelope, (reply, end)


def test_no_fixture_prefix_passes_as_complete() -> None:
    """Every strict prefix of every compliant fixture reply (bench/attack_truncations.py)."""
    script = Path(__file__).resolve().parents[2] / "bench" / "attack_truncations.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True,
                          cwd=script.parents[1], env={"PYTHONPATH": str(script.parents[1])})
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["truncations_passed_as_complete"] == 0
