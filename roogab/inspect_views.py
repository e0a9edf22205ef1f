"""What the inspector shows of a turn: JSON, card views, search, the download bundle. Pure.

A logged turn is a ``TurnRecord``; a running one is a ``LiveTurn`` of the live board. Both become
the same JSON (a running turn has ``"verdict": "running"`` and its reply so far) and the same card.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any

from .live import LiveTurn
from .providers.base import Frame
from .registry import Conversation
from .store import TurnRecord
from .turnlog import SEPARATOR, request_body

__all__ = ["bundle", "conversation_json", "conversation_rows", "frame_json", "live_json", "matches", "split_envelope",
           "turn_json", "view"]

# Where the envelope is in a raw reply: a fenced block (``` or ~~~), an HTML code element, or a
# bare `return {` to the end. Only for showing it marked; the parser does the real work.
ENVELOPE = re.compile(r"(```|~~~)[^\n]*\n.*?(?:\n\1|\Z)|<pre[^>]*>.*?(?:</pre>|\Z)|^return\s*\{.*",
                      re.DOTALL | re.MULTILINE)
VERDICT_CLASSES = {"retry answered from the record": "retry"}
EMPTY_RESPONSE = {"text": "", "reasoning": "", "calls": []}


def turn_json(t: TurnRecord) -> dict[str, Any]:
    """One turn of the log, its JSON fields decoded."""
    return {"id": t.id, "conversation_id": t.conversation_id, "provider": t.provider, "model": t.model,
            "protocol": t.protocol, "started_at": t.started_at, "duration_ms": t.duration_ms, "verdict": t.verdict,
            "replayed": t.replayed, "repairs": t.repairs, "usage": json.loads(t.usage),
            "request": json.loads(t.request_summary), "provider_prompt": t.provider_prompt,
            "raw_reply": t.raw_reply, "response": json.loads(t.response), "error": t.error,
            "retry_of": t.retry_of}


def live_json(t: LiveTurn, now: float) -> dict[str, Any]:
    """A running turn, shaped as a logged one: ``"verdict": "running"``, the reply so far."""
    return {"id": t.id, "conversation_id": t.conversation_id, "provider": t.provider, "model": t.model,
            "protocol": t.protocol, "started_at": t.started_at,
            "duration_ms": max(0, int((now - t.started_at) * 1000)), "verdict": "running",
            "replayed": False, "repairs": max(0, len(t.prompts) - 1), "usage": None,
            "request": json.loads(t.request_summary), "provider_prompt": SEPARATOR.join(t.prompts),
            "raw_reply": SEPARATOR.join(t.raws), "response": dict(EMPTY_RESPONSE), "error": None}


def conversation_json(c: Conversation) -> dict[str, Any]:
    """One conversation: which task, which provider conversation, how far it got."""
    return {"id": c.id, "client": c.client, "thread": c.thread, "provider": c.provider, "model": c.model,
            "handle": c.handle, "turns": c.turns, "messages_seen": len(c.transcript),
            "created": c.created, "updated": c.updated}


def conversation_rows(convs: Iterable[Conversation], turns: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversations table: every held conversation, and those only the turn log still knows
    (a conversation whose last turn failed is dropped, never continued), with the logged and
    running turns of each; most recent first."""
    rows = {c.id: {**conversation_json(c), "state": "open", "logged": 0, "running": 0} for c in convs}
    for t in turns:
        row = rows.setdefault(t["conversation_id"], {
            "id": t["conversation_id"], "provider": t["provider"], "model": t["model"], "handle": None,
            "turns": 0, "messages_seen": len(t["request"].get("messages", [])), "updated": t["started_at"],
            "state": "ended (its last turn failed)" if t["verdict"] in ("failed", "non_compliant") else "ended",
            "logged": 0, "running": 0})
        row["running" if t["verdict"] == "running" else "logged"] += 1
        row["updated"] = max(row["updated"], t["started_at"])
    return sorted(rows.values(), key=lambda r: r["updated"], reverse=True)


def matches(turn: dict[str, Any], query: str) -> bool:
    """True when the turn's text (what was asked, sent, replied, answered, failed) has *query*
    (case-insensitive), or an id of the turn is *query*."""
    needle = query.casefold()
    if needle in (turn["id"], turn["conversation_id"]):
        return True
    texts = [m.get("content", "") for m in turn["request"].get("messages", [])]
    texts += [turn["provider_prompt"], turn["raw_reply"], turn["error"] or "", json.dumps(turn["response"])]
    return any(needle in text.casefold() for text in texts)


def frame_json(frame: Frame, started_at: float) -> dict[str, Any]:
    """One wire frame: milliseconds into the turn, direction, kind, event name, payload (JSON)."""
    return {"ms": max(0, int((frame.at - started_at) * 1000)), "direction": frame.direction,
            "kind": frame.kind, "name": frame.name, "payload": str(frame.payload)}


def view(turn: dict[str, Any]) -> dict[str, Any]:
    """A turn's JSON with what its card shows: verdict class, date and time, envelope split."""
    out = dict(turn)
    out["verdict_class"] = VERDICT_CLASSES.get(turn["verdict"], turn["verdict"])
    out["when"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(turn["started_at"]))
    out["iso"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(turn["started_at"]))
    out["from_record"] = turn.get("retry_of") or turn["request"].get("from_record")
    # Error messages quote the reply with repr(): show its newlines as newlines.
    out["error_text"] = (turn["error"] or "").replace("\\n", "\n")
    out["raw_before"], out["raw_envelope"], out["raw_after"] = split_envelope(turn["raw_reply"])
    return out


def split_envelope(raw: str) -> tuple[str, str, str]:
    """(before, envelope, after) of a raw reply, to show the envelope marked."""
    match = ENVELOPE.search(raw)
    if match is None:
        return raw, "", ""
    return raw[:match.start()], match.group(0), raw[match.end():]


def bundle(turn: dict[str, Any]) -> dict[str, Any]:
    """One turn to download: the request (as a chat-completions body, the shape `roogab parse
    --request` reads, long contents cut as the log keeps them), the raw reply, the verdict, the
    error and what the agent got. ``roogab parse --request BUNDLE`` takes it as it is."""
    return {"roogab_turn": turn["id"], "conversation_id": turn["conversation_id"], "protocol": turn["protocol"],
            "provider": turn["provider"], "model": turn["model"], "started_at": turn["started_at"],
            "requests": [{"body": request_body(turn["request"])}],
            "provider_prompt": turn["provider_prompt"], "raw_reply": turn["raw_reply"],
            "verdict": turn["verdict"], "error": turn["error"], "response": turn["response"]}
