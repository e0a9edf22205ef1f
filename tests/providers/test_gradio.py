"""The gradio kind's pure parts: what a /chat output means as reply text, and the URL check.
(The protocol itself is exercised against a real Gradio app in tests/test_e2e_gradio.py.)"""

from __future__ import annotations

import pytest

from roogab.config import ProviderProfile
from roogab.errors import ConfigError, ProviderRejected
from roogab.providers import kinds
from roogab.providers.gradio_impl import GradioSettings, _reply_text


@pytest.mark.parametrize(("output", "text"), [
    ("so far", "so far"),
    (("so far", None), "so far"),
    ({"role": "assistant", "content": "a message"}, "a message"),
    ([{"role": "assistant", "content": "thinking", "metadata": {"title": "Thought"}},
      {"role": "assistant", "content": "one"}, {"role": "assistant", "content": "two"}], "one\n\ntwo"),
    ((), ""),
])
def test_outputs_become_the_reply_so_far(output: object, text: str) -> None:
    assert _reply_text("gr", output) == text


@pytest.mark.parametrize("output", [{"path": "/tmp/cat.png"}, 42, [1, 2]])
def test_a_reply_that_is_not_text_is_refused_clearly(output: object) -> None:
    with pytest.raises(ProviderRejected, match="only text replies are supported"):
        _reply_text("gr", output)


def test_the_kind_is_one_row_with_its_own_setting() -> None:
    kind = kinds.load("gradio")
    assert kind.settings is GradioSettings and not kind.traits.keeps_conversations
    assert kinds.KINDS["gradio"].settings == ("api_name",)


def test_a_url_that_is_not_http_is_a_config_error() -> None:
    profile = ProviderProfile(name="gr", kind="gradio", url="ws://127.0.0.1:1/")
    with pytest.raises(ConfigError, match="providers.gr.url"):
        kinds.build(profile, kinds.Context(loop=None))  # type: ignore[arg-type]
