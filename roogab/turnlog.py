"""The turn log entry for one turn: what the agent sent, what the chat service got and said.

Pure: builds a ``TurnRecord``; the store redacts secrets when it writes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .store import TurnRecord
from .wire import ChatRequest, Usage

__all__ = ["turn_record", "SEPARATOR"]

SEPARATOR = "\n\n===== next message of this turn =====\n\n"
CONTENT_LIMIT = 4000


def request_summary(request: ChatRequest, client: str) -> str:
    """The agent's request, its long contents cut short: enough to see what was asked."""
    messages = [{"role": m.role, "content": _cut(m.content), "images": m.images,
                 "tool_calls": [c.name for c in m.tool_calls], "tool_call_id": m.tool_call_id}
                for m in request.messages]
    return json.dumps({"client": client, "model": request.model, "stream": request.stream,
                       "tools": [t.name for t in request.tools], "messages": messages}, ensure_ascii=False)


def turn_record(*, turn_id: str, conversation_id: str, provider: str, request: ChatRequest, client: str,
                started_at: float, duration_ms: int, prompts: Sequence[str], raws: Sequence[str],
                verdict: str, replayed: bool, repairs: int, usage: Usage | None, response: str,
                error: str | None) -> TurnRecord:
    """One turn as the log keeps it."""
    used = json.dumps(usage.as_dict() if usage else None)
    return TurnRecord(turn_id, conversation_id, provider, request.model, started_at, duration_ms,
                      request_summary(request, client), SEPARATOR.join(prompts), SEPARATOR.join(raws),
                      verdict, replayed, repairs, used, response, error)


def _cut(text: str) -> str:
    if len(text) <= CONTENT_LIMIT:
        return text
    return text[:CONTENT_LIMIT] + f"\n[... {len(text) - CONTENT_LIMIT} more characters]"
