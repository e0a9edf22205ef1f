"""The routing key of a task, for a load balancer to hash on (docs/deploy.md).

Coding agents already name their sessions: Kilo Code sends ``x-session-affinity``, Claude Code
``X-Claude-Code-Session-Id``, Codex ``session_id`` / ``session-id`` headers and a
``prompt_cache_key`` in the body. ``affinity_key`` takes the first of those a request carries,
else RooGab's digest of the task's opening (its system prompt and first user message, the
registry's ``thread_key``). RooGab echoes the key it used in ``x-roogab-affinity``. Pure: the
protocol modules call it with what they parsed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["AFFINITY_HEADER", "HEADER_SOURCES", "INSTANCE_HEADER", "Affinity", "affinity_key"]

AFFINITY_HEADER = "x-roogab-affinity"
INSTANCE_HEADER = "x-roogab-instance"  # which instance served the turn

#: Request headers that name a session, in order of preference, with the client that sends each.
HEADER_SOURCES: tuple[tuple[str, str], ...] = (
    ("x-session-affinity", "kilo"),
    ("x-claude-code-session-id", "claude-code"),
    ("session_id", "codex"),
    ("session-id", "codex"),
)
BODY_SOURCES: tuple[tuple[str, str], ...] = (("prompt_cache_key", "codex"),)

MAX_KEY = 128
_SAFE = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


@dataclass(frozen=True)
class Affinity:
    """A routing key and where it came from (``kilo``, ``claude-code``, ``codex`` or ``opening``)."""

    key: str
    source: str


def affinity_key(headers: Mapping[str, str], body: Mapping[str, object] | None,
                 opening: Callable[[], str]) -> Affinity:
    """The task's routing key: a client's session header or body field, else *opening()*.

    *headers* is looked up case-insensitively when it is a plain dict. A value that is not a
    short token (a balancer hashes it, a header carries it back) is replaced by its digest.
    """
    lowered = {k.lower(): v for k, v in headers.items()} if isinstance(headers, dict) else headers
    for name, source in HEADER_SOURCES:
        value = lowered.get(name)
        if value and value.strip():
            return Affinity(_token(value.strip()), source)
    for name, source in BODY_SOURCES:
        value = (body or {}).get(name)
        if isinstance(value, str) and value.strip():
            return Affinity(_token(value.strip()), source)
    return Affinity(opening(), "opening")


def _token(value: str) -> str:
    if _SAFE.fullmatch(value):
        return value
    return "h:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
