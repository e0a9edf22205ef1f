"""The demo service's script: canned replies, one per prompt, read from JSON Lines.

One JSON object per line (blank lines and lines starting with ``#`` are skipped)::

    {"reply": "<raw text>", "format": "markdown" | "html", "stream": "delta" | "cumulative",
     "chunk": 8, "delay_ms": 0}

Only ``reply`` is required, or instead ``"events"``: the exact frames to send, in order, each
``{"snapshot": "<the whole reply so far>"}`` or ``{"delta": "<the next piece>"}`` (so a test can
replay a page's frames; ``format``, ``stream`` and ``chunk`` then do not apply). Fault injection:
``"drop_after": N`` (the server cuts the client's connection after N chunks),
``"hold_after": N`` (the server holds the reply after N chunks until released: ``POST
/demo/release`` or ``DemoChatService.release()``, one release per held reply),
``"error": "message"`` with an optional ``"code"`` (answer with a conversation error instead),
``"silent": true`` (never answer). A line with ``error`` or ``silent`` needs no ``reply``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

__all__ = ["ScriptedReply", "load_script", "parse_reply", "parse_script"]

ReplyFormat = Literal["markdown", "html"]
StreamMode = Literal["delta", "cumulative"]

_KNOWN = frozenset({"reply", "format", "stream", "chunk", "delay_ms", "drop_after", "hold_after", "error",
                    "code", "silent", "events"})
Frame = tuple[Literal["snapshot", "delta"], str]


class _BadEntry(Exception):
    """One script entry is invalid; the message says why."""


@dataclass(frozen=True)
class ScriptedReply:
    """One canned answer and how the demo service delivers it."""

    reply: str = ""
    format: ReplyFormat = "markdown"
    stream: StreamMode = "delta"
    chunk: int = 8
    delay_ms: int = 0
    drop_after: int | None = None
    hold_after: int | None = None
    error: str | None = None
    code: str = "service_error"
    silent: bool = False
    events: tuple[Frame, ...] = ()


def load_script(path: str | Path) -> list[ScriptedReply]:
    """Read a JSON Lines script file.

    Raises:
        ConfigError: the file cannot be read, or a line is invalid (the message names the line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--script", f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("--script", f"{path} is not UTF-8 text") from exc
    return parse_script(text.splitlines())


def parse_script(lines: Iterable[str]) -> list[ScriptedReply]:
    """Parse script lines; blank lines and ``#`` comments are skipped.

    Raises:
        ConfigError: ``("--script", "line N: problem")`` for the first invalid line.
    """
    replies = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError("--script", f"line {number}: not valid JSON ({exc.msg})") from exc
        replies.append(_parse_at(number, raw))
    return replies


def parse_reply(raw: object) -> ScriptedReply:
    """Validate one decoded script entry (a JSON object).

    Raises:
        ConfigError: the entry is not a valid script line.
    """
    return _parse_at(None, raw)


def _parse_at(number: int | None, raw: object) -> ScriptedReply:
    where = f"line {number}: " if number is not None else ""
    try:
        return _build(raw)
    except _BadEntry as exc:
        raise ConfigError("--script", f"{where}{exc}") from None


def _build(raw: object) -> ScriptedReply:
    if not isinstance(raw, Mapping):
        raise _BadEntry("each line must be a JSON object")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise _BadEntry(f"unknown field {unknown[0]!r}")
    silent = _boolean(raw, "silent")
    error = _optional_str(raw, "error")
    events = _frames(raw.get("events", []))
    if "reply" not in raw and error is None and not silent and not events:
        raise _BadEntry("'reply' is required")
    return ScriptedReply(
        reply=_string(raw, "reply", ""),
        format=_choice(raw, "format", ("markdown", "html")),
        stream=_choice(raw, "stream", ("delta", "cumulative")),
        chunk=_integer(raw, "chunk", 8, minimum=1),
        delay_ms=_integer(raw, "delay_ms", 0, minimum=0),
        drop_after=_integer(raw, "drop_after", None, minimum=0),
        hold_after=_integer(raw, "hold_after", None, minimum=0),
        error=error,
        code=_string(raw, "code", "service_error"),
        silent=silent,
        events=events,
    )


def _frames(raw: object) -> tuple[Frame, ...]:
    if not isinstance(raw, list):
        raise _BadEntry("'events' must be a list of {\"snapshot\": ...} or {\"delta\": ...} frames")
    frames: list[Frame] = []
    for frame in raw:
        if not isinstance(frame, Mapping) or len(frame) != 1:
            raise _BadEntry("each of 'events' must be {\"snapshot\": text} or {\"delta\": text}")
        kind, text = next(iter(frame.items()))
        if kind not in ("snapshot", "delta") or not isinstance(text, str):
            raise _BadEntry("each of 'events' must be {\"snapshot\": text} or {\"delta\": text}")
        frames.append((kind, text))
    return tuple(frames)


def _string(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise _BadEntry(f"{key!r} must be a string")
    return value


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    return None if raw.get(key) is None else _string(raw, key, "")


def _choice(raw: Mapping[str, Any], key: str, choices: tuple[str, str]) -> Any:
    value = raw.get(key, choices[0])
    if value not in choices:
        raise _BadEntry(f"{key!r} must be {' or '.join(repr(c) for c in choices)}, not {value!r}")
    return value


def _integer(raw: Mapping[str, Any], key: str, default: int | None, *, minimum: int) -> Any:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadEntry(f"{key!r} must be an integer")
    if value < minimum:
        raise _BadEntry(f"{key!r} must be at least {minimum}")
    return value


def _boolean(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise _BadEntry(f"{key!r} must be true or false")
    return value
