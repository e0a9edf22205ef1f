"""RooGab's configuration: one frozen ``Config``, built once at start-up.

Precedence, lowest first: defaults < TOML file (``--config FILE``) < ``ROOGAB_*`` environment
variables < command-line flags. This is the only module that reads ``os.environ``; everything
else receives the ``Config`` (or its slice) as an argument.

Secrets (API keys, passwords) are never accepted as literal command-line values: they come from
files or from environment variables whose names the config gives.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from .errors import ConfigError
from .providers.kinds import KINDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["Config", "ProviderProfile", "SocketIOEvents", "WebSocketFrames", "demo_profile", "load_config"]

StoreKind = Literal["memory", "sqlite", "postgres"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
ContentFormat = Literal["auto", "markdown", "html"]
StreamMode = Literal["delta", "cumulative"]

ENV_PREFIX = "ROOGAB_"
MIB = 1024 * 1024
MIN_TOKENIZER_IDLE = 0.1  # seconds: the housekeeper looks this often at most


@dataclass(frozen=True)
class SocketIOEvents:
    """Event and field names of a multiplexed Socket.IO chat service (providers.md §6 A).

    The defaults are the demo service's, which follow the original RooGab target service.
    """

    socketio_path: str = "socket.io"
    create: str = "newConversation"          # emit {prompt, model, ref}: the first prompt rides along
    created: str = "loadConversation"        # recv {id, ref}
    subscribe: str = "subscribe"             # emit [room] after created and after each reconnect
    room: str = "c:{id}"
    send: str = "sendPrompt"                 # emit {prompt, c}
    snapshot: str = "tokenStream"            # recv {c, content}: the whole reply so far
    delta: str = "tokenDelta"                # recv {c, content}: the next piece
    end: str = "streamEnd"                   # recv {c}
    error: str = "conversationError"         # recv {c, code, message}
    delete: str = "deleteConversation"       # emit {c}
    conversation_field: str = "c"
    content_field: str = "content"
    prompt_field: str = "prompt"
    model_field: str = "agentId"
    ref_field: str = "ref"
    id_field: str = "id"
    gone_code: str = "not_found"             # error code meaning "no such conversation"


@dataclass(frozen=True)
class WebSocketFrames:
    """JSON frame shapes of a plain-WebSocket chat service (providers.md §6 C, Cheshire Cat 1.x)."""

    path: str = "/ws"
    send_field: str = "text"                 # send {send_field: prompt}
    type_field: str = "type"
    token_type: str = "chat_token"           # {type: token_type, token_field: "<delta>"}
    token_field: str = "content"
    final_type: str = "chat"                 # {type: final_type, final_field: "<whole reply>"}
    final_field: str = "text"
    error_type: str = "error"                # {type: error_type, error_field: "..."}
    error_field: str = "description"


@dataclass(frozen=True)
class ProviderProfile:
    """One chat service RooGab talks to. Model ids are published as ``<name>/<model>``.

    ``models`` empty means "discover them" (Chainlit chat profiles). Secrets stay out of
    ``repr``: ``password`` is read from the environment variable ``password_env`` names.
    ``kind`` names a row of ``providers.kinds.KINDS``; the table's keys beyond the common ones
    land in ``options``, which the kind reads into its own settings dataclass.
    """

    name: str = "demo"
    kind: str = "demo"
    url: str = ""
    models: tuple[str, ...] = ("gab-1", "gab-2")
    context_length: int = 128_000
    max_message_chars: int = 0                # 0 = the kind's limit (none for most kinds)
    max_parts: int = 10                       # a longer prompt is refused before anything is sent
    min_interval: float = 0.0                 # seconds between two messages sent to the service
    max_concurrent_turns: int = 0             # 0 = no limit; more turns wait in a queue
    content: ContentFormat = "auto"           # replies arrive as markdown, rendered HTML, or auto: detect
    stream: StreamMode = "delta"              # websocket kind: pieces or whole-so-far snapshots
    username: str = ""
    password_env: str = ""
    password: str = field(default="", repr=False)
    cookie_file: Path | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    events: SocketIOEvents = field(default_factory=SocketIOEvents)
    frames: WebSocketFrames = field(default_factory=WebSocketFrames)
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Config:
    """Every setting RooGab has. Frozen: build a new one with ``dataclasses.replace``."""

    host: str = "127.0.0.1"
    port: int = 8787
    threads: int = 64
    workers: int = 1                          # processes serving one listening socket (serve only)
    api_keys: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    providers: tuple[ProviderProfile, ...] = (ProviderProfile(),)
    prompts_dir: Path | None = None
    store: StoreKind = "sqlite"
    data_dir: Path | None = None              # None: $XDG_DATA_HOME/roogab or ~/.local/share/roogab
    dsn_env: str = ""                         # postgres: the environment variable holding the DSN
    dsn: str = field(default="", repr=False)  # read from dsn_env, never given directly
    instance: str = ""                        # this instance's name ("" : host-pid-random)
    lease_ttl: float = 15.0                   # postgres or workers > 1: a dead instance's tasks are taken over after this
    max_turns: int = 2000                     # turn log retention
    max_turn_log_bytes: int = 64 * MIB        # turn log retention by size (the newest turn always stays)
    idle_expiry: float = 7 * 86400.0          # forget conversations idle this long (seconds)
    tokenizer_idle: float = 300.0             # let the token counter's tables go after this long unused; 0: keep
    connect_timeout: float = 10.0
    retry_max_delay: float = 30.0             # longest wait between two tries to reach a service that is down
    first_token_timeout: float = 120.0
    silence_timeout: float = 60.0
    reply_timeout: float = 600.0
    ping_interval: float = 1.0
    stream_pace: float = 0.05                 # a streaming reader is woken at most this often (seconds); 0: every piece
    max_body_bytes: int = 32 * MIB
    max_json_depth: int = 64
    repair_attempts: int = 1
    max_streams_per_provider: int = 0         # turns waiting on one chat service at once; 0: as many as fit
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"

    def is_loopback(self) -> bool:
        """True when the server binds only to the loopback interface: ``localhost`` or a
        loopback address (a name such as ``127.example.com`` is not one)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


