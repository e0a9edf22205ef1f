"""The table of provider kinds: every row loads, declares itself, and checks its own settings."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from roogab.config import ProviderProfile, load_config
from roogab.errors import ConfigError
from roogab.providers import kinds
from roogab.providers.base import Traits
from roogab.providers.loop import ProviderLoop


@pytest.mark.parametrize("name", sorted(kinds.KINDS))
def test_every_row_loads_a_kind_of_that_name(name: str) -> None:
    kind = kinds.load(name)
    assert kind.name == name
    assert isinstance(kind.traits, Traits)
    assert kind.traits.stream in ("deltas", "snapshots")
    assert kinds.KINDS[name].settings == tuple(f.name for f in dataclasses.fields(kind.settings))


def test_reading_the_table_imports_no_network_library() -> None:
    code = ("import sys, roogab.providers.kinds; "
            "print([m for m in ('socketio', 'websocket', 'aiohttp') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="telepathy"):
        kinds.load("telepathy")


@dataclass(frozen=True)
class _Settings:
    temporary: bool = False
    limit: int = 3
    label: str = ""


def test_settings_come_from_the_profile_options_by_name_and_type() -> None:
    profile = ProviderProfile(name="p", kind="x", options=(("temporary", True), ("label", "a")))
    assert kinds.parse_settings(profile, _Settings) == _Settings(temporary=True, label="a")
    with pytest.raises(ConfigError, match=r"providers\.p\.tempo"):
        kinds.parse_settings(ProviderProfile(name="p", options=(("tempo", True),)), _Settings)
    with pytest.raises(ConfigError, match="true or false"):
        kinds.parse_settings(ProviderProfile(name="p", options=(("temporary", "yes"),)), _Settings)
    with pytest.raises(ConfigError, match="number"):
        kinds.parse_settings(ProviderProfile(name="p", options=(("limit", True),)), _Settings)


def test_a_kind_refuses_a_key_of_another_kind_when_the_config_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[providers]]\nname = "team"\nkind = "chainlit"\nurl = "http://127.0.0.1:9"\n'
                    'temporary_chats = true\n')
    with pytest.raises(ConfigError, match=r"providers\[0\]\.temporary_chats"):
        load_config(path, env={})


def test_a_kind_without_settings_refuses_options_handed_in_directly() -> None:
    profile = ProviderProfile(name="team", kind="chainlit", url="http://127.0.0.1:9",
                              options=(("temporary_chats", True),))
    with pytest.raises(ConfigError, match=r"providers\.team\.temporary_chats"):
        kinds.build(profile, kinds.Context(ProviderLoop()))


def test_the_demo_kind_without_a_url_says_how_to_configure_one() -> None:
    with pytest.raises(ConfigError, match="no chat service is configured"):
        kinds.build(ProviderProfile(), kinds.Context(ProviderLoop()))

