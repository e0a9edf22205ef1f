"""The ``roogab`` command: serve, demo, and offline tools. Start-up errors exit with status 2."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import __version__
from .config import Config, load_config
from .errors import ConfigError, RequestError, StoreError, UpstreamError
from .logs import configure_logging

if TYPE_CHECKING:  # the commands import what they run: `roogab --help` loads no web stack
    from .demo.script import ScriptedReply
    from .runtime import Running
    from .store import ConversationRecord, Store
    from .wire import ChatRequest

__all__ = ["main"]

log = logging.getLogger("roogab")

CONFIG_HELP = "TOML config file. Precedence: defaults < this file < ROOGAB_* environment < flags."


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="roogab")
def main() -> None:
    """RooGab: the APIs coding agents speak, in front of a browser chat service.

    OpenAI Chat Completions (Zoo Code, Cline, Kilo Code, OpenCode, the SDKs), OpenAI Responses
    (Codex) and Anthropic Messages (Claude Code). Point the agent at the printed base URL. Start with
    `roogab demo` to see the whole path work against the bundled demo chat service.

    \b
    Examples:
      roogab demo                      # the bundled demo chat service, and RooGab on :8787
      roogab try                       # one probe turn through the running RooGab
      roogab serve --config roogab.toml
      roogab check --config roogab.toml
      roogab parse reply.txt --request turn.json
      roogab conversations list
      roogab docs                      # where the documentation is
    """


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                     help=CONFIG_HELP),
        click.option("--host", help="Address to bind (default 127.0.0.1). A non-loopback address needs API keys."),
        click.option("--port", type=int, help="Port to listen on (default 8787; 0 picks a free one)."),
        click.option("--threads", type=int, help="HTTP worker threads; each open stream holds one (default 64)."),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
                     help="Log verbosity (default info)."),
        click.option("--log-format", type=click.Choice(["text", "json"]), help="Log format (default text)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command()
@click.option("--workers", type=int, help="Worker processes sharing the listening socket and the store "
                                          "(default 1; more needs store sqlite or postgres).")
@_common
def serve(config_file: Path | None, **flags: Any) -> None:
    """Serve the providers of the config file (see `roogab docs`) on an OpenAI-compatible API.

    API keys come from the ROOGAB_API_KEYS environment variable (comma-separated) or the file
    named by `api_keys_file` in the config, never from the command line. The inspector is at
    /inspect (a browser behind keys signs in there, or opens /inspect?key=KEY).

    \b
    Example:
      ROOGAB_API_KEYS=s3cret roogab serve --config roogab.toml --host 0.0.0.0
    """
    from .runtime import start

    config = _load(config_file, flags)
    if config.workers > 1:
        _serve_workers(config)
    _run(lambda: start(config), config)


def _serve_workers(config: Config) -> NoReturn:
    """``serve`` with several worker processes (roogab.workers): the parent binds and waits."""
    from .runtime import start
    from .store import open_store
    from .usage import TokenCounter
    from .workers import Worker, supervise

    def run(worker: Worker) -> int:
        _run(lambda: start(worker.config, sockets=worker.sockets), worker.config,
             banner=worker.index == 0, parent=worker.parent)
        return 0

    try:
        # create and migrate the store once, here: workers opening a new file together race
        open_store(config.store, config.data_dir, dsn=config.dsn).close()
        # the tokenizer's tables (~2 MiB) are never written once built: built here, before the
        # fork, they are one copy the workers share instead of one per worker
        TokenCounter().warm()
        status = supervise(config, run)
    except (ConfigError, StoreError) as exc:
        _fail(str(exc), config=config)
    sys.exit(status)


@main.command()
@click.option("--script", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON Lines of scripted replies, served one per message received: "
                   '{"reply": "...", "format": "markdown|html", "stream": "delta|cumulative", '
                   '"chunk": 8, "delay_ms": 0}; faults: "drop_after": N (disconnect after N chunks), '
                   '"error": "message" with "code" (the service refuses the turn), "silent": true '
                   "(never answers). When it runs out, a built-in assistant answers.")
@_common
def demo(script: Path | None, config_file: Path | None, **flags: Any) -> None:
    """Start the bundled demo chat service and RooGab wired to it.

    Prints the base URL, the models and the settings to paste into Zoo Code, Cline, Kilo Code,
    Claude Code and Codex. The demo keeps its conversations and turn log in memory: it never
    mixes with what `roogab serve` stores.

    \b
    The demo chat service (its URL is printed) also has:
      POST /demo/script    a JSON list of script lines, served next (as --script)
      POST /demo/reset     forget the script, the log and the conversations
      GET  /demo/received  every event it received, as JSON (what RooGab sent it)

    \b
    Examples:
      roogab demo
      roogab demo --script roogab/demo/example.jsonl --port 0
    """
    from .runtime import start_demo

    from_script = _script(script)
    config = dataclasses.replace(_load(config_file, flags), store="memory", workers=1)
    _run(lambda: start_demo(config, from_script), config, scripted=bool(from_script))


@main.command("try")
@click.option("--model", help="The model to ask (default: the first one /v1/models lists).")
@click.option("--url", "base_url", help="RooGab's base URL (default: from the config's host and port).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP)
def try_(model: str | None, base_url: str | None, config_file: Path | None) -> None:
    """Send one probe turn through a running RooGab and print what came back (exit 1 on failure).

    The key is the first of ROOGAB_API_KEYS when keys are configured.

    \b
    Examples:
      roogab try
      roogab try --model demo/gab-1 --url http://127.0.0.1:8787
    """
    from .probe import PROBE, ProbeFailed, probe, wildcard_url

    config = _load(config_file, {})
    url = (base_url or wildcard_url(config.host, config.port)).rstrip("/")
    key = config.api_keys[0] if config.api_keys else "roogab"
    click.echo(f"asking {url} ({model or 'first model'}): {PROBE}")
    try:
        result = probe(url, key, model)
    except ProbeFailed as exc:
        _fail(str(exc), status=1)
    click.echo(f"model   : {result.model}")
    click.echo(f"answer  : {result.text}")
    click.echo(f"turn    : {url}/inspect?q={result.turn_id}")
    if result.from_record is not None:
        click.echo(f"note    : answered from the retry record (turn {result.from_record}), not by the chat service")


@main.command()
def docs() -> None:
    """Print where the documentation is (and list its pages): installed with the package, and the
    source tree's README when RooGab runs from one."""
    package = Path(__file__).resolve().parent
    found = [p for p in (package.parent / "README.md", package / "docs") if p.exists()]
    if not found:
        click.echo("The documentation is not installed with the package: it is README.md and docs/ in "
                   "RooGab's source tree. `roogab COMMAND --help` describes each command.")
        return
    for path in found:
        click.echo(str(path))
        if path.is_dir():
            for page in sorted(path.glob("*.md")):
                click.echo(f"  {page.name}")


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP)
def check(config_file: Path | None) -> None:
    """Check every configured chat service: connect, log in, list models, send a one-line probe
    and report whether the reply came back as a valid envelope. Exit status 1 on any failure."""
    from .check import check_providers

    config = _load(config_file, {})
    failed = False
    try:
        for result in check_providers(config):
            click.echo(f"{result.provider}:")
            for line in result.lines:
                click.echo(f"  {line}")
            failed = failed or not result.ok
    except ConfigError as exc:
        _fail(str(exc))
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("reply_file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--request", "request_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The chat-completions request (JSON body, a captured session file, or a turn downloaded "
                   "from the inspector): its tools are used to recognise XML tool tags and to validate each call.")