_SCALARS = {f.name: f for f in dataclasses.fields(Config) if f.name not in ("providers", "api_keys", "dsn")}


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the ``Config`` from a TOML file, the environment and command-line overrides.

    Raises:
        ConfigError: a value is missing, unknown or invalid; the message names the key.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_toml(path))
    values.update(_from_env(env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _build(values, env)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from exc


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in _SCALARS:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    return values


def _build(values: dict[str, Any], env: Mapping[str, str]) -> Config:
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        if key in _SCALARS:
            kwargs[key] = _coerce(key, _SCALARS[key].type, raw)
        elif key not in ("providers", "api_keys_file", "api_keys_env"):
            raise ConfigError(key, "unknown setting")
    if "providers" in values:
        kwargs["providers"] = _providers(values["providers"], env)
    kwargs["api_keys"] = _api_keys(values, env)
    kwargs["dsn"] = _dsn(kwargs.get("dsn_env", ""), kwargs.get("store"), env)
    kwargs.setdefault("data_dir", _default_data_dir(env))
    config = Config(**kwargs)
    _check(config)
    return config


def _coerce(key: str, annotation: object, raw: Any) -> Any:
    text = str(annotation)
    if text in ("int", "float"):
        return _number(key, raw, int if text == "int" else float)
    if text.startswith("Path"):
        return Path(str(raw)).expanduser() if raw not in ("", None) else None
    if text.startswith("tuple"):
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise ConfigError(key, "must be a list of strings")
        return tuple(str(item).strip() for item in items if str(item).strip())
    choices = get_args(getattr(sys.modules[__name__], text, None))
    if choices and raw not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}, not {raw!r}")
    if not isinstance(raw, str):
        raise ConfigError(key, "must be a string")
    return raw


def _number(key: str, raw: Any, kind: type[int | float]) -> int | float:
    if isinstance(raw, bool):
        raise ConfigError(key, "must be a number")
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be {'an integer' if kind is int else 'a number'}, not {raw!r}") from None
    if value < 0:
        raise ConfigError(key, "must not be negative")
    return value


def _providers(raw: Any, env: Mapping[str, str]) -> tuple[ProviderProfile, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("providers", "must be a non-empty list of [[providers]] tables")
    profiles = tuple(_profile(i, item, env) for i, item in enumerate(raw))
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ConfigError("providers", "two providers share a name")
    return profiles


def _profile(index: int, raw: Any, env: Mapping[str, str]) -> ProviderProfile:
    where = f"providers[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table")
    known = {f.name for f in dataclasses.fields(ProviderProfile)} - {"password", "options"}
    row = KINDS.get(str(raw.get("kind", "demo")))
    own = set(row.settings) if row is not None else set()
    for key in raw:
        if key not in known and key not in own:
            hint = " (passwords come from the variable password_env names)" if key == "password" else ""
            raise ConfigError(f"{where}.{key}", "unknown setting" + hint)
    kwargs = {key: value for key, value in raw.items() if key in known}
    kwargs["options"] = tuple((key, value) for key, value in raw.items() if key in own)
    if "events" in kwargs:
        kwargs["events"] = _names(f"{where}.events", kwargs["events"], SocketIOEvents)
    if "frames" in kwargs:
        kwargs["frames"] = _names(f"{where}.frames", kwargs["frames"], WebSocketFrames)
    _secrets(where, kwargs, env)
    for key, kind in (("content", ContentFormat), ("stream", StreamMode)):
        if key in kwargs and kwargs[key] not in get_args(kind):
            raise ConfigError(f"{where}.{key}", f"must be one of {', '.join(get_args(kind))}")
    if "models" in kwargs:
        kwargs["models"] = _coerce(f"{where}.models", "tuple", kwargs["models"])
    for key in ("context_length", "max_message_chars", "max_parts", "max_concurrent_turns"):
        if key in kwargs:
            kwargs[key] = _number(f"{where}.{key}", kwargs[key], int)
    if "min_interval" in kwargs:
        kwargs["min_interval"] = _number(f"{where}.min_interval", kwargs["min_interval"], float)
    if kwargs.get("max_parts") == 0:
        raise ConfigError(f"{where}.max_parts", "must be at least 1")
    kind = kwargs.get("kind", "demo")
    if kind != "demo":
        kwargs.setdefault("models", ())  # discovered where the kind can; the demo's names are its own
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind != "demo" and not kwargs.get("url"):
        raise ConfigError(f"{where}.url", "is required for this kind")
    if "/" in str(kwargs.get("name", "")):
        raise ConfigError(f"{where}.name", "must not contain '/'")
    return ProviderProfile(**kwargs)


def _names(where: str, raw: Any, kind: type[Any]) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table")
    known = {f.name for f in dataclasses.fields(kind)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}", "unknown event or field name")
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{key}", "must be a string")
    return kind(**raw)


def _secrets(where: str, kwargs: dict[str, Any], env: Mapping[str, str]) -> None:
    """Resolve the password from its environment variable; check cookie file and headers."""
    name = kwargs.get("password_env", "")
    if name:
        if name not in env:
            raise ConfigError(f"{where}.password_env", f"the environment variable {name} is not set")
        kwargs["password"] = env[name]
    if kwargs.get("cookie_file"):
        kwargs["cookie_file"] = Path(str(kwargs["cookie_file"])).expanduser()
    headers = kwargs.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}.headers", "must be a table of strings")
    kwargs["headers"] = tuple(headers.items())


