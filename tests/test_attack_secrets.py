"""Secrets in the log and a world-readable store (issue 13, item 10).

`roogab demo` in a subprocess whose scripted model echoes every secret into a reply that fails
the format twice: the 502's error snippet quotes them, and RooGab logs that error. Its whole
stderr must hold none of them. Plus: a password inside a provider URL is a secret, and the data
directory and the database are private to the user.
"""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path

from test_security import COOKIE, HEADER_SECRET, KEY, PASSWORD, _raw, _UrlOnly, _wait_for_url, secret_demo

from roogab.config import load_config
from roogab.runtime import secrets
from roogab.store import SqliteStore


def test_secrets_echoed_into_an_error_never_reach_stderr(tmp_path: Path) -> None:
    echo = f"I will not comply. {KEY} {PASSWORD} session={COOKIE} {HEADER_SECRET}"
    script = tmp_path / "script.jsonl"
    script.write_text("\n".join(json.dumps({"reply": echo}) for _ in range(2)) + "\n")
    proc = secret_demo(tmp_path, "--script", str(script), username=False)
    try:
        url, seen = _wait_for_url(proc)
        body = {"model": "demo/gab-1", "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]}
        status, _, answer = _raw(_UrlOnly(url), "POST", "/v1/chat/completions", body,  # type: ignore[arg-type]
                                 {"Authorization": f"Bearer {KEY}"})
        assert status == 502 and b"non_compliant_response" in answer
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    output = seen + output
    assert "502 POST /v1/chat/completions" in output and "I will not comply" in output  # the error was logged
    for secret in (KEY, PASSWORD, COOKIE, HEADER_SECRET):
        assert secret not in output, secret


def test_a_password_inside_a_provider_url_is_a_secret(tmp_path: Path) -> None:
    config_file = tmp_path / "roogab.toml"
    config_file.write_text('[[providers]]\nname = "chat"\nkind = "socketio"\n'
                           'url = "wss://dev:url-pass-9f8e7d%21@chat.example"\n')
    config = load_config(config_file, env={})
    assert "url-pass-9f8e7d!" in secrets(config)


def test_data_directory_and_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "roogab"
    store = SqliteStore(data / "roogab.sqlite3")
    store.close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "roogab.sqlite3").stat().st_mode) == 0o600


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "roogab.sqlite3"
    SqliteStore(path).close()
    path.chmod(0o644)
    SqliteStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
