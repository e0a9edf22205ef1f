"""`roogab serve --workers 2`: one listening socket, two worker processes, one SQLite store.

A real `roogab serve` subprocess on a free loopback port in front of the bundled demo chat
service (started here, in this process, so its received log can be read). Every request opens
a new connection, so the kernel hands turns to either worker; ``x-roogab-instance`` and
``/healthz`` name the worker (its PID) that answered.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from cluster import ROOT, free_port, get_json, roo_next_turn
from server_process import stop_by_pid
from support import ROO, captured_bodies, no_keepalive

from roogab.demo import DemoChatService, ScriptedReply

pytestmark = [pytest.mark.loopback, pytest.mark.slow]

CALL = ('```lua\nreturn {{ text = [==[Step {n}.]==], tool_calls = {{\n'
        '  {{ name = "list_files", arguments = {{ path = "src{n}", recursive = false }} }} }} }}\n```')
MAX_TURNS = 24   # turns until both workers have served one (each lands on either: 2^-23 to miss)


class Workers:
    """`roogab serve --workers N` on a free port, with the demo provider at *demo_url*."""

    def __init__(self, workdir: Path, demo_url: str, workers: int = 2, store: str = "sqlite") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "roogab.toml"
        self.data = workdir / "data"
        self.config.write_text(
            f'store = "{store}"\ndata_dir = "{workdir / "data"}"\ninstance = "t"\nlease_ttl = 2\n'
            f'ping_interval = 0.2\n[[providers]]\nname = "demo"\nkind = "demo"\nurl = "{demo_url}"\n')
        self.log_path = workdir / "serve.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("HTTPS_PROXY", None)
        env.pop("HTTP_PROXY", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "roogab", "serve", "--config", str(self.config),
                                      "--port", str(self.port), "--workers", str(workers)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=workdir)

    def wait_ready(self, workers: int, limit: float = 90.0) -> set[str]:
        """Until /healthz (a new connection each time) has answered from *workers* workers."""
        deadline, seen = time.monotonic() + limit, set()
        while time.monotonic() < deadline and len(seen) < workers:
            if self.proc.poll() is not None:
                raise RuntimeError(f"roogab exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                status, body = get_json(self.url + "/healthz", timeout=2)
                if status == 200:
                    seen.add(body["instance"])
            except OSError:
                pass
            time.sleep(0.02)
        if len(seen) < workers:
            raise RuntimeError(f"only {seen} answered: {self.log_path.read_text()}")
        return seen

    def stop(self) -> None:
        """SIGTERM, then wait; SIGKILL when it does not go."""
        stop_by_pid(self.proc, 30)
        self.log.close()


def pid_of(instance: str) -> int:
    """The worker's PID, the last part of its instance name (``t-w1-12345``)."""
    return int(instance.rsplit("-", 1)[1])


def alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoChatService]:
    with DemoChatService() as service:
        yield service


@pytest.fixture(scope="module")
def served(demo: DemoChatService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workers, set[str]]]:
    workers = Workers(tmp_path_factory.mktemp("workers"), demo.url)
    try:
        yield workers, workers.wait_ready(2)
    finally:
        workers.stop()


def _opening(task: str) -> dict[str, Any]:
    body = captured_bodies(ROO)[0]
    body.update(model="demo/gab-1", stream=False)
    body.pop("stream_options", None)
    first = next(m for m in body["messages"] if m["role"] == "user")
    first["content"] = [{"type": "text", "text": f"<task>{task}</task>"}, *first["content"]] \
        if isinstance(first["content"], list) else f"<task>{task}</task>\n{first['content']}"
    return body


def _ask(url: str, body: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120,
                       http_client=no_keepalive()) as client:
        raw = client.chat.completions.with_raw_response.create(**body)
        return raw.parse().choices[0].message, {k.lower(): v for k, v in raw.headers.items()}


def test_healthz_names_each_worker_by_its_pid(served: tuple[Workers, set[str]]) -> None:
    workers, names = served
    pids = {pid_of(name) for name in names}
    assert len(pids) == 2 and workers.proc.pid not in pids  # two processes, neither the parent
    assert all(name.startswith(("t-w0-", "t-w1-")) for name in names)
    assert all(alive(pid) for pid in pids)
    assert {int(line) for line in _children(workers.proc.pid)} == pids


