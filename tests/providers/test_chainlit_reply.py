"""How ChainlitProvider turns a turn's assistant messages into Delta / Snapshot / Done (no server)."""

from __future__ import annotations

from roogab.providers._chainlit_reply import AssistantReply
from roogab.providers.base import Deadlines, Delta, Done, ProviderEvent, Snapshot, Turn


def drained(turn: Turn) -> list[ProviderEvent]:
    return [e for e in turn.events(tick=0.01) if e is not None]


def test_tokens_are_deltas_and_a_second_message_is_set_apart() -> None:
    reply = AssistantReply(Turn("t", Deadlines()))
    reply.append("m1", "Hel")
    reply.append("m1", "lo")
    reply.replace("m1", "Hello")  # the final new_message of m1: nothing new
    reply.append("m2", "World")
    reply.finish()
    assert drained(reply.turn) == [Delta("Hel"), Delta("lo"), Delta("\n\nWorld"), Done("Hello\n\nWorld")]


def test_sequence_tokens_that_extend_stay_deltas() -> None:
    reply = AssistantReply(Turn("t", Deadlines()))
    for text in ("ab", "abcd", "abcdef"):
        reply.replace("m", text)
    reply.finish()
    assert drained(reply.turn) == [Delta("ab"), Delta("cd"), Delta("ef"), Done("abcdef")]


def test_a_rewrite_switches_the_turn_to_snapshots() -> None:
    reply = AssistantReply(Turn("t", Deadlines()))
    reply.append("m", "draft")
    reply.replace("m", "final answer")
    reply.append("m", "!")
    reply.finish()
    assert drained(reply.turn) == [Delta("draft"), Snapshot("final answer", rewrite=True),
                                   Snapshot("final answer!", rewrite=True), Done("final answer!")]


def test_a_rewrite_shorter_is_a_rewrite_not_a_late_snapshot() -> None:
    reply = AssistantReply(Turn("t", Deadlines()))
    reply.append("m", "a long first draft")
    reply.replace("m", "a long")
    reply.finish()
    assert drained(reply.turn) == [Delta("a long first draft"), Snapshot("a long", rewrite=True), Done("a long")]


def test_a_final_text_that_extends_the_stream_is_the_done_text() -> None:
    reply = AssistantReply(Turn("t", Deadlines()))
    reply.append("m", "abc")
    reply.messages["m"] = ["abcdef"]  # tokens lost on the way; the final message has it all
    reply.finish()
    assert drained(reply.turn) == [Delta("abc"), Done("abcdef")]
