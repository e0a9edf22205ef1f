"""Helpers shared by the envelope tests."""

from __future__ import annotations

from collections.abc import Iterable

from roogab.envelope import Event, Reasoning, Text


def merge(events: Iterable[Event]) -> list[Event]:
    """Join adjacent Text events and adjacent Reasoning events."""
    out: list[Event] = []
    for event in events:
        if out and isinstance(event, (Text, Reasoning)) and type(out[-1]) is type(event):
            out[-1] = type(event)(out[-1].text + event.text)
        else:
            out.append(event)
    return out
