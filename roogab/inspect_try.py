"""The inspector's "try it" page: one chat turn typed in the browser, sent through this RooGab's
own turn engine exactly as an agent's would be (the chat service gets the envelope prompt, the
turn shows in the inspector), and the answer shown with a link to the turn's card.

Behind the API keys like the rest of the inspector (a browser signs in first). The routes hang on
the inspector blueprint; ``inspect_api`` imports this module to register them.
"""

from __future__ import annotations

from flask import current_app, render_template, request, url_for

from .errors import RooGabError
from .inspect_api import inspect
from .live import TurnNote
from .probe import PROBE
from .wire import parse_chat_request

__all__ = ["try_it"]

MAX_MESSAGE = 20_000
"""Characters the form takes (a probe, not a task)."""


@inspect.route("/try", methods=["GET", "POST"])
def try_it() -> tuple[str, int]:
    """The form; on POST, one turn with the message typed, and what came back."""
    service = current_app.extensions["roogab"].service
    models = [model for model, _ in service.models()]
    model = request.form.get("model") or (models[0] if models else "")
    message = request.form.get("message", PROBE)[:MAX_MESSAGE]
    page = {"models": models, "model": model, "message": message, "answer": None, "error": None, "note": None}
    if request.method == "GET":
        return render_template("try.html", **page), 200
    note = TurnNote()
    turn = parse_chat_request({"model": model, "messages": [{"role": "user", "content": message}]})
    try:
        page["answer"] = service.complete(turn, "inspector-try:" + (request.remote_addr or "?"), note)
    except RooGabError as exc:
        page["error"] = str(exc)
    page["note"] = note
    page["turn_url"] = url_for("inspect.page", q=note.turn_id) + f"#turn-{note.turn_id}" if note.turn_id else None
    return render_template("try.html", **page), 200 if page["error"] is None else 502