def parse(reply_file: Path | None, request_file: Path | None) -> None:
    """Parse a raw model reply offline and print its events as JSON Lines.

    With --request, each tool call is validated against the request's tools and a last
    line gives the verdict. Exit status 1 when the reply is not compliant. A turn downloaded
    from the inspector holds its raw reply too: `roogab parse --request roogab-turn-….json`.
    """
    from .offline import parse_report

    chat = _read_request(request_file) if request_file else None
    if reply_file is not None:
        reply = reply_file.read_text("utf-8")
    elif request_file is not None:
        reply = _bundled_reply(request_file)
    else:
        _fail("give a REPLY_FILE, or --request with a turn downloaded from the inspector")
    report = parse_report(reply, chat)
    for line in report.lines:
        click.echo(json.dumps(line, ensure_ascii=False))
    sys.exit(0 if report.compliant else 1)


@main.group()
def conversations() -> None:
    """List, show or remove the stored conversations (the SQLite store of the config).

    Removing a conversation makes the next turn of its task start afresh by replay; restart a
    running RooGab for it to notice.
    """


@conversations.command("list")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def conversations_list(config_file: Path | None, as_json: bool) -> None:
    """Every stored conversation, most recently used first."""
    with _store(config_file) as store:
        records = store.load_conversations()
    for rec in records:
        if as_json:
            click.echo(json.dumps(_record_json(rec)))
        else:
            click.echo(f"{rec.id}  {rec.provider}/{rec.model:<12} turns={rec.turns:<4} "
                       f"updated={_when(rec.updated)}  handle={rec.handle or '-'}")
    if not records and not as_json:
        click.echo("no conversations stored")


@conversations.command("show")
@click.argument("conversation_id")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP)
def conversations_show(conversation_id: str, config_file: Path | None) -> None:
    """One conversation and its latest turns, as JSON."""
    from .inspect_views import turn_json

    with _store(config_file) as store:
        found = [r for r in store.load_conversations() if r.id == conversation_id]
        if not found:
            _fail(f"no conversation {conversation_id}", status=1)
        turns = store.turns(limit=50, conversation_id=conversation_id)
    body = _record_json(found[0])
    body["turns"] = [turn_json(t) for t in turns]
    click.echo(json.dumps(body, indent=2, ensure_ascii=False))


@conversations.command("rm")
@click.argument("conversation_id")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help=CONFIG_HELP)
def conversations_rm(conversation_id: str, config_file: Path | None) -> None:
    """Remove one conversation (its turn log stays until retention drops it)."""
    with _store(config_file) as store:
        removed = store.delete_conversation(conversation_id)
    if not removed:
        _fail(f"no conversation {conversation_id}", status=1)
    click.echo(f"removed {conversation_id}")


