"""Whole turns over generated replies in each delivery: streaming and non-streaming agents end with
the same calls, and those are the one-shot parse's calls (after a repair if the page garbled a
value), or the turn fails with a clear error. Never anything else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replygen import MODES, judge_turn, replies


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=replies(), sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5))
def test_streaming_and_whole_agents_get_the_same_right_calls(mode: str, text: str, sizes: list[int]) -> None:
    assert judge_turn(text, mode, sizes) != "wrong"
