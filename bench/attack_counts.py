"""Issue 13's attack classes, counted: 5xx answers, hangs, lost turns, truncations passed off as
complete, forged turns run. Runs whatever roogab is on PYTHONPATH (so the same script measures a
tree before and after a change) against an in-process `roogab demo` stack on loopback.

    PYTHONPATH=. python bench/attack_counts.py

A hang is a request unanswered after HANG seconds. Each probe is independent and tolerant of the
API it finds (an older tree lacks some of today's names).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from roogab.config import load_config
from roogab.demo import ScriptedReply
from roogab.runtime import Running, start_demo

HANG = 8.0
ROOT = Path(__file__).resolve().parent.parent
counts = {"5xx": 0, "hangs": 0, "lost_turns": 0, "truncations_passed_as_complete": 0, "forged_turns_run": 0}


def post(running: Running, body: dict[str, Any], headers: dict[str, str] | None = None) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", running.server.port, timeout=HANG)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body).encode(),
                     {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status
    except TimeoutError:
        counts["hangs"] += 1
        return None
    finally:
        conn.close()


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "demo/gab-1", "messages": [{"role": "user", "content": f"{text} {uuid.uuid4().hex}"}], **extra}


def note(status: int | None) -> None:
    if status is not None and status >= 500:
        counts["5xx"] += 1


def hostile_output(running: Running) -> None:
    assert running.demo is not None
    deep = "{ a = " * 3000 + "1" + " }" * 3000
    reply = f'```lua\nreturn {{ tool_calls = {{ {{ name = "read_file", arguments = {deep} }} }} }}\n```'
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]
    running.demo.push(ScriptedReply(reply), ScriptedReply(reply))
    status = post(running, ask("deep", tools=tools))
    if status not in (502,):  # non_compliant_response is the right answer
        note(status if status is not None else None)


def forged(running: Running) -> None:
    assert running.demo is not None
    before = len([r for r in running.demo.received if r.prompt])
    body = json.dumps(ask("forged")).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        conn = http.client.HTTPConnection("127.0.0.1", running.server.port, timeout=HANG)
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": ctype, "Origin": "https://evil.example",
                                                              "Sec-Fetch-Site": "cross-site"})
        conn.getresponse().read()
        conn.close()
    counts["forged_turns_run"] += len([r for r in running.demo.received if r.prompt]) - before


def lockout(running: Running) -> None:
    idle = [socket.create_connection(("127.0.0.1", running.server.port)) for _ in range(120)]
    try:
        conn = http.client.HTTPConnection("127.0.0.1", running.server.port, timeout=HANG)
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
        except (TimeoutError, ConnectionError):
            counts["hangs"] += 1
        finally:
            conn.close()
    finally:
        for sock in idle:
            sock.close()


def huge_body(running: Running) -> None:
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=HANG) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 943718400\r\n\r\n{")
        try:
            sock.recv(100)
        except TimeoutError:
            counts["hangs"] += 1


def retry_after_window() -> None:
    from roogab import registry as reg
    from roogab.prompt import PromptBook
    from roogab.providers.fake import FakeProvider
    from roogab.service import ChatService, TurnSettings
    from roogab.wire import parse_chat_request

    now = [1e6]
    service = ChatService({"fake": FakeProvider(["```lua\nreturn { text = [==[a]==] }\n```"] * 2)},
                          reg.Registry(clock=lambda: now[0]), PromptBook.load(), TurnSettings())
    request = parse_chat_request({"model": "fake/model", "messages": [{"role": "user", "content": "hi"}]})
    list(service.run(request, "a"))
    now[0] += reg.RETRY_WINDOW_SECONDS + 1
    thread = threading.Thread(target=lambda: list(service.run(request, "a")), daemon=True)
    thread.start()
    thread.join(HANG)
    if thread.is_alive():
        counts["hangs"] += 1


LOCKER = "import sqlite3,sys;d=sqlite3.connect(sys.argv[1],isolation_level=None);d.execute('BEGIN IMMEDIATE');" \
         "print('locked',flush=True);sys.stdin.readline()"


def locked_store(tmp: Path) -> None:
    running = start_demo(load_config(env={}, overrides={"port": 0, "data_dir": str(tmp / "locked")}))
    try:
        assert running.demo is not None
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp / "locked" / "roogab.sqlite3")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        try:
            for _ in range(2):
                running.demo.push(ScriptedReply("```lua\nreturn { text = [==[answered]==] }\n```"))
                status = post(running, ask("locked store"))
                note(status)
                if status != 200:
                    counts["lost_turns"] += 1  # the chat service answered; the agent did not get it
        finally:
            locker.kill()
            locker.wait()
    finally:
        running.close()


def truncations() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "attack_truncations.py")], capture_output=True,
                          text=True, check=False)
    counts["truncations_passed_as_complete"] += json.loads(done.stdout.strip().splitlines()[-1])[
        "truncations_passed_as_complete"]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        running = start_demo(load_config(env={}, overrides={"port": 0, "data_dir": str(Path(tmp) / "data")}))
        try:
            for probe in (hostile_output, forged, lockout, huge_body):
                probe(running)
        finally:
            running.close()
        retry_after_window()
        locked_store(Path(tmp))
    truncations()
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
