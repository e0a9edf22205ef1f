"""Secrets in the log and a world-readable store (issue 13, item 10).

`roogab demo` in a subprocess whose scripted model echoes every secret into a reply that fails
the format twice: the 502's error snippet quotes them, and RooGab logs that error. Its whole
stderr must hold none of them. Plus: a password inside a provider URL or the PostgreSQL DSN is a
secret, and the data directory and the database are private to the user.
"""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import stat
from pathlib import Path

import pytest
from support import wait_for_url
from test_security import COOKIE, HEADER_SECRET, KEY, PASSWORD, _raw, _UrlOnly, secret_demo

from roogab.config import Config, load_config
from roogab.errors import ConfigError
from roogab.redact import Redactor
from roogab.runtime import secrets
from roogab.store import SqliteStore


def test_secrets_echoed_into_an_error_never_reach_stderr(tmp_path: Path) -> None:
    echo = f"I will not comply. {KEY} {PASSWORD} session={COOKIE} {HEADER_SECRET}"
    script = tmp_path / "script.jsonl"
    script.write_text("\n".join(json.dumps({"reply": echo}) for _ in range(2)) + "\n")
    proc = secret_demo(tmp_path, "--script", str(script), username=False)
    try:
        url, seen = wait_for_url(proc)
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


def _postgres_config(dsn: str) -> Config:
    return load_config(env={"RG_DSN": dsn}, overrides={"store": "postgres", "dsn_env": "RG_DSN"})


@pytest.mark.parametrize(("dsn", "password"), [
    ("postgresql://roogab:s3cr%zzet-db-pass@127.0.0.1:1/roogab", "s3cr%zzet-db-pass"),  # malformed: as written
    ("postgresql://roogab:p%40ss%21-db-pass@db.example/roogab", "p@ss!-db-pass"),
    ("postgresql://roogab:bracket-db-pass@[db.example/roogab", "bracket-db-pass"),  # urlsplit refuses it
    ("postgresql://roogab:at@sign-db-pass@db.example:5432/roogab", "at@sign-db-pass"),
    ("postgres://db.example/roogab?user=roogab&password=query-db-pass&sslmode=require", "query-db-pass"),
    ("host=db.example user=roogab password=kv-db-pass dbname=roogab", "kv-db-pass"),
    (r"host=db.example password='quoted \'db\' pass' dbname=roogab", "quoted 'db' pass"),
])
def test_a_postgres_dsn_password_is_a_secret(dsn: str, password: str) -> None:
    config = _postgres_config(dsn)
    assert password in secrets(config)
    logged = Redactor(secrets(config)).redact(f"bad DSN {dsn}: {password}")
    assert re.search(r"db\W{0,2}pass", logged) is None, logged  # neither as written nor decoded


@pytest.mark.parametrize("dsn", ["postgresql://roogab:s3cr%zzet-db-pass@127.0.0.1:1/roogab",
                                 "postgresql://roogab:s3cr-db-pass@[127.0.0.1/roogab",
                                 "host=127.0.0.1 password='s3cr-db-pass"])
def test_a_malformed_dsn_is_refused_at_once_without_its_password(dsn: str) -> None:
    """libpq quotes the part of a DSN it cannot parse (the password too), and psycopg's pool would
    retry it and log that at WARNING until its timeout: it is a configuration error at once, by
    libpq's reason without the quoted parts, and its password is a secret to the logs."""
    pytest.importorskip("psycopg_pool")
    from roogab.store_postgres import PostgresStore

    config = _postgres_config(dsn)
    assert any("db-pass" in secret for secret in secrets(config))
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    pool_log = logging.getLogger("psycopg")
    pool_log.addHandler(handler)
    try:
        with pytest.raises(ConfigError, match="dsn_env: not a valid PostgreSQL connection string: .") as refused:
            PostgresStore(config.dsn, connect_timeout=30)
    finally:
        pool_log.removeHandler(handler)
    assert "db-pass" not in str(refused.value) and refused.value.__cause__ is None, refused.value
    assert out.getvalue() == ""  # no connection was tried


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
