"""The reply reader on its own, event by event (as h11's tests drive a connection): provider
events in, envelope events and a verdict out. No IO."""

from __future__ import annotations

from collections.abc import Sequence

from support import as_halves

from roogab.demo.markup import markdown_to_html
from roogab.envelope import End, Event, Text, ToolCall
from roogab.providers.base import Delta, Done, Snapshot
from roogab.reply_reader import ReplyReader, Verdict

CALL = '```lua\nreturn { tool_calls = { { name = "read_file", arguments = { path = "x.ts" } } } }\n```'


def _texts(events: Sequence[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Text))


def test_pieces_then_done() -> None:
    reader = ReplyReader(["read_file"])
    assert not reader.feed(Delta(CALL[:40]))
    events = reader.feed(Delta(CALL[40:]))
    assert list(events) == [ToolCall("read_file", {"path": "x.ts"})]
    assert list(reader.feed(Done())) == [End()] and reader.verdict == Verdict()


def test_html_snapshot_holds_back_the_last_line_of_an_open_code_block() -> None:
    reply = "```lua\nreturn {\n  text = [==[one\ntwo\nthree]==] }\n```"
    reader = ReplyReader([])
    cut = reply.index("two") + 2  # "...one\ntw": the page shows "tw" as a whole line
    assert _texts(reader.feed(Snapshot(markdown_to_html(reply[:cut])))) == "one\n"
    assert _texts(reader.feed(Snapshot(markdown_to_html(reply[:cut + 4])))) == "two\n"
    rest = [*reader.feed(Snapshot(markdown_to_html(reply))), *reader.feed(Done())]
    assert _texts(rest) == "three" and reader.verdict == Verdict()


def test_a_snapshot_that_rerenders_its_past_is_decoded_anew() -> None:
    reply = "Some *prose* here\n\n" + CALL
    reader = ReplyReader(["read_file"])
    events: list[Event] = []
    for cut in range(1, len(reply) + 1, 5):  # "*pro" is text, "*prose*" becomes <em>
        events += reader.feed(Snapshot(markdown_to_html(reply[:cut])))
    events += [*reader.feed(Snapshot(markdown_to_html(reply))), *reader.feed(Done())]
    assert [e for e in events if isinstance(e, ToolCall)] == [ToolCall("read_file", {"path": "x.ts"})]
    assert reader.verdict == Verdict()


def test_a_late_older_snapshot_changes_nothing() -> None:
    reader = ReplyReader(["read_file"])
    assert list(reader.feed(Snapshot(CALL))) == [ToolCall("read_file", {"path": "x.ts"})]
    assert not reader.feed(Snapshot(CALL[:30]))
    assert list(reader.feed(Done())) == [End()] and reader.raw == CALL


def test_a_rewrite_shorter_after_the_text_was_passed_on_is_a_problem() -> None:
    """A service that takes text back (a rewrite, unlike a late snapshot) leaves a reply that
    cannot be trusted: the longer text the agent may have got is not the answer."""
    long, short = (f"```lua\nreturn {{ text = [==[{t}]==] }}\n```" for t in ("Here is a long first draft.", "Here is"))
    reader = ReplyReader([])
    events = list(reader.feed(Delta(long)))
    assert "".join(e.text for e in events if isinstance(e, Text)) == "Here is a long first draft."
    events += [*reader.feed(Snapshot(short, rewrite=True)), *reader.feed(Done(short))]
    assert isinstance(events[-1], End) and reader.verdict is not None and reader.verdict.problem is not None


def test_a_rewrite_shorter_of_prose_not_passed_on_yet_is_the_reply() -> None:
    reader = ReplyReader([])
    events = [*reader.feed(Delta("Here is a long first draft.")), *reader.feed(Snapshot("Here is", rewrite=True))]
    events += reader.feed(Done("Here is"))
    assert "".join(e.text for e in events if isinstance(e, Text)) == "Here is"
    assert reader.verdict == Verdict()


def test_a_rewrite_that_only_extends_is_fine() -> None:
    reader = ReplyReader([])
    events = [*reader.feed(Delta("Here is")), *reader.feed(Snapshot("Here is more.", rewrite=True))]
    events += reader.feed(Done("Here is more."))
    assert "".join(e.text for e in events if isinstance(e, Text)) == "Here is more."
    assert reader.verdict == Verdict()