def _api_keys(values: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, ...]:
    keys: list[str] = []
    env_name = values.get("api_keys_env", ENV_PREFIX + "API_KEYS")
    keys += env.get(str(env_name), "").split(",")
    if "api_keys_file" in values:
        path = Path(str(values["api_keys_file"])).expanduser()
        try:
            keys += path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError("api_keys_file", f"cannot read {path}: {exc.strerror}") from exc
    return tuple(k.strip() for k in keys if k.strip() and not k.strip().startswith("#"))


def _dsn(name: str, store: object, env: Mapping[str, str]) -> str:
    """The PostgreSQL DSN from the variable *name* (a DSN may hold a password: never a flag)."""
    if not name:
        if store == "postgres":
            raise ConfigError("dsn_env", "the postgres store needs dsn_env: the name of an environment "
                              "variable that holds the DSN (e.g. postgresql://roogab@db/roogab)")
        return ""
    value = env.get(name, "")
    if not value:
        raise ConfigError("dsn_env", f"the environment variable {name} is not set")
    return value


def _default_data_dir(env: Mapping[str, str]) -> Path:
    """The user data directory: $XDG_DATA_HOME/roogab, else ~/.local/share/roogab."""
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or "~").expanduser() / ".local" / "share")
    return Path(base) / "roogab"


def _check(config: Config) -> None:
    if not 1 <= config.port <= 65535 and config.port != 0:
        raise ConfigError("port", f"must be between 1 and 65535, not {config.port}")
    if config.threads < 1:
        raise ConfigError("threads", "must be at least 1")
    if config.workers < 1:
        raise ConfigError("workers", "must be at least 1")
    if config.workers > 1 and config.store == "memory":
        raise ConfigError("workers", "several workers share their conversations through the store: "
                          "set store = \"sqlite\" or \"postgres\", not \"memory\"")
    if config.max_turns < 1:
        raise ConfigError("max_turns", "must be at least 1")
    if config.max_turn_log_bytes < 1:
        raise ConfigError("max_turn_log_bytes", "must be at least 1")
    if config.lease_ttl <= 0:
        raise ConfigError("lease_ttl", "must be greater than 0")
    if config.ping_interval <= 0:
        raise ConfigError("ping_interval", "must be greater than 0")
    if config.tokenizer_idle != 0 and config.tokenizer_idle < MIN_TOKENIZER_IDLE:
        raise ConfigError("tokenizer_idle", f"must be 0 (keep the tokenizer loaded) or at least "
                          f"{MIN_TOKENIZER_IDLE:g} seconds")
    if not 0 <= config.stream_pace <= 1:
        raise ConfigError("stream_pace", "must be between 0 and 1 second")
    if not config.is_loopback() and not config.api_keys:
        raise ConfigError(
            "host", f"{config.host} is not a loopback address: set API keys (ROOGAB_API_KEYS or "
            "api_keys_file) before serving on a network, or bind 127.0.0.1")


def demo_profile(url: str) -> ProviderProfile:
    """The profile of the bundled demo chat service listening at *url*."""
    return ProviderProfile(name="demo", kind="demo", url=url)
