"""The ``roogab`` command: serve, demo, and offline tools. Start-up errors exit with status 2."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click

from . import __version__
from .config import Config, load_config
from .demo import ScriptedReply, load_script
from .errors import ConfigError, UpstreamError
from .guide import client_settings
from .logs import configure_logging
from .runtime import Running, start, start_demo

__all__ = ["main"]

log = logging.getLogger("roogab")

CONFIG_HELP = "TOML config file. Precedence: defaults < this file < ROOGAB_* environment < flags."


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="roogab")
def main() -> None:
    """RooGab: an OpenAI-compatible API for coding agents, in front of a browser chat service.

    Point Roo Code, Cline, Kilo Code or an OpenAI SDK at the printed base URL. Start with
    `roogab demo` to see the whole path work against the bundled demo chat service.
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
@_common
def serve(config_file: Path | None, **flags: Any) -> None:
    """Serve the providers of the config file (see docs/) on an OpenAI-compatible API.

    API keys come from the ROOGAB_API_KEYS environment variable (comma-separated) or the file
    named by `api_keys_file` in the config, never from the command line.
    """
    config = _load(config_file, flags)
    _run(lambda: start(config), config)


@main.command()
@click.option("--script", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON Lines of scripted replies, served one per message received: "
                   '{"reply": "...", "format": "markdown|html", "stream": "delta|cumulative", '
                   '"chunk": 8, "delay_ms": 0}. When it runs out, a built-in assistant answers.')
@_common
def demo(script: Path | None, config_file: Path | None, **flags: Any) -> None:
    """Start the bundled demo chat service and RooGab wired to it.

    Prints the base URL, the models and the settings to paste into Roo Code, Cline and Kilo Code.
    """
    from_script = _script(script)
    config = _load(config_file, flags)
    _run(lambda: start_demo(config, from_script), config)


def _script(path: Path | None) -> list[ScriptedReply]:
    try:
        return load_script(path) if path else []
    except ConfigError as exc:
        _fail(str(exc))


def _load(config_file: Path | None, flags: dict[str, Any]) -> Config:
    try:
        config = load_config(config_file, overrides=flags)
    except ConfigError as exc:
        _fail(str(exc))
    configure_logging(config.log_level, config.log_format)
    return config


def _run(starter: Callable[[], Running], config: Config) -> None:
    try:
        running = starter()
    except ConfigError as exc:
        _fail(str(exc))
    except UpstreamError as exc:
        _fail(f"cannot start: {exc}", status=1)
    try:
        click.echo(_banner(running))
        _wait_for_signal()
    finally:
        running.close()


def _banner(running: Running) -> str:
    service = running.app.extensions["roogab"].service
    models = [m for m, _ in service.models()]
    keys = running.config.api_keys
    key_hint = f"{len(keys)} key(s) configured (ROOGAB_API_KEYS / api_keys_file)" if keys \
        else "any text, e.g. roogab (no keys configured: loopback only)"
    lines = [f"RooGab {__version__} is running at {running.url}"]
    if running.demo is not None:
        lines.append(f"Demo chat service at {running.demo.url} (scripted; Ctrl-C stops both)")
    lines += ["", client_settings(running.url, models, key_hint), "", "Press Ctrl-C to stop."]
    return "\n".join(lines)


def _wait_for_signal() -> None:
    stop = threading.Event()

    def _handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    while not stop.wait(0.5):
        pass
    log.info("stopping")


def _fail(message: str, status: int = 2) -> NoReturn:
    click.echo(f"roogab: {message}", err=True)
    sys.exit(status)