def test_a_rewrite_after_pieces_that_takes_back_a_call_is_a_problem() -> None:
    reader = ReplyReader(["read_file"])
    assert list(reader.feed(Delta(CALL))) == [ToolCall("read_file", {"path": "x.ts"})]
    assert not reader.feed(Snapshot(CALL.replace("x.ts", "y.ts")))
    end = reader.feed(Done())
    assert isinstance(end[-1], End) and reader.verdict is not None
    assert reader.verdict.problem is not None and "changed the tool call read_file" in reader.verdict.problem


def test_a_rewrite_that_extends_the_pieces_goes_on() -> None:
    reply = "```lua\nreturn { text = [==[hello world]==] }\n```"
    reader = ReplyReader([])
    first = reader.feed(Delta(reply[:25]))
    rest = reader.feed(Snapshot(reply))
    assert _texts([*first, *rest, *reader.feed(Done())]) == "hello world" and reader.verdict == Verdict()


def test_error_page_and_plain_prose() -> None:
    reader = ReplyReader(["read_file"])
    reader.feed(Delta("<!DOCTYPE html><html><title>502 Bad Gateway</title></html>"))
    reader.feed(Done())
    assert reader.verdict == Verdict(error_page="502 Bad Gateway")
    reader = ReplyReader([])
    assert _texts([*reader.feed(Delta("just prose")), *reader.feed(Done())]) == "just prose"
    assert reader.verdict == Verdict()  # without tools, prose is a fine answer
    reader = ReplyReader(["read_file"])
    reader.feed(Delta("just prose"))
    reader.feed(Done())
    assert reader.verdict is not None and reader.verdict.problem == "no envelope found"


def test_done_with_the_full_text_completes_the_pieces() -> None:
    reader = ReplyReader(["read_file"])
    reader.feed(Delta(CALL[:20]))
    events = reader.feed(Done(CALL))
    assert events[:-1] == [ToolCall("read_file", {"path": "x.ts"})] and reader.verdict == Verdict()


# -- text a service spelled as UTF-16 halves (JSON "\ud83d\ude00", one half per frame) ----------

EMOJI_REPLY = '```lua\nreturn { text = [[Done 😀 ✓]], tool_calls = { { name = "read_file", arguments = { path = "a😀.ts" } } } }\n```'


def _read(events: list[Delta | Snapshot | Done], tools: tuple[str, ...] = ("read_file",)
          ) -> tuple[list[Event], ReplyReader]:
    reader = ReplyReader(tools)
    return [e for event in events for e in reader.feed(event)], reader


def test_halves_split_at_every_position_join_into_their_characters() -> None:
    halves = as_halves(EMOJI_REPLY)
    assert len(halves) == len(EMOJI_REPLY) + 2
    for cut in range(len(halves) + 1):
        for done in (Done(), Done(halves)):
            events, reader = _read([Delta(halves[:cut]), Delta(halves[cut:]), done])
            assert _texts(events) == "Done 😀 ✓", cut
            assert [e for e in events if isinstance(e, ToolCall)] == [ToolCall("read_file", {"path": "a😀.ts"})]
            assert reader.raw == EMOJI_REPLY and reader.verdict == Verdict(), cut


def test_snapshots_cut_between_halves_join_them() -> None:
    halves = as_halves(EMOJI_REPLY)
    for cut in range(len(halves) + 1):
        events, reader = _read([Snapshot(halves[:cut]), Snapshot(halves), Done()])
        assert _texts(events) == "Done 😀 ✓" and reader.raw == EMOJI_REPLY, cut


def test_a_half_without_its_partner_is_the_replacement_character() -> None:
    """Valid Unicode goes on (a lone surrogate cannot be encoded: it would fail the response
    and the turn log), and the reply says a character was lost rather than hiding it."""
    events, reader = _read([Delta("first \udc00 then "), Delta("\ud83d"), Delta(" x \ud83d"), Done()], ())
    assert reader.raw == "first \ufffd then \ufffd x \ufffd"
    assert _texts(events) == reader.raw and reader.verdict == Verdict()
    reader.raw.encode()
