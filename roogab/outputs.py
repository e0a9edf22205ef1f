"""What a turn yields to the API: the items of one coherent answer, and their JSON form.

The JSON form is what the registry records as a turn's reply (a retried request is answered
from it, with the same call ids) and what the turn log shows as "what the agent got".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .envelope.events import ToolCall
from .wire import Usage

__all__ = ["Answer", "CallOut", "Finished", "FromRecord", "Out", "Ping", "ReasoningOut", "TextOut", "from_json", "to_json"]


@dataclass(frozen=True)
class Ping:
    """Nothing new yet; the API sends a keep-alive comment."""


@dataclass(frozen=True)
class TextOut:
    """Text for the agent (``delta.content``)."""

    text: str


@dataclass(frozen=True)
class ReasoningOut:
    """Reasoning for the agent (``delta.reasoning_content``)."""

    text: str


@dataclass(frozen=True)
class CallOut:
    """A validated tool call with its index in this turn and the id RooGab gave it."""

    index: int
    id: str
    call: ToolCall


@dataclass(frozen=True)
class Finished:
    """The turn is complete."""

    finish_reason: str
    usage: Usage


@dataclass(frozen=True)
class FromRecord:
    """First item of an answer sent again from the record (a retried request): the id of the
    turn it repeats. Renderers show nothing for it; the API says so in a response header."""

    turn_id: str


Out = Ping | TextOut | ReasoningOut | CallOut | Finished | FromRecord


@dataclass(frozen=True)
class Answer:
    """A whole turn's items gathered: what a non-streaming renderer shows."""

    text: str
    reasoning: str
    calls: tuple[CallOut, ...]
    finished: Finished
    retry_of: str | None = None

    @classmethod
    def collect(cls, items: Iterable[Out]) -> Answer:
        """Gather a turn's items in the order they came."""
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[CallOut] = []
        finished = Finished("stop", Usage(0, 0))
        retry_of = None
        for item in items:
            if isinstance(item, FromRecord):
                retry_of = item.turn_id
            elif isinstance(item, TextOut):
                texts.append(item.text)
            elif isinstance(item, ReasoningOut):
                reasoning.append(item.text)
            elif isinstance(item, CallOut):
                calls.append(item)
            elif isinstance(item, Finished):
                finished = item
        return cls("".join(texts), "".join(reasoning), tuple(calls), finished, retry_of)


def to_json(items: Iterable[Out]) -> str:
    """One answer's items as JSON: text, reasoning, calls, finish reason and usage."""
    reply: dict[str, Any] = {"text": "", "reasoning": "", "calls": [], "finish_reason": "stop",
                             "usage": [0, 0]}
    for item in items:
        if isinstance(item, TextOut):
            reply["text"] += item.text
        elif isinstance(item, ReasoningOut):
            reply["reasoning"] += item.text
        elif isinstance(item, CallOut):
            reply["calls"].append({"id": item.id, "name": item.call.name, "arguments": item.call.arguments})
        elif isinstance(item, Finished):
            reply["finish_reason"] = item.finish_reason
            reply["usage"] = [item.usage.prompt_tokens, item.usage.completion_tokens]
    return json.dumps(reply, ensure_ascii=False)


def from_json(text: str) -> list[Out]:
    """The items ``to_json`` recorded, in the order an agent reads them."""
    reply = json.loads(text)
    items: list[Out] = []
    if reply["reasoning"]:
        items.append(ReasoningOut(reply["reasoning"]))
    if reply["text"]:
        items.append(TextOut(reply["text"]))
    items += [CallOut(i, c["id"], ToolCall(c["name"], c["arguments"])) for i, c in enumerate(reply["calls"])]
    items.append(Finished(reply["finish_reason"], Usage(*reply["usage"])))
    return items
