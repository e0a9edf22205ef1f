"""FakeProvider: scripted replies cut into pieces, for unit tests of everything above a provider."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ..errors import UpstreamError
from .base import Created, Deadlines, Delta, Done, Health, ModelInfo, Snapshot, Traits, Turn

__all__ = ["FakeProvider", "SentPrompt"]


@dataclass(frozen=True)
class SentPrompt:
    """What the fake received: the conversation handle (None = new), the model and the text."""

    handle: str | None
    model: str
    text: str


@dataclass
class FakeProvider:
    """Answers each ``send`` with the next scripted reply, delivered in ``chunk``-sized deltas.

    A reply that is an ``UpstreamError`` is raised from the turn instead; a list of ``Delta`` and
    ``Snapshot`` events is delivered as it is (a page's exact frames), then ``Done()``, unless it
    ends with an ``UpstreamError`` (a failure mid-reply).
    """

    replies: list[str | UpstreamError | list[Delta | Snapshot | UpstreamError]] = field(default_factory=list)
    chunk: int = 3
    name: str = "fake"
    max_message_chars: int = 0
    traits: Traits = field(default_factory=Traits)
    sent: list[SentPrompt] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def start(self) -> None:
        """Nothing to connect."""

    def models(self) -> list[ModelInfo]:
        """One model, ``model``."""
        return [ModelInfo("model", 128_000)]

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn:
        """Record the prompt and queue the next reply on a new turn."""
        self.sent.append(SentPrompt(handle, model, text))
        turn = Turn(self.name, deadlines)
        if handle is None:
            turn.put(Created(f"fake-{next(self._ids)}"))
        reply = self.replies.pop(0) if self.replies else "```lua\nreturn { text = [[ok]] }\n```"
        if isinstance(reply, UpstreamError):
            turn.put(reply)
            return turn
        if isinstance(reply, list):
            for event in reply:
                turn.put(event)
            if not (reply and isinstance(reply[-1], UpstreamError)):  # a failure ends it instead
                turn.put(Done())
            return turn
        for i in range(0, len(reply), max(1, self.chunk)):
            turn.put(Delta(reply[i:i + self.chunk]))
        turn.put(Done(reply))
        return turn

    def forget(self, handle: str) -> None:
        """Note the handle (there is nothing to delete)."""
        self.forgotten.append(handle)

    def health(self) -> Health:
        """Always ready."""
        return Health(ready=True, connected=True)

    def close(self) -> None:
        """Nothing to close."""
