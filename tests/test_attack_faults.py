"""Store faults and crashes against real processes (issue 13, items 6 and 7).

- A store that cannot be opened: `roogab demo` prints a message naming the path and exits 2.
- A disk that fills up under a running RooGab (a small tmpfs, mounted when the tests run as
  root; CI sets ROOGAB_REQUIRE_TMPFS=1 to make the skip a failure): turns are still answered.
- SIGKILL of `roogab serve` in the middle of a streamed reply, then a restart on the same store:
  the repeated turn is replayed onto a new conversation, never sent into the old one again.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from support import wait_for_url

from roogab.config import load_config
from roogab.demo import DemoChatService, ScriptedReply
from roogab.runtime import start_demo

pytestmark = pytest.mark.loopback


def _env(tmp_path: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ROOGAB_")},
            "XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}


def _garbage(d: Path) -> None:
    (d / "roogab.sqlite3").write_bytes(b"this is not a database" * 100)


def _directory(d: Path) -> None:
    (d / "roogab.sqlite3").mkdir()


def _newer(d: Path) -> None:
    db = sqlite3.connect(d / "roogab.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()


def _serve_once(tmp_path: Path, data: Path) -> subprocess.CompletedProcess[str]:
    """``roogab serve`` on *data* (the demo keeps its store in memory); the store is opened before
    any chat service is reached, so the closed port of this one is never tried."""
    config = tmp_path / "roogab.toml"
    config.write_text('[[providers]]\nname = "chat"\nkind = "websocket"\nurl = "ws://127.0.0.1:9/"\n')
    return subprocess.run([sys.executable, "-m", "roogab", "serve", "--config", str(config), "--port", "0"],
                          check=False, capture_output=True, text=True,
                          env={**_env(tmp_path), "ROOGAB_DATA_DIR": str(data)}, timeout=60)


@pytest.mark.parametrize("spoil", [_garbage, _directory, _newer])
def test_a_store_that_cannot_be_opened_exits_2_naming_the_path(tmp_path: Path, spoil: object) -> None:
    data = tmp_path / "data"
    data.mkdir()
    spoil(data)  # type: ignore[operator]
    done = _serve_once(tmp_path, data)
    assert done.returncode == 2, done.stderr
    assert str(data / "roogab.sqlite3") in done.stderr and "Traceback" not in done.stderr


def test_a_data_dir_that_is_a_file_exits_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("a file")
    done = _serve_once(tmp_path, data)
    assert done.returncode == 2 and str(data) in done.stderr and "Traceback" not in done.stderr


# -- a disk that fills up ----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("ROOGAB_REQUIRE_TMPFS"):
            raise RuntimeError("mounting a tmpfs needs root")
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> Path:
    filler = mount / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_does_not_lose_answered_turns(small_disk: Path) -> None:
    running = start_demo(load_config(env={}, overrides={"port": 0, "data_dir": str(small_disk / "roogab")}))
    try:
        assert running.demo is not None
        with openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0) as client:
            filler = _fill(small_disk)
            answers = []
            for i in range(3):  # bigger than what is left: every write fails
                running.demo.push(ScriptedReply(f"```lua\nreturn {{ text = [==[answer {i} {'x' * 3000}]==] }}\n```"))
                messages = [{"role": "user", "content": f"disk full {uuid.uuid4().hex} " + "y" * 4000}]
                answers.append(client.chat.completions.create(model="demo/gab-1", messages=messages))
            assert [a.choices[0].finish_reason for a in answers] == ["stop"] * 3
            assert running.registry.unsaved() >= 1  # the store refused; the registry kept them
            filler.unlink()
            running.demo.push(ScriptedReply("```lua\nreturn { text = [==[after]==] }\n```"))
            client.chat.completions.create(model="demo/gab-1", messages=[{"role": "user", "content": "space again"}])
        assert running.registry.unsaved() == 0  # written once the disk had room
    finally:
        running.close()


# -- SIGKILL mid-reply -------------------------------------------------------------------------------

def _serve(config: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "roogab", "serve", "--config", str(config), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url, _ = wait_for_url(proc)
    except AssertionError:  # it never printed its URL: leave no child behind
        proc.kill()
        proc.communicate()
        raise
    return proc, url


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, as a user would; a child that outlives it is killed before the test fails."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def test_sigkill_mid_reply_then_restart_replays_instead_of_sending_twice(tmp_path: Path) -> None:
    with DemoChatService() as demo:
        config = tmp_path / "roogab.toml"
        config.write_text(textwrap.dedent(f"""\
            data_dir = "{tmp_path / 'data'}"
            [[providers]]
            name = "demo"
            kind = "demo"
            url = "{demo.url}"
            """))
        env = _env(tmp_path)
        first = [{"role": "user", "content": "first question"}]
        demo.push(ScriptedReply("```lua\nreturn { text = [==[first answer]==] }\n```"))
        proc, url = _serve(config, env)
        second = [*first, {"role": "assistant", "content": "first answer"},
                  {"role": "user", "content": "tool result: 42"}]
        try:
            with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
                client.chat.completions.create(model="demo/gab-1", messages=first)
                demo.push(ScriptedReply("```lua\nreturn { text = [==[" + "slow " * 400 + "]==] }\n```",
                                        chunk=4, delay_ms=50))
                with client.chat.completions.create(model="demo/gab-1", messages=second, stream=True) as stream:
                    next(iter(stream))  # the reply is under way ...
                    proc.send_signal(signal.SIGKILL)  # ... and RooGab dies
                    proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        demo.push(ScriptedReply("```lua\nreturn { text = [==[second answer]==] }\n```"))
        proc, url = _serve(config, env)
        try:
            with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
                answer = client.chat.completions.create(model="demo/gab-1", messages=second)
            assert answer.choices[0].message.content == "second answer"
        finally:
            _stop(proc)
        sends = [r for r in demo.received if r.prompt and "tool result: 42" in r.prompt]
        assert len(sends) == 2
        crashed, repeated = sends
        assert repeated.conversation != crashed.conversation, \
            "the repeated turn went into the conversation that already holds an unseen reply"
        assert "first question" in (repeated.prompt or "")  # replayed onto the new conversation
