"""Assembling a running RooGab: provider loop, providers, app and HTTP server, and their shutdown.

``serve`` (the CLI's ``roogab serve``) and ``demo`` (``roogab demo``, and the end-to-end test
fixtures) build exactly the same stack; the demo also starts the bundled chat service first.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from flask import Flask

from .app import create_app
from .config import Config, ProviderProfile
from .cookies import load_cookies
from .errors import ProviderUnavailable, UpstreamError
from .housekeeping import Housekeeper
from .leases import Leases, LeaseSettings
from .memory import give_back, limit_arenas, map_big_blocks
from .providers import kinds
from .providers.base import Provider
from .providers.loop import ProviderLoop
from .redact import Redactor
from .registry import Registry
from .revival import Revival
from .server import Server
from .store import Store, open_store
from .turnlog import TurnLogWriter
from .usage import TokenCounter

if TYPE_CHECKING:
    # Imported where used: the demo service pulls in python-socketio's server and aiohttp's web
    # server, which a `roogab serve` process without a demo provider never needs.
    from .demo import DemoChatService, ScriptedReply

__all__ = ["Running", "build_registry", "start", "start_demo"]

#: Provider kinds whose conversations any instance can continue by their handle (the service
#: keeps them, not the connection): a task moving between instances keeps its conversation.
PORTABLE_KINDS = ("demo", "socketio")

log = logging.getLogger(__name__)

# ``password=`` in a key/value DSN (quoted or bare) or in a URI's query string.
_DSN_PASSWORD = re.compile(r"""\bpassword\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))""")
_URI_PASSWORD = re.compile(r"^\s*[A-Za-z][\w+.-]*://[^:@/?#]*:([^/?#]+)@")  # to the last "@", as urlsplit


@dataclass
class Running:
    """Everything a running RooGab owns, closed in reverse order by ``close``."""

    config: Config
    app: Flask
    server: Server
    loop: ProviderLoop
    providers: dict[str, Provider]
    store: Store
    turn_log: TurnLogWriter
    housekeeper: Housekeeper
    demo: DemoChatService | None = None
    revival: Revival = field(default_factory=Revival)
    _closed: bool = field(default=False, repr=False)

    @property
    def registry(self) -> Registry:
        """The conversations and the turn log of this RooGab."""
        registry: Registry = self.app.extensions["roogab"].service.registry
        return registry

    @property
    def url(self) -> str:
        """The proxy's base URL (without ``/v1``)."""
        return self.server.url

    def close(self) -> None:
        """Stop serving, disconnect the providers, stop the loop and the demo service."""
        if self._closed:
            return
        self._closed = True
        self.server.close()
        self.revival.close()
        self.registry.close()
        self.turn_log.close()
        self.housekeeper.stop()
        for provider in self.providers.values():
            provider.close()
        self.loop.stop()
        self.store.close()
        if self.demo is not None:
            self.demo.stop()


def _release(providers: Mapping[str, Provider], provider: str, handle: str) -> None:
    """Tell *provider* that conversation *handle* will not be continued (expired here)."""
    if provider in providers:
        providers[provider].forget(handle)


def build_provider(profile: ProviderProfile, loop: ProviderLoop, config: Config) -> Provider:
    """The provider for one profile, built by its kind's factory (``providers.kinds.KINDS``).

    Raises:
        ConfigError: the profile cannot be served (no URL, an unknown kind-specific setting).
    """
    return kinds.build(profile, kinds.Context(loop, connect_timeout=config.connect_timeout))


def start(config: Config, *, demo: DemoChatService | None = None,
          sockets: list[socket.socket] | None = None) -> Running:
    """Start the provider loop, connect every provider, and start serving HTTP in the background
    (on *sockets* when given: a worker process serving its parent's listening sockets).

    Raises:
        ConfigError: the configuration cannot be served.
        StoreError: the store cannot be opened (the CLI exits 2 naming it).
        ProviderUnavailable: a provider could not connect.
    """
    limit_arenas()  # before the server's threads allocate: see roogab/memory.py
    map_big_blocks()
    redactor = Redactor(secrets(config))
    store = open_store(config.store, config.data_dir, max_turns=config.max_turns,
                       max_turn_log_bytes=config.max_turn_log_bytes, redactor=redactor,
                       dsn=config.dsn)
    turn_log = TurnLogWriter(store, after_writes=give_back)  # memory freed by turns goes back
    registry = build_registry(config, store, turn_log)
    tokens = TokenCounter(idle_release=config.tokenizer_idle)
    providers: dict[str, Provider] = {}
    housekeeper = Housekeeper(registry, registry.leases, tokens=tokens, release=functools.partial(_release, providers))
    loop = ProviderLoop(pace=config.stream_pace)
    loop.start()
    revival = Revival(max_delay=config.retry_max_delay)
    try:
        for profile in config.providers:
            providers[profile.name] = build_provider(profile, loop, config)
            _start_provider(providers[profile.name], revival, strict=demo is not None)
        app = create_app(config, providers, registry=registry, revival=revival, redactor=redactor, tokens=tokens)
        server = Server(app, config.host, config.port, threads=config.threads,
                        max_body_bytes=config.max_body_bytes, sockets=sockets)
    except BaseException:
        revival.close()
        for provider in providers.values():
            provider.close()
        loop.stop()
        store.close()
        raise
    housekeeper.start()
    server.start()
    log.info("serving on %s as %s (store: %s)", server.url, registry.instance, _where(config))
    return Running(config, app, server, loop, providers, store, turn_log, housekeeper, demo, revival)


