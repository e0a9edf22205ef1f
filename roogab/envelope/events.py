"""The envelope parser's output vocabulary: what a model's reply means, piece by piece."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["End", "Event", "Reasoning", "Text", "ToolCall"]


@dataclass(frozen=True)
class Text:
    """A piece of the answer's text (markdown for the user). Adjacent pieces concatenate."""

    text: str


@dataclass(frozen=True)
class Reasoning:
    """A piece of the model's reasoning; becomes ``reasoning_content``."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """One complete tool call: emitted only once its table has closed."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class End:
    """The reply is over. Always the last event that ``close()`` returns.

    ``envelope`` says whether a reply envelope (or a structure recovered as one: JSON, the legacy
    ``print`` form, XML tool tags) was found. ``problem`` describes why the reply is not
    compliant (``"no envelope found"``, ``"unbalanced bracket at line 4"``, ``"tool call cut
    off"``) and is ``None`` when it is; ``offset`` is where in the reply the problem is (-1 if
    nowhere in particular).
    """

    envelope: bool = True
    problem: str | None = None
    offset: int = -1


Event = Text | Reasoning | ToolCall | End
