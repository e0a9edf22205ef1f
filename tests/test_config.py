"""Config precedence and start-up errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from roogab.config import Config, load_config
from roogab.errors import ConfigError


def test_defaults_are_safe() -> None:
    config = load_config(env={})
    assert config.host == "127.0.0.1" and config.port == 8787 and config.threads == 64
    assert config.api_keys == () and config.is_loopback()


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "roogab.toml"
    path.write_text('port = 9000\nthreads = 8\nrepair_attempts = 2\n')
    env = {"ROOGAB_PORT": "9100", "ROOGAB_THREADS": "16"}
    config = load_config(path, env, overrides={"port": 9200, "host": None})
    assert (config.port, config.threads, config.repair_attempts) == (9200, 16, 2)


@pytest.mark.parametrize(("text", "key"), [
    ("port = 'abc'", "port"),
    ("port = 70000", "port"),
    ("threads = 0", "threads"),
    ("stream_pace = -0.01", "stream_pace"),
    ("stream_pace = 5", "stream_pace"),
    ("log_level = 'loud'", "log_level"),
    ("colour = 'red'", "colour"),
    ("[[providers]]\nkind = 'telepathy'", "providers[0].kind"),
    ("[[providers]]\nkind = 'socketio'", "providers[0].url"),
    ("[[providers]]\nname = 'a'\nwhatever = 1", "providers[0].whatever"),
    ("[[providers]]\nname = 'a'\n[providers.events]\nsend = 3", "providers[0].events.send"),
    ("[[providers]]\nmax_parts = 0", "providers[0].max_parts"),
    ("[[providers]]\nmin_interval = -1", "providers[0].min_interval"),
    ("[[providers]]\nmax_concurrent_turns = 'two'", "providers[0].max_concurrent_turns"),
    ("[[providers]]\nkind = 'gradio'", "providers[0].url"),
    ("[[providers]]\nkind = 'gradio'\nurl = 'http://x/'\nevents_path = '/x'", "providers[0].events_path"),
    ("retry_max_delay = 'soon'", "retry_max_delay"),
    ("tokenizer_idle = -1", "tokenizer_idle"),
    ("tokenizer_idle = 0.001", "tokenizer_idle"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == key
    assert key in str(info.value)


def test_bad_env_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match="reply_timeout"):
        load_config(env={"ROOGAB_REPLY_TIMEOUT": "soon"})


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})


def test_non_loopback_needs_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="API keys"):
        load_config(env={}, overrides={"host": "0.0.0.0"})
    config = load_config(env={"ROOGAB_API_KEYS": "k1, k2"}, overrides={"host": "0.0.0.0"})
    assert config.api_keys == ("k1", "k2") and not config.is_loopback()


def test_keys_from_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nalpha\n\nbeta\n")
    path = tmp_path / "c.toml"
    path.write_text(f"api_keys_file = '{keys}'\n")
    assert load_config(path, env={}).api_keys == ("alpha", "beta")


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().port = 1  # type: ignore[misc]


def test_provider_profile_with_login_from_env(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[providers]]\nname = "team"\nkind = "chainlit"\nurl = "http://127.0.0.1:8000"\n'
                    'username = "alice"\npassword_env = "TEAM_PASSWORD"\nmodels = []\n'
                    '[providers.headers]\nX-Team = "blue"\n')
    config = load_config(path, env={"TEAM_PASSWORD": "hunter2"})
    [team] = config.providers
    assert (team.name, team.kind, team.username, team.password) == ("team", "chainlit", "alice", "hunter2")
    assert team.headers == (("X-Team", "blue"),) and team.models == ()
    assert "hunter2" not in repr(config) and "blue" not in repr(config)


def test_missing_password_variable_and_literal_password_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[providers]]\nkind = "chainlit"\nurl = "http://x"\npassword_env = "NOPE"\n')
    with pytest.raises(ConfigError, match="NOPE is not set"):
        load_config(path, env={})
    path.write_text('[[providers]]\nkind = "chainlit"\nurl = "http://x"\npassword = "hunter2"\n')
    with pytest.raises(ConfigError, match="password_env") as info:
        load_config(path, env={})
    assert "hunter2" not in str(info.value)


def test_pacing_and_gradio_settings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "roogab.toml"
    path.write_text("retry_max_delay = 5\n[[providers]]\nname = 'space'\nkind = 'gradio'\nurl = 'http://127.0.0.1:7860/'\n"
                    "api_name = '/respond'\nmax_message_chars = 20000\nmax_parts = 4\nmin_interval = 1.5\n"
                    "max_concurrent_turns = 2\n")
    config = load_config(path, env={})
    [profile] = config.providers
    assert config.retry_max_delay == 5.0
    assert (profile.kind, profile.models, profile.options) == ("gradio", (), (("api_name", "/respond"),))
    assert (profile.max_message_chars, profile.max_parts, profile.min_interval, profile.max_concurrent_turns) \
        == (20000, 4, 1.5, 2)
