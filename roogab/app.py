"""The application factory: a Flask app around a ChatService. Nothing happens at import."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from flask import Flask

from .api import AppState, api, install_guards, status
from .capacity import TurnGate, turn_capacity
from .config import Config
from .delivery import Outbox, Policy
from .inspect_api import inspect
from .live import LiveTurns
from .prompt import PromptBook
from .providers.base import Deadlines, Provider
from .redact import Redactor
from .registry import Registry
from .revival import Revival
from .service import ChatService, TurnSettings
from .usage import TokenCounter

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["build_service", "create_app"]

_SLASHES = re.compile("//+")


class _OneSlash:
    """Serve ``/v1//chat/completions`` as ``/v1/chat/completions`` (a base URL that ends in ``/``
    joined to a path that starts with one), where Werkzeug would answer an HTML redirect page."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = _SLASHES.sub("/", path)
        return self._app(environ, start_response)


def build_service(config: Config, providers: Mapping[str, Provider], *,
                  registry: Registry | None = None, prompts: PromptBook | None = None,
                  live: LiveTurns | None = None, redactor: Redactor | None = None,
                  tokens: TokenCounter | None = None) -> ChatService:
    """The ChatService for *config* over already-started *providers* (memory store by default);
    *redactor* (the generic shapes only by default) redacts what the turn engine shows; *tokens*
    counts usage (the composition root's, which its housekeeper may let go when idle)."""
    settings = TurnSettings(
        deadlines=Deadlines(first_token=config.first_token_timeout, silence=config.silence_timeout,
                            total=config.reply_timeout),
        tick=config.ping_interval,
        repair_attempts=config.repair_attempts,
        content=tuple((p.name, p.content) for p in config.providers),
    )
    registry = registry or Registry(idle_expiry=config.idle_expiry)
    prompts = prompts or PromptBook.load(config.prompts_dir)
    policies = {p.name: Policy(p.max_parts, p.min_interval, p.max_concurrent_turns) for p in config.providers}
    redactor = redactor or Redactor()
    live = live if live is not None else LiveTurns(redact=redactor.redact)
    return ChatService(providers, registry, prompts, settings, outbox=Outbox(prompts, policies), live=live,
                       redactor=redactor, tokens=tokens)


def create_app(config: Config, providers: Mapping[str, Provider], *,
               service: ChatService | None = None, registry: Registry | None = None,
               revival: Revival | None = None, live: LiveTurns | None = None,
               redactor: Redactor | None = None, tokens: TokenCounter | None = None) -> Flask:
    """A Flask app serving *providers* (already started) with the settings of *config*; the
    composition root gives it the *redactor* of the configured secrets."""
    app = Flask("roogab")
    app.wsgi_app = _OneSlash(app.wsgi_app)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    service = service or build_service(config, providers, registry=registry, live=live, redactor=redactor,
                                       tokens=tokens)
    gate = TurnGate(turn_capacity(config.threads), config.max_streams_per_provider)
    app.extensions["roogab"] = AppState(config, service, time.time(), revival or Revival(), gate)
    app.register_blueprint(api, url_prefix="/v1")
    app.register_blueprint(api, name="api_bare")
    app.register_blueprint(status)
    app.register_blueprint(inspect)
    install_guards(app)
    return app