@contextmanager
def _store(config_file: Path | None) -> Iterator[Store]:
    from .store import open_store

    config = _load(config_file, {})
    if config.store == "memory":
        _fail("the memory store keeps nothing between runs: set store = \"sqlite\"")
    try:
        store = open_store(config.store, config.data_dir, dsn=config.dsn)
    except (ConfigError, StoreError) as exc:
        _fail(str(exc), status=1, config=config)
    try:
        yield store
    finally:
        store.close()


def _record_json(rec: ConversationRecord) -> dict[str, Any]:
    return {"id": rec.id, "client": rec.client, "provider": rec.provider, "model": rec.model,
            "handle": rec.handle, "turns": rec.turns, "messages_seen": len(rec.transcript),
            "created": rec.created, "updated": rec.updated}


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _read_request(path: Path) -> ChatRequest:
    from .wire import parse_chat_request

    try:
        body = json.loads(path.read_text("utf-8"))
    except ValueError as exc:
        _fail(f"{path} is not JSON: {exc}")
    if isinstance(body, dict) and isinstance(body.get("requests"), list):
        body = next((r["body"] for r in body["requests"] if isinstance(r.get("body"), dict)), None)
    try:
        return parse_chat_request(body)
    except RequestError as exc:
        _fail(f"{path}: {exc}")


def _bundled_reply(path: Path) -> str:
    """The raw reply of a downloaded turn (the last one, after any repair)."""
    from .turnlog import SEPARATOR

    body = json.loads(path.read_text("utf-8"))
    raw = body.get("raw_reply") if isinstance(body, dict) else None
    if not isinstance(raw, str):
        _fail(f"{path} holds no raw reply: give the REPLY_FILE too")
    return raw.split(SEPARATOR)[-1]


def _script(path: Path | None) -> list[ScriptedReply]:
    from .demo.script import load_script

    try:
        return load_script(path) if path else []
    except ConfigError as exc:
        _fail(str(exc))


def _load(config_file: Path | None, flags: dict[str, Any]) -> Config:
    from .redact import Redactor
    from .runtime import secrets
    try:
        config = load_config(config_file, overrides=flags)
        redactor = Redactor(secrets(config))
    except ConfigError as exc:
        _fail(str(exc))
    configure_logging(config.log_level, config.log_format, redactor)
    return config


def _run(starter: Callable[[], Running], config: Config, scripted: bool = False, *,
         banner: bool = True, parent: int | None = None) -> None:
    try:
        running = starter()
    except (ConfigError, StoreError) as exc:  # a store error names the file it could not open
        _fail(str(exc), config=config)
    except UpstreamError as exc:  # a service's words may quote a cookie it refused
        _fail(f"cannot start: {exc}", status=1, config=config)
    try:
        if banner:
            click.echo(_banner(running, scripted))
        _wait_for_signal(parent)
    finally:
        running.close()


def _banner(running: Running, scripted: bool = False) -> str:
    service = running.app.extensions["roogab"].service
    models = [m for m, _ in service.models()]
    keys = running.config.api_keys
    key_hint = f"{len(keys)} key(s) configured (ROOGAB_API_KEYS / api_keys_file)" if keys \
        else "any text, e.g. roogab (no keys configured: loopback only)"
    from .probe import wildcard_url

    url = wildcard_url(running.server.host, running.server.port)
    lines = [f"RooGab {__version__} is running at {url}"]
    if running.config.workers > 1:
        lines.append(f"({running.config.workers} worker processes share it; /healthz names the one that answers)")
    if url != running.url:
        lines.append(f"(listening on every interface, {running.url}: from elsewhere use this machine's address)")
    if running.demo is not None:
        what = "scripted replies first, then a built-in assistant" if scripted else "a built-in assistant"
        lines.append(f"Demo chat service at {running.demo.url} ({what}; turns kept in memory; "
                     "Ctrl-C stops both)")
    from .guide import client_settings

    lines += [f"Inspector at {url}/inspect; `roogab try` sends a probe turn.",
              "", client_settings(url, models, key_hint), "", "Press Ctrl-C to stop."]
    return "\n".join(lines)


def _wait_for_signal(parent: int | None = None) -> None:
    """Until SIGTERM or SIGINT; a worker (*parent* given) also stops when its parent is gone."""
    stop = threading.Event()

    def _handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    while not stop.wait(0.5):
        if parent is not None and os.getppid() != parent:
            log.warning("the parent process %d is gone: stopping this worker", parent)
            break
    log.info("stopping")


def _fail(message: str, status: int = 2, *, config: Config | None = None) -> NoReturn:
    """Print *message* (redacted with *config*'s secrets when there is one) and exit."""
    if config is not None:
        from .redact import Redactor
        from .runtime import secrets
        message = Redactor(secrets(config)).redact(message)
    click.echo(f"roogab: {message}", err=True)
    sys.exit(status)
