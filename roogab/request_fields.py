"""Which request fields RooGab honours, emulates, refuses or ignores, per wire protocol.

A chat page takes a message and nothing else, so most sampling options cannot reach the model.
``FIELDS`` says, for each protocol, what RooGab does with each top-level field it knows (the
README's table is written from it); any other field is ignored. ``ignored_fields`` (pure) lists
the ignored fields a request body carries; ``IgnoredFieldsLog`` logs them at debug level once per
client and field, remembering what it logged in an object the app owns (``for_app``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FIELDS", "IgnoredFieldsLog", "for_app", "ignored_fields"]

log = logging.getLogger("roogab.request_fields")

Use = Literal["honoured", "emulated", "refused", "ignored"]

_COMMON_IGNORED = ("temperature", "top_p", "metadata", "user", "service_tier", "parallel_tool_calls", "store")

FIELDS: Mapping[str, Mapping[str, Use]] = {
    "chat": {
        "model": "honoured", "messages": "honoured", "stream": "honoured", "prompt_cache_key": "honoured",
        "tools": "emulated", "tool_choice": "emulated", "stream_options": "emulated",
        "n": "refused", "logprobs": "refused", "audio": "refused", "modalities": "refused",
        **dict.fromkeys(_COMMON_IGNORED + ("max_tokens", "max_completion_tokens", "response_format", "stop", "seed",
                                           "presence_penalty", "frequency_penalty", "logit_bias", "top_logprobs",
                                           "reasoning_effort", "prediction", "web_search_options"), "ignored"),
    },
    "responses": {
        "model": "honoured", "input": "honoured", "instructions": "honoured", "stream": "honoured",
        "previous_response_id": "honoured", "prompt_cache_key": "honoured", "include": "honoured",
        "tools": "emulated", "tool_choice": "emulated", "text": "emulated",
        "background": "refused", "conversation": "refused", "n": "refused",
        **dict.fromkeys(_COMMON_IGNORED + ("max_output_tokens", "reasoning", "truncation", "max_tool_calls",
                                           "top_logprobs", "safety_identifier", "prompt_cache_retention",
                                           "stream_options", "client_metadata"), "ignored"),
    },
    "messages": {
        "model": "honoured", "messages": "honoured", "system": "honoured", "stream": "honoured",
        "metadata": "honoured",
        "tools": "emulated", "tool_choice": "emulated", "output_config": "emulated", "output_format": "emulated",
        **dict.fromkeys(("temperature", "top_p", "top_k", "max_tokens", "stop_sequences", "thinking",
                         "service_tier", "context_management", "container", "mcp_servers"), "ignored"),
    },
}
"""Protocol name -> top-level field -> what RooGab does with it. ``emulated``: done by RooGab
itself (tools through the reply envelope, usage counted by its tokenizer, JSON output asked for
in the prompt and fitted to the schema). ``refused``: an error when asked for (``n > 1`` ...)."""


def ignored_fields(protocol: str, body: object) -> tuple[str, ...]:
    """The top-level fields of *body* (set, not null) that have no effect on the turn, sorted."""
    if not isinstance(body, dict):
        return ()
    known = FIELDS.get(protocol, {})
    return tuple(sorted(k for k, v in body.items()
                        if v is not None and known.get(str(k), "ignored") == "ignored"))


@dataclass
class IgnoredFieldsLog:
    """Logs the ignored fields of each client's requests at debug level, each field once per
    client (at most *clients* remembered, the least recently seen forgotten first). Thread-safe."""

    clients: int = 1024
    _seen: OrderedDict[str, set[str]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, client: str, protocol: str, body: object) -> tuple[str, ...]:
        """Log the fields of *body* this client sends that RooGab ignores and that were not logged
        for it yet; returns those fields."""
        found = ignored_fields(protocol, body)
        if not found:
            return ()
        with self._lock:
            seen = self._seen.setdefault(client, set())
            self._seen.move_to_end(client)
            while len(self._seen) > self.clients:
                self._seen.popitem(last=False)
            new = tuple(f for f in found if f not in seen)
            seen.update(new)
        if new:
            log.debug("%s request fields ignored by RooGab (a chat page cannot take them; see the README's "
                      "request-field table): %s [client %s]", protocol, ", ".join(new), client)
        return new


_KEY = "roogab.ignored_fields"


def for_app(extensions: MutableMapping[str, Any]) -> IgnoredFieldsLog:
    """The app's own ``IgnoredFieldsLog`` (kept in its ``extensions``, made on first use)."""
    found: IgnoredFieldsLog = extensions.setdefault(_KEY, IgnoredFieldsLog())
    return found
