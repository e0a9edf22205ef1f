"""``roogab parse``: what RooGab makes of a raw reply, without any chat service. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .envelope import End, Event, Reasoning, Text, ToolCall, check_call, parse_reply
from .errors import ReplyFormatError
from .wire import ChatRequest

__all__ = ["ParseReport", "event_json", "parse_report"]


@dataclass
class ParseReport:
    """The events as JSON-ready dicts, and whether the reply would be accepted."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    compliant: bool = True


def event_json(event: Event) -> dict[str, Any]:
    """One parser event as a JSON-ready dict."""
    if isinstance(event, Text):
        return {"type": "text", "text": event.text}
    if isinstance(event, Reasoning):
        return {"type": "reasoning", "text": event.text}
    if isinstance(event, ToolCall):
        return {"type": "tool_call", "name": event.name, "arguments": event.arguments}
    return {"type": "end", "envelope": event.envelope, "problem": event.problem, "offset": event.offset}


def parse_report(reply: str, request: ChatRequest | None = None) -> ParseReport:
    """Parse *reply*; with *request*, validate its calls as a live turn would."""
    tools = request.tool_schemas() if request else {}
    events = parse_reply(reply, list(tools))
    report = ParseReport([event_json(e) for e in events])
    problems = [e.problem for e in events if isinstance(e, End) and e.problem]
    if request is None:
        report.compliant = not problems
        return report
    for call in (e for e in events if isinstance(e, ToolCall)):
        try:
            check_call(call, tools)
        except ReplyFormatError as exc:
            problems.append(str(exc))
    end = next(e for e in events if isinstance(e, End))
    if not tools and not end.envelope:
        problems = [p for p in problems if p != end.problem]  # plain prose answers a request without tools
    report.compliant = not problems
    report.lines.append({"type": "verdict", "compliant": report.compliant, "problems": problems})
    return report
