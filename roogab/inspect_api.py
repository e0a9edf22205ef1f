"""Inspection: the turn log, the running turns and the conversations, as pages and JSON.

Behind the API key when keys are configured (a browser signs in at ``/inspect/signin``); secrets
were redacted when the log was written, and are redacted from running turns as they are read.
``?conversation=ID`` (or ``/inspect/conversations/ID``) shows one conversation as a timeline,
``?q=WORD`` searches the turns' text.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from . import inspect_auth
from .errors import InvalidRequest
from .inspect_views import (
    bundle,
    conversation_json,
    conversation_rows,
    frame_json,
    live_json,
    matches,
    turn_json,
    view,
)
from .service import ChatService

__all__ = ["inspect"]

inspect = Blueprint("inspect", __name__, url_prefix="/inspect")

MAX_LIMIT = 1000
PAGE_TURNS = 100
SINCE_MARGIN = 5.0
"""Seconds the live poll looks back before the server time of the previous poll: a turn that ends
between reading the board and reading the log is then caught by the next poll."""


# The inspector shows what models and services wrote: never framed by another page, never
# sniffed into another type, scripts and styles only from this server (and its own inline ones).
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes a browser send `Origin: null` on its own forms
}


@inspect.after_request
def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@inspect.get("")
def page() -> str:
    """The inspector page: conversations and their turns, updating live; ``?conversation=ID``
    for one conversation as a timeline (oldest first), ``?q=`` to search."""
    return _page(request.args.get("conversation") or None)


@inspect.get("/conversations/<conversation_id>")
def conversation(conversation_id: str) -> str:
    """One conversation's turns, as a timeline."""
    return _page(conversation_id)


def _page(conversation_id: str | None) -> str:
    service = _service()
    query = request.args.get("q", "").strip()
    found = _turns(PAGE_TURNS, conversation_id, query)
    every = found if conversation_id or query else _turns(MAX_LIMIT, None, "")
    rows = conversation_rows(service.registry.conversations(), every)
    if conversation_id:
        rows = [r for r in rows if r["id"] == conversation_id]
        found.reverse()
    return render_template("inspect.html", turns=[view(t) for t in found], conversations=rows,
                           conversation_id=conversation_id, query=query, now=time.time(),
                           providers=sorted({t["provider"] for t in found}),
                           models=sorted({t["model"] for t in found}))


@inspect.get("/fragment")
def fragment() -> Response:
    """Running turns, and turns ended after ``?since=<server time>``, rendered as on the page
    (``?conversation=`` and ``?q=`` as on the page). ``x-roogab-now`` is the next ``since``."""
    try:
        since = float(request.args.get("since", "0")) - SINCE_MARGIN
    except ValueError:
        raise InvalidRequest("'since' must be a number", param="since") from None
    now = time.time()
    found = _turns(PAGE_TURNS, request.args.get("conversation") or None, request.args.get("q", "").strip())
    fresh = [t for t in found if t["verdict"] == "running" or t["started_at"] + t["duration_ms"] / 1000 > since]
    html = render_template("turns.html", turns=[view(t) for t in fresh])
    return Response(html, mimetype="text/html", headers={"x-roogab-now": repr(now)})


@inspect.get("/turns.json")
def turns() -> dict[str, Any]:
    """Running turns, then the newest logged ones; ``?limit=N`` (default 50), ``?conversation=ID``,
    ``?q=WORD``."""
    limit = _limit(request.args.get("limit", "50"))
    found = _turns(limit, request.args.get("conversation") or None, request.args.get("q", "").strip())
    return {"object": "list", "data": found}


@inspect.get("/turns/<turn_id>.json")
def turn_bundle(turn_id: str) -> Response:
    """One turn as a download: request, raw reply, verdict (``roogab parse --request`` reads it)."""
    turn = next((t for t in _turns(MAX_LIMIT, None, "") if t["id"] == turn_id), None)
    if turn is None:
        abort(404)
    body = json.dumps(bundle(turn), indent=2, ensure_ascii=False)
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="roogab-turn-{turn_id[:12]}.json"'})


@inspect.route("/signin", methods=["GET", "POST"])
def signin() -> BaseResponse | tuple[str, int]:
    """A form for one of the API keys; sets the inspector's HttpOnly, SameSite=Strict cookie."""
    config = current_app.extensions["roogab"].config
    target = request.values.get("next", "")
    if not target.startswith("/inspect") or target.startswith("/inspect/signin"):
        target = url_for("inspect.page")
    if request.method == "GET":
        return render_template("signin.html", target=target, problem=None, keyed=bool(config.api_keys)), 200
    key = request.form.get("key", "")
    matches = [hmac.compare_digest(key.encode(), k.encode()) for k in config.api_keys]
    if config.api_keys and not any(matches):
        return render_template("signin.html", target=target, problem="That is not one of the configured keys.",
                               keyed=True), 401
    response = redirect(target, code=303)
    if config.api_keys:
        response.set_cookie(inspect_auth.COOKIE, inspect_auth.token(key), httponly=True, samesite="Strict",
                            secure=request.is_secure, path="/inspect")
    return response


@inspect.get("/conversations.json")
def conversations() -> dict[str, Any]:
    """Every conversation RooGab holds, most recently used first."""
    return {"object": "list", "data": [conversation_json(c) for c in _service().registry.conversations()]}


def _service() -> ChatService:
    service: ChatService = current_app.extensions["roogab"].service
    return service


def _turns(limit: int, conversation_id: str | None, query: str) -> list[dict[str, Any]]:
    """Running turns first (newest first), then logged ones, up to *limit* in all; with *query*,
    only those whose text has it (searching the newest ``MAX_LIMIT`` logged turns)."""
    service, now = _service(), time.time()
    running = [live_json(t, now) for t in service.live.running(conversation_id)]
    logged = service.registry.turns(limit=MAX_LIMIT if query else limit, conversation_id=conversation_id)
    ids = {t["id"] for t in running}
    found = running + [turn_json(t) for t in logged if t.id not in ids]
    if query:
        found = [t for t in found if matches(t, query)]
    for turn in found[:limit]:
        turn["wire"] = [frame_json(f, turn["started_at"]) for f in service.live.wire(turn["id"])]
        turn["agent_wire"] = [frame_json(f, turn["started_at"]) for f in service.live.agent_wire(turn["id"])]
    return found[:limit]


def _limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest("'limit' must be an integer", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_LIMIT}", param="limit")
    return limit


from . import inspect_try  # noqa: F401  (registers /inspect/try on this blueprint)