def build_registry(config: Config, store: Store, turn_log: TurnLogWriter) -> Registry:
    """The registry over *store*; with the shared postgres store, or several worker processes on
    one SQLite file, under task leases (one turn at a time per task across processes)."""
    instance = config.instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    leases = None
    if config.store == "postgres" or config.workers > 1:
        settings = LeaseSettings(instance, ttl=config.lease_ttl, wait=config.reply_timeout + config.lease_ttl)
        leases = Leases(store, settings)
    portable = [p.name for p in config.providers if p.kind in PORTABLE_KINDS]
    return Registry(store, idle_expiry=config.idle_expiry, turn_log=turn_log, leases=leases,
                    portable=portable, instance=instance)


def _start_provider(provider: Provider, revival: Revival, *, strict: bool) -> None:
    """Connect and log in. A service that fails is reported and stays unhealthy (``/healthz``
    says why) rather than stopping RooGab, unless *strict* (the bundled demo must work); one
    that cannot be reached is retried in the background until it comes back (``revival``)."""
    try:
        provider.start()
    except UpstreamError as exc:
        if strict:
            raise
        log.error("provider %s is not usable: %s", provider.name, exc)
        if isinstance(exc, ProviderUnavailable):
            revival.watch(provider, str(exc))


def secrets(config: Config) -> list[str]:
    """Every secret value the configuration holds, for the turn log's redactor."""
    values = list(config.api_keys) + _dsn_passwords(config.dsn)
    for profile in config.providers:
        values.append(profile.password)
        values.append(_url_password(profile.url))
        values += [value for _, value in profile.headers]
        if profile.cookie_file is not None and profile.cookie_file.is_file():
            values += [c.value for c in load_cookies(profile.cookie_file)]
    return [v for v in values if v]


def _url_password(url: str) -> str:
    """The password written into a provider URL (``wss://user:secret@host``), or ""."""
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:
        return ""


def _dsn_passwords(dsn: str) -> list[str]:
    """The password of a PostgreSQL DSN, as written and percent-decoded: a URI's
    (``postgresql://user:secret@host/db``, ``?password=secret``) or a key/value string's
    (``password=secret``, ``password='a secret'``). libpq repeats the parts of a malformed DSN
    in its errors, and psycopg's pool logs them."""
    written: list[str] = []
    for quoted, bare in _DSN_PASSWORD.findall(dsn):  # a bare one may run on into a URI's "&key=..."
        written += [quoted, re.sub(r"\\(.)", r"\1", quoted)] if quoted else [bare, bare.partition("&")[0]]
    written += _URI_PASSWORD.findall(dsn)  # a URI's, even one urlsplit refuses ("@[bad-host")
    return [form for value in written if value for form in (value, unquote(value))]


def _where(config: Config) -> str:
    return {"memory": "memory", "postgres": "postgres"}.get(config.store, str(config.data_dir))


def start_demo(config: Config, script: Iterable[ScriptedReply] = ()) -> Running:
    """Start the demo chat service, then RooGab wired to it (the ``roogab demo`` stack)."""
    from .demo import DemoChatService

    demo = DemoChatService(script)
    url = demo.start()
    profile = dataclasses.replace(_demo_profile(config), url=url)
    try:
        return start(dataclasses.replace(config, providers=(profile,)), demo=demo)
    except BaseException:
        demo.stop()
        raise


def _demo_profile(config: Config) -> ProviderProfile:
    for profile in config.providers:
        if profile.kind == "demo":
            return profile
    return ProviderProfile()
