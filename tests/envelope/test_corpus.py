"""Every corpus reply gives its expected events, however it is cut or delivered.

Cases live in tests/fixtures/replies/*.json (built by make_corpus.py): ``reply``, ``tool_names``,
``expected`` (events as dicts; adjacent Text and adjacent Reasoning merged) and, for replies
rendered to HTML, ``html_code`` (the code element's text, used to build cumulative snapshots).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pytest

from roogab.envelope import End, Event, Reasoning, ReplyParser, SnapshotFeeder, Text, ToolCall, parse_reply

from .util import merge

CORPUS = Path(__file__).parents[1] / "fixtures" / "replies"
CASES = {p.stem: json.loads(p.read_text()) for p in sorted(CORPUS.glob("*.json"))}


def as_dict(event: Event) -> dict[str, Any]:
    if isinstance(event, Text):
        return {"type": "text", "text": event.text}
    if isinstance(event, Reasoning):
        return {"type": "reasoning", "text": event.text}
    if isinstance(event, ToolCall):
        return {"type": "tool_call", "name": event.name, "arguments": event.arguments}
    assert isinstance(event, End)
    return {"type": "end", "envelope": event.envelope, "problem": event.problem}


def as_dicts(events: list[Event]) -> list[dict[str, Any]]:
    assert sum(isinstance(e, End) for e in events) == 1 and isinstance(events[-1], End)
    return [as_dict(e) for e in merge(events)]


def feed_pieces(pieces: list[str], tools: list[str]) -> list[Event]:
    parser = ReplyParser(tools)
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


def test_corpus_is_there() -> None:
    assert len(CASES) > 150
    assert sum(name.startswith("qwen_") for name in CASES) == 24 * 5


@pytest.mark.parametrize("name", CASES)
def test_whole(name: str) -> None:
    case = CASES[name]
    assert as_dicts(parse_reply(case["reply"], case["tool_names"])) == case["expected"]


@pytest.mark.parametrize("name", CASES)
def test_every_split_and_char_by_char(name: str) -> None:
    case = CASES[name]
    reply, tools, expected = case["reply"], case["tool_names"], case["expected"]
    for cut in range(len(reply) + 1):
        assert as_dicts(feed_pieces([reply[:cut], reply[cut:]], tools)) == expected, f"cut at {cut}"
    assert as_dicts(feed_pieces(list(reply), tools)) == expected


@pytest.mark.parametrize("name", CASES)
def test_markdown_snapshots(name: str) -> None:
    case = CASES[name]
    reply = case["reply"]
    feeder = SnapshotFeeder(ReplyParser(case["tool_names"]))
    events: list[Event] = []
    for cut in range(1, len(reply) + 1, 3):
        events += feeder.feed_snapshot(reply[:cut])
    events += feeder.feed_snapshot(reply[: len(reply) // 2])  # a stale snapshot arriving late
    events += feeder.feed_snapshot(reply)
    assert as_dicts([*events, *feeder.close()]) == case["expected"]


HTML_CASES = [name for name, case in CASES.items() if "html_code" in case]


@pytest.mark.parametrize("name", HTML_CASES)
def test_html_snapshots_with_changing_closing_tags(name: str) -> None:
    case = CASES[name]
    code = case["html_code"]
    feeder = SnapshotFeeder(ReplyParser(case["tool_names"]))
    events: list[Event] = []
    for cut in range(0, len(code) + 1, 2):
        events += feeder.feed_snapshot(f'<pre><code class="language-lua">{html.escape(code[:cut])}</code></pre>')
    events += feeder.feed_snapshot(case["reply"])
    assert as_dicts([*events, *feeder.close()]) == case["expected"]