def test_a_roo_task_whose_turns_land_on_both_workers_keeps_one_provider_conversation(
        served: tuple[Workers, set[str]], demo: DemoChatService) -> None:
    workers, _ = served
    demo.reset()
    body, by = _opening("two workers"), []
    for n in range(MAX_TURNS):
        demo.push(ScriptedReply(CALL.format(n=n)))
        message, headers = _ask(workers.url, body)
        assert message.content == f"Step {n}."
        by.append(headers["x-roogab-instance"])
        body = roo_next_turn(body, message, n)
        if n >= 3 and len(set(by)) == 2:
            break
    assert len(set(by)) == 2, f"every turn landed on {by[0]}"
    turns = len(by)
    prompts = [(r.event, r.conversation, r.prompt) for r in demo.received if r.prompt is not None]
    assert len(prompts) == turns  # the chat service got each turn once
    assert [e for e, _, _ in prompts] == ["newConversation"] + ["sendPrompt"] * (turns - 1)
    assert len({c for e, c, _ in prompts if e == "sendPrompt"}) == 1  # one provider conversation
    for n in range(1, turns):
        assert sum(f"listing {n - 1}:" in p for _, _, p in prompts) == 1  # each message once
        assert f"listing {n - 1}:" in prompts[n][2]
    # Every turn took the task's lease in the shared SQLite file: its owner is the last turn's worker.
    with sqlite3.connect(workers.data / "roogab.sqlite3") as db:
        rows = db.execute("SELECT owner, busy FROM leases").fetchall()
    assert len(rows) == 1 and rows[0][1] == 0 and rows[0][0] == by[-1]


def test_the_workers_count_tokens_with_the_parents_tokenizer_tables(
        served: tuple[Workers, set[str]], demo: DemoChatService) -> None:
    """The parent builds cl100k's tables (~2 MiB since the compact table, docs/benchmarks.md
    §25; tiktoken's were 21) before it forks, so the workers' counts use its pages copy-on-write:
    each worker shares them, dirty, with the parent, beside the rest of the parent's heap. With
    tiktoken's tables, before the change a worker shared 6 MiB with the parent and held 58 MiB
    dirty of its own; after it, 27 and 36 MiB; with the compact table a CI run shared 9.2 MiB.
    That a worker never lets inherited tables go is tests/test_usage.py's."""
    workers, names = served
    demo.reset()
    counted: set[str] = set()
    for n in range(MAX_TURNS):
        demo.push(ScriptedReply(CALL.format(n=n)))
        message, headers = _ask(workers.url, _opening(f"tokens {n}"))
        assert message.content == f"Step {n}."
        counted.add(headers["x-roogab-instance"])
        if counted == names:
            break
    assert counted == names, f"every turn landed on {counted}"
    for name in names:  # each worker has counted a Roo prompt's tokens
        pid = pid_of(name)
        assert _kib(pid, "Shared_Dirty") > 4 * 1024  # the parent's heap, tables included, from before the fork
        assert _kib(pid, "Private_Dirty") < 48 * 1024  # and the worker did not build its own


def _kib(pid: int, field: str) -> int:
    """A ``/proc/PID/smaps_rollup`` field, in KiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_sigterm_stops_the_parent_and_every_worker(demo: DemoChatService, tmp_path: Path) -> None:
    workers = Workers(tmp_path, demo.url)
    try:
        pids = {pid_of(name) for name in workers.wait_ready(2)}
    finally:
        workers.stop()
    assert workers.proc.returncode == 0
    assert not any(alive(pid) for pid in pids)
    assert "2 workers serving" in workers.log_path.read_text()


def test_a_dead_worker_stops_the_group_with_a_non_zero_status(demo: DemoChatService, tmp_path: Path) -> None:
    workers = Workers(tmp_path, demo.url)
    try:
        pids = sorted(pid_of(name) for name in workers.wait_ready(2))
        os.kill(pids[0], signal.SIGKILL)
        assert workers.proc.wait(timeout=60) == 1
    finally:
        workers.stop()
    assert not alive(pids[1])
    text = workers.log_path.read_text()
    assert f"(pid {pids[0]}) was killed by signal 9: stopping the other workers" in text


def test_several_workers_on_the_memory_store_is_a_config_error(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "roogab", "serve", "--workers", "2", "--port", "0"],
                            env=dict(env, ROOGAB_STORE="memory"), capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 2
    assert "workers" in result.stderr and "memory" in result.stderr


def _children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def test_the_workers_setting() -> None:
    from roogab.config import load_config
    from roogab.errors import ConfigError

    assert load_config(env={}).workers == 1
    assert load_config(env={"ROOGAB_WORKERS": "4"}).workers == 4
    with pytest.raises(ConfigError, match="workers"):
        load_config(env={}, overrides={"workers": 0})
    with pytest.raises(ConfigError, match="memory"):
        load_config(env={"ROOGAB_STORE": "memory"}, overrides={"workers": 2})
