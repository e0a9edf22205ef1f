"""Reading Anthropic SSE text back into events, for the Messages tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CAPTURED = Path(__file__).parent.parent / "fixtures" / "captured"


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` for every frame; a frame without an ``event:`` line is an error."""
    out = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"], frame
        out.append((lines["event"], data))
    return out


def capture(name: str) -> dict[str, Any]:
    """A captured Claude Code session."""
    data: dict[str, Any] = json.loads((CAPTURED / f"claude_code_2.1.332_{name}.json").read_text("utf-8"))
    return data


def bodies(name: str) -> list[dict[str, Any]]:
    """The POST bodies of a captured session, ``$same_as_seq`` resolved."""
    by_seq: dict[int, dict[str, Any]] = {}
    out = []
    for r in capture(name)["requests"]:
        body = r.get("body")
        if not isinstance(body, dict):
            continue
        if "$same_as_seq" in body:
            body = by_seq[body["$same_as_seq"]]
        by_seq[r["seq"]] = body
        out.append(body)
    return out


def accepted_replies(name: str) -> list[str]:
    """The SSE text of every streamed reply Claude Code accepted in a captured session."""
    replies = []
    for r in capture(name)["requests"]:
        reply = r.get("reply") or {}
        if reply.get("status") != 200:
            continue
        if "file" in reply:
            replies.append((CAPTURED / Path(reply["file"]).name).read_text("utf-8"))
        elif "sse" in reply:
            replies.append(reply["sse"])
    return replies
