"""Inspection: the turn log and the conversations, as JSON (the inspector page reads these).

Behind the API key when keys are configured; secrets were redacted when the log was written.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from .errors import InvalidRequest
from .registry import Conversation
from .store import TurnRecord

__all__ = ["conversation_json", "inspect", "split_envelope", "turn_json"]

inspect = Blueprint("inspect", __name__, url_prefix="/inspect")

MAX_LIMIT = 1000
PAGE_TURNS = 100
# Where the envelope is in a raw reply: a fenced block (``` or ~~~), an HTML code element, or a
# bare `return {` to the end. Only for showing it marked; the parser does the real work.
ENVELOPE = re.compile(r"(```|~~~)[^\n]*\n.*?(?:\n\1|\Z)|<pre[^>]*>.*?(?:</pre>|\Z)|^return\s*\{.*",
                      re.DOTALL | re.MULTILINE)
VERDICT_CLASSES = {"retry answered from the record": "retry"}


# The inspector shows what models and services wrote: never framed by another page, never
# sniffed into another type, scripts and styles only from this server (and its own inline ones).
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
}


@inspect.after_request
def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@inspect.get("")
def page() -> str:
    """The inspector page: conversations and their turns, updating live."""
    registry = current_app.extensions["roogab"].service.registry
    records = registry.turns(limit=PAGE_TURNS)
    convs = [conversation_json(c) for c in registry.conversations()]
    return render_template("inspect.html", turns=[_view(t) for t in records], conversations=convs,
                           providers=sorted({t.provider for t in records}),
                           models=sorted({t.model for t in records}))


@inspect.get("/fragment")
def fragment() -> str:
    """Turn cards newer than ``?since=<started_at>``, rendered as on the page."""
    try:
        since = float(request.args.get("since", "0"))
    except ValueError:
        raise InvalidRequest("'since' must be a number", param="since") from None
    registry = current_app.extensions["roogab"].service.registry
    newer = [t for t in registry.turns(limit=PAGE_TURNS) if t.started_at > since]
    return render_template("turns.html", turns=[_view(t) for t in newer])


@inspect.get("/turns.json")
def turns() -> dict[str, Any]:
    """The newest turns first; ``?limit=N`` (default 50), ``?conversation=ID``."""
    limit = _limit(request.args.get("limit", "50"))
    registry = current_app.extensions["roogab"].service.registry
    records = registry.turns(limit=limit, conversation_id=request.args.get("conversation") or None)
    return {"object": "list", "data": [turn_json(t) for t in records]}


@inspect.get("/conversations.json")
def conversations() -> dict[str, Any]:
    """Every conversation RooGab holds, most recently used first."""
    registry = current_app.extensions["roogab"].service.registry
    return {"object": "list", "data": [conversation_json(c) for c in registry.conversations()]}


def turn_json(t: TurnRecord) -> dict[str, Any]:
    """One turn of the log, its JSON fields decoded."""
    return {"id": t.id, "conversation_id": t.conversation_id, "provider": t.provider, "model": t.model,
            "protocol": t.protocol, "started_at": t.started_at, "duration_ms": t.duration_ms, "verdict": t.verdict,
            "replayed": t.replayed, "repairs": t.repairs, "usage": json.loads(t.usage),
            "request": json.loads(t.request_summary), "provider_prompt": t.provider_prompt,
            "raw_reply": t.raw_reply, "response": json.loads(t.response), "error": t.error,
            "retry_of": t.retry_of}


def conversation_json(c: Conversation) -> dict[str, Any]:
    """One conversation: which task, which provider conversation, how far it got."""
    return {"id": c.id, "client": c.client, "thread": c.thread, "provider": c.provider, "model": c.model,
            "handle": c.handle, "turns": c.turns, "messages_seen": len(c.transcript),
            "created": c.created, "updated": c.updated}


def split_envelope(raw: str) -> tuple[str, str, str]:
    """(before, envelope, after) of a raw reply, to show the envelope marked."""
    match = ENVELOPE.search(raw)
    if match is None:
        return raw, "", ""
    return raw[:match.start()], match.group(0), raw[match.end():]


def _view(t: TurnRecord) -> dict[str, Any]:
    view = turn_json(t)
    view["verdict_class"] = VERDICT_CLASSES.get(t.verdict, t.verdict)
    view["when"] = time.strftime("%H:%M:%S", time.localtime(t.started_at))
    view["raw_before"], view["raw_envelope"], view["raw_after"] = split_envelope(t.raw_reply)
    return view


def _limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest("'limit' must be an integer", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_LIMIT}", param="limit")
    return limit
