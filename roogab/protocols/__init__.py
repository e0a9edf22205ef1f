"""Wire protocols in front (design.md §9): what an agent speaks, translated both ways. Pure.

Each module does exactly two things: parse its request body into the protocol-neutral
``ChatRequest`` (roogab/wire.py), and render the turn's ``Out`` items (roogab/outputs.py) into its
own stream, JSON and error shapes. The turn engine knows no protocol. Adding a protocol is one
module with a class satisfying ``WireProtocol`` and one row in ``PROTOCOLS``; the API serves
every row through one view, under ``/v1`` and without it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import RooGabError
from ..outputs import Answer, Out
from ..wire import ChatRequest, Message
from .chat import ChatCompletions
from .messages import AnthropicMessages
from .responses import Responses

__all__ = ["PROTOCOLS", "Exchange", "WireProtocol", "protocol_for"]


@dataclass(frozen=True)
class Exchange:
    """What a renderer needs about the turn besides its items: the response id, the model id
    as the client asked for it, and the creation time (epoch seconds)."""

    id: str
    model: str
    created: int


class WireProtocol(Protocol):
    """One wire protocol: a request parser and the renderers of its answers and errors."""

    name: str
    history: str
    """The body's history array (``messages``, ``input``): the body cache keeps its elements."""
    one_message_per_element: bool
    """Each element of the history parses to one message, in order (``parse`` takes *known*)."""

    def new_id(self) -> str:
        """A fresh response id in the protocol's own form (``chatcmpl-…``, ``msg_…``)."""
        ...

    def parse(self, body: object, headers: Mapping[str, str], known: tuple[Message, ...] = ()) -> ChatRequest:
        """The neutral request, or ``RequestError`` naming the field. *headers* have lower-case
        names (affinity keys such as ``x-claude-code-session-id`` come from there). *known*: the
        messages the first history elements were validated to before (only when
        ``one_message_per_element``); the result is the same with or without them."""
        ...

    def stream(self, items: Iterator[Out], request: ChatRequest, exchange: Exchange) -> Iterator[str]:
        """SSE text for *items*; an error after the first byte is rendered in the stream.

        Takes ownership of *items*: closes it when the stream ends or the client goes away.
        """
        ...

    def complete(self, answer: Answer, request: ChatRequest, exchange: Exchange) -> dict[str, Any]:
        """The non-streaming JSON body of a whole answer."""
        ...

    def error(self, exc: RooGabError) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON body of *exc* in the protocol's own error shape."""
        ...


PROTOCOLS: Mapping[str, WireProtocol] = {
    "/chat/completions": ChatCompletions(),
    "/messages": AnthropicMessages(),
    "/responses": Responses(),
}
"""Route (under ``/v1`` and bare) -> the protocol served there. Stateless objects."""


def protocol_for(path: str) -> WireProtocol:
    """The protocol whose errors a request to *path* gets: its route's, else Chat Completions'
    (``/v1/models``, ``/healthz`` and the inspector answer in OpenAI's error shape)."""
    bare = (path[3:] if path.startswith("/v1/") else path).rstrip("/")
    for route in sorted(PROTOCOLS, key=len, reverse=True):  # /messages/count_tokens is Messages'
        if bare == route or bare.startswith(route + "/"):
            return PROTOCOLS[route]
    return PROTOCOLS["/chat/completions"]
