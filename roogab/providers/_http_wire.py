"""The wire view of the HTTP kinds (Open WebUI, Gradio): requests, answers and SSE events noted on
a turn's wire as frames, with one naming for every kind. Pure: a ``Turn`` records, nothing more.

A request is ``out``/``http`` named ``METHOD /path`` with its headers and JSON body; its answer is
``in``/``http`` with the same name, the status and the body; each event of an SSE answer is
``in``/``sse``. Values of secret headers and fields are never shown (``base.shown``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from .base import Turn

__all__ = ["HTTP", "SSE", "answer", "decoded", "event", "request"]

HTTP = "http"
SSE = "sse"


def request(turn: Turn | None, method: str, path: str, headers: Mapping[str, str] | Iterable[tuple[str, str]],
            body: object) -> None:
    """Note a request the provider sends for *turn* (nothing when it is for no turn)."""
    if turn is not None:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        turn.frame("out", HTTP, f"{method} {path}", {"headers": dict(pairs), "body": body})


def answer(turn: Turn | None, method: str, path: str, status: int, content_type: str, body: object) -> None:
    """Note the answer to a request of *turn*."""
    if turn is not None:
        turn.frame("in", HTTP, f"{method} {path}", {"status": status, "content_type": content_type, "body": body})


def event(turn: Turn | None, name: str, data: object) -> None:
    """Note one event of an SSE answer."""
    if turn is not None:
        turn.frame("in", SSE, name, data)


def decoded(text: str) -> object:
    """A body as JSON when it is JSON (shown as a structure, its strings cut one by one), else the text."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text
