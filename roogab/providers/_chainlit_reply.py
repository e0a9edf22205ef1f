"""Assembling a Chainlit turn's reply from its assistant messages (sans-IO, no socket).

``stream_start`` / ``stream_token`` / the final ``new_message`` of each assistant message become
the turn's events: ``Delta`` while the text only grows (the usual case, also for sequence tokens
that extend it), ``Snapshot`` from the first rewrite on, and ``Done`` with the reconciled text.
Several assistant messages in one turn are joined by a blank line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .base import Delta, Done, Snapshot, Turn

__all__ = ["AssistantReply"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class AssistantReply:
    """The assistant messages of one turn in order, and what the turn has been told so far."""

    turn: Turn
    messages: dict[str, list[str]] = field(default_factory=dict)
    told: list[str] = field(default_factory=list)
    snapshots: bool = False

    def text(self) -> str:
        """The reply so far: the turn's assistant messages, separated by blank lines."""
        return "\n\n".join(t for t in ("".join(p) for p in self.messages.values()) if t)

    def append(self, mid: str, token: str) -> None:
        """Add *token* to message *mid*: a ``Delta`` in the usual case."""
        if not token:
            return
        parts = self.messages.setdefault(mid, [])
        if self.snapshots or next(reversed(self.messages)) != mid:
            parts.append(token)
            self._publish()
            return
        piece = "\n\n" + token if self.told and not any(parts) else token
        parts.append(token)
        self.told.append(piece)
        self.turn.put(Delta(piece))

    def replace(self, mid: str, text: str) -> None:
        """Message *mid* now reads *text* (a sequence token or its final version)."""
        self.messages[mid] = [text]
        self._publish()

    def _publish(self) -> None:
        whole, told = self.text(), "".join(self.told)
        if whole == told:
            return
        if not self.snapshots and whole.startswith(told):
            self.told.append(whole[len(told):])
            self.turn.put(Delta(whole[len(told):]))
            return
        self.snapshots, self.told = True, [whole]  # a rewrite: from here on, whole snapshots
        self.turn.put(Snapshot(whole, rewrite=True))

    def finish(self) -> None:
        """End the turn with the reconciled full text."""
        whole = self.text()
        if self.snapshots and whole != "".join(self.told):
            self.turn.put(Snapshot(whole, rewrite=True))
        elif not self.snapshots and not whole.startswith("".join(self.told)):
            logger.warning("%s: the final reply differs from the streamed one", self.turn.provider)
        self.turn.put(Done(whole))
