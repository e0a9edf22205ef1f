"""Memo (computed once per key, bounded by weight) and the turn log's fixed-size request summary."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from roogab.memo import Memo
from roogab.registry import message_digest
from roogab.turnlog import HEAD, TAIL, request_summary
from roogab.wire import Message, parse_chat_request


def test_a_value_is_computed_once_per_key_and_the_least_recent_goes_first() -> None:
    calls: list[str] = []
    memo: Memo[str, int] = Memo(budget=6, weigh=len)
    fn = lambda k: calls.append(k) or len(k)
    assert [memo.get("ab", fn), memo.get("cd", fn), memo.get("ab", fn)] == [2, 2, 2]
    assert calls == ["ab", "cd"]
    memo.get("ef", fn)  # 6 held: still all three
    memo.get("ab", fn)  # "ab" most recent now; "cd" least
    memo.get("gh", fn)  # over budget: "cd" goes
    memo.get("ab", fn)
    memo.get("cd", fn)
    assert calls == ["ab", "cd", "ef", "gh", "cd"]
    assert len(memo) <= 3


def test_a_new_key_is_kept_even_when_every_key_held_was_used() -> None:
    calls: list[str] = []
    memo: Memo[str, int] = Memo(budget=3, weigh=lambda k: 1)
    fn = lambda k: calls.append(k) or 0
    for key in "abcabc":  # each held key used since it went in
        memo.get(key, fn)
    memo.get("d", fn)  # a full sweep unmarks them all; the oldest goes, "d" stays
    memo.get("d", fn)
    assert calls == ["a", "b", "c", "d"] and len(memo) == 3


def test_a_key_heavier_than_the_budget_is_computed_every_time_and_not_kept() -> None:
    calls: list[str] = []
    memo: Memo[str, str] = Memo(budget=3, weigh=len)
    fn = lambda k: calls.append(k) or k.upper()
    assert memo.get("long", fn) == "LONG" and memo.get("long", fn) == "LONG"
    assert calls == ["long", "long"] and len(memo) == 0


@given(st.lists(st.sampled_from(["user", "assistant", "system"]), min_size=1, max_size=30),
       st.lists(st.text(max_size=20), min_size=30, max_size=30))
def test_memoised_digests_equal_fresh_ones(roles: list[str], texts: list[str]) -> None:
    memo: Memo[Message, str] = Memo(budget=200, weigh=lambda m: len(m.content) + 64)
    messages = [Message(role=r, content=t) for r, t in zip(roles, texts)]  # type: ignore[arg-type]
    for m in messages + messages[::-1]:
        assert memo.get(m, message_digest) == message_digest(m)


def _request(n: int) -> object:
    messages = [{"role": "system", "content": "rules"}, {"role": "user", "content": "the task"}]
    messages += [{"role": "user" if i % 2 else "assistant", "content": f"message {i}"} for i in range(n)]
    return parse_chat_request({"model": "m", "messages": messages})


def test_the_request_summary_keeps_the_task_and_the_latest_messages() -> None:
    summary = json.loads(request_summary(_request(100), "client"))  # type: ignore[arg-type]
    contents = [m["content"] for m in summary["messages"]]
    assert contents[:HEAD] == ["rules", "the task"]
    assert contents[HEAD:] == [f"message {i}" for i in range(100 - TAIL, 100)]
    assert summary["message_count"] == 102 and summary["omitted"] == 102 - HEAD - TAIL


def test_a_short_request_is_summarised_whole() -> None:
    summary = json.loads(request_summary(_request(3), "client"))  # type: ignore[arg-type]
    assert len(summary["messages"]) == 5 and summary["omitted"] == 0
