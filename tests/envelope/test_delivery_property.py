"""Any generated reply, any chunking, each delivery: the calls of the one-shot parse, or a clear error.

Markdown and HTML, as pieces and as snapshots (HTML snapshots are the real renderer's rendering of
each prefix, so they change their past: emphasis closes, fences close, highlighting spans move).
The reply reader alone, sans IO; tests/test_delivery_turns.py runs whole turns.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replygen import MODES, read, replies


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=replies(), sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5))
def test_never_a_wrong_call(mode: str, text: str, sizes: list[int]) -> None:
    assert read(text, mode, sizes) != "wrong"
