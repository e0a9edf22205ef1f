"""Reading an Open WebUI reply from its page events (sans-IO: dicts in, provider events out).

The page's Socket.IO ``events`` carry ``{chat_id, message_id, data: {type, data}}``. Observed
from Open WebUI 0.12.4: the text streams as ``response:completion`` events whose data is a
Responses-style delta (``{type: "response.output_text.delta", item_id, output_index,
content_index, delta}``; ``response.reasoning_text.delta`` is not the answer and is skipped);
``chat:completion`` events carry the raw model chunks (ignored), snapshots of the whole output so
far (``{output: [items]}`` or ``{content}``), and the end (``{done: true, output, title}``, with
``content`` in some versions). ``chat:message:error`` is a failure, and so is a completion event
with any ``error``: Open WebUI forwards the backend's own value, a dict or a plain string, and may
still send ``done`` after it. ``chat:tasks:cancel`` means the server stopped the task.

Without a socket session, the answer to the POST is the reply itself, an OpenAI-style SSE stream
(``ReplyText.sse`` reads its payloads): it is whole only once ``[DONE]`` came, and an ``error``
payload (Open WebUI's own "Chat completion stream failed", before its ``[DONE]``) or a
``finish_reason`` of ``length`` means the reply was cut.

``ReplyText`` turns those into the turn's events the way the Chainlit reply does: ``Delta``
while the text only grows, ``Snapshot`` from the first rewrite on, ``Done`` with the final text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .base import Delta, Done, ProviderEvent, Snapshot

__all__ = ["Failure", "ReplyText", "output_text"]

TEXT_DELTA = "response.output_text.delta"
COMPLETION = ("chat:completion", "response:completion")


@dataclass(frozen=True)
class Failure:
    """The page reported an error for this message (``message``), or the server cancelled it."""

    message: str
    cancelled: bool = False
    cut: bool = False  # the reply's stream ended before its end: the connection, not the page, failed


@dataclass(eq=False)
class ReplyText:
    """One assistant message being assembled from its page events."""

    told: str = ""
    snapshots: bool = False
    done: bool = False
    _parts: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The reply so far."""
        return "".join(self._parts)

    def feed(self, event_type: str, data: object) -> list[ProviderEvent | Failure]:
        """What one page event means for the turn (nothing, once the reply is done)."""
        if self.done or not isinstance(data, dict):
            return []
        if event_type == "chat:message:error":
            self.done = True
            return [Failure(_error_text(data))]
        if event_type == "chat:tasks:cancel":
            self.done = True
            return [Failure("the server cancelled the reply", cancelled=True)]
        if event_type not in COMPLETION:
            return []
        return self._completion(data)

    def sse(self, payload: str) -> list[ProviderEvent | Failure]:
        """One ``data:`` payload of an SSE answer (the fallback path)."""
        if self.done:
            return []
        if payload == "[DONE]":
            self.done = True
            return [Done(self.text())]
        chunk = _json_object(payload)
        if chunk.get("error"):
            self.done = True
            return [Failure(_error_text(chunk))]
        choice = _first_choice(chunk)
        delta = choice.get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        events = self._grow(self.text() + content) if isinstance(content, str) and content else []
        if choice.get("finish_reason") == "length":
            self.done = True
            events.append(Failure("the model stopped at its length limit, so the reply is cut"))
        return events

    def finish(self) -> list[ProviderEvent | Failure]:
        """The SSE answer's stream closed: nothing if its end came, else the reply is cut."""
        if self.done:
            return []
        self.done = True
        return [Failure("the answer stream ended before its [DONE]", cut=True)]

    def _completion(self, data: dict[str, Any]) -> list[ProviderEvent | Failure]:
        if data.get("error"):
            self.done = True
            return [Failure(_error_text(data))]
        events: list[ProviderEvent | Failure] = []
        if data.get("type") == TEXT_DELTA and isinstance(data.get("delta"), str):
            events += self._grow(self.text() + data["delta"])
        elif isinstance(data.get("output"), list):
            events += self._grow(output_text(data["output"]))
        elif isinstance(data.get("content"), str):
            events += self._grow(data["content"])
        if data.get("done") is True:
            self.done = True
            final = data["content"] if isinstance(data.get("content"), str) else self.text()
            events += self._grow(final)
            events.append(Done(self.text()))
        return events

    def _grow(self, whole: str) -> list[ProviderEvent | Failure]:
        """The reply now reads *whole*: a Delta when it extends what the turn was told."""
        if whole == self.told and self._parts:
            return []
        self._parts = [whole]
        if whole == self.told:
            return []
        if not self.snapshots and whole.startswith(self.told):
            piece, self.told = whole[len(self.told):], whole
            return [Delta(piece)]
        self.snapshots, self.told = True, whole
        return [Snapshot(whole)]


def output_text(items: Iterable[object]) -> str:
    """The answer text of a Responses-style output list: its ``message`` items' ``output_text``
    parts (reasoning and tool items are not the answer)."""
    texts: list[str] = []
    for item in items:
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            continue
        for part in item.get("content") or ():
            if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return "".join(texts)


def _json_object(payload: str) -> dict[str, Any]:
    """*payload* decoded, when it is a JSON object ({} otherwise: not a chunk)."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the decoder goes
        return {}
    return value if isinstance(value, dict) else {}


def _first_choice(chunk: dict[str, Any]) -> dict[str, Any]:
    choices = chunk.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    return first if isinstance(first, dict) else {}


def _error_text(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        content = error.get("content") or error.get("message") or error.get("detail")
        return str(content) if content else "no details"
    return str(error or "no details")
