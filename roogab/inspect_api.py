"""Inspection: the turn log and the conversations, as JSON (the inspector page reads these).

Behind the API key when keys are configured; secrets were redacted when the log was written.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, request

from .errors import InvalidRequest
from .registry import Conversation
from .store import TurnRecord

__all__ = ["inspect", "turn_json", "conversation_json"]

inspect = Blueprint("inspect", __name__, url_prefix="/inspect")

MAX_LIMIT = 1000


@inspect.get("/turns.json")
def turns() -> dict[str, Any]:
    """The newest turns first; ``?limit=N`` (default 50), ``?conversation=ID``."""
    limit = _limit(request.args.get("limit", "50"))
    registry = current_app.extensions["roogab"].service.registry
    records = registry.store.turns(limit=limit, conversation_id=request.args.get("conversation") or None)
    return {"object": "list", "data": [turn_json(t) for t in records]}


@inspect.get("/conversations.json")
def conversations() -> dict[str, Any]:
    """Every conversation RooGab holds, most recently used first."""
    registry = current_app.extensions["roogab"].service.registry
    return {"object": "list", "data": [conversation_json(c) for c in registry.conversations()]}


def turn_json(t: TurnRecord) -> dict[str, Any]:
    """One turn of the log, its JSON fields decoded."""
    return {"id": t.id, "conversation_id": t.conversation_id, "provider": t.provider, "model": t.model,
            "started_at": t.started_at, "duration_ms": t.duration_ms, "verdict": t.verdict,
            "replayed": t.replayed, "repairs": t.repairs, "usage": json.loads(t.usage),
            "request": json.loads(t.request_summary), "provider_prompt": t.provider_prompt,
            "raw_reply": t.raw_reply, "response": json.loads(t.response), "error": t.error}


def conversation_json(c: Conversation) -> dict[str, Any]:
    """One conversation: which task, which provider conversation, how far it got."""
    return {"id": c.id, "client": c.client, "thread": c.thread, "provider": c.provider, "model": c.model,
            "handle": c.handle, "turns": c.turns, "messages_seen": len(c.transcript),
            "created": c.created, "updated": c.updated}


def _limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest("'limit' must be an integer", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_LIMIT}", param="limit")
    return limit
