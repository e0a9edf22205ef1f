"""The HTTP surface: translates HTTP into ChatService calls and back. Nothing else.

Every wire protocol of ``roogab.protocols`` (``/v1/chat/completions`` …) is served by one view,
and ``/v1/models`` too, all also without ``/v1``; ``/healthz`` and ``/`` are status routes.
Every error is rendered in the protocol of its route (OpenAI error JSON elsewhere) with its status.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from . import inspect_auth, request_fields
from .affinity import AFFINITY_HEADER, INSTANCE_HEADER, affinity_key
from .body_prefix import BodyCache, decode_body
from .capacity import TurnGate
from .config import Config
from .errors import (
    ForbiddenHost,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    RequestError,
    RooGabError,
    StoreError,
    Unauthorized,
)
from .guide import client_settings
from .live import LiveTurns, TurnNote
from .logs import request_id
from .origin import check_content_type, check_origin, check_own_form
from .outputs import Out
from .protocols import PROTOCOLS, Exchange, WireProtocol, protocol_for
from .protocols.messages_request import count_texts, parse_request
from .redact import Redactor
from .registry import thread_key
from .revival import Revival
from .service import ChatService
from .store import Store
from .wire import ChatRequest, model_list

__all__ = ["AppState", "api", "install_guards", "iso_time", "status"]

log = logging.getLogger(__name__)

api = Blueprint("api", __name__)
status = Blueprint("status", __name__)

PROTECTED_BLUEPRINTS = ("api", "api_bare", "inspect")
INSPECTOR_FORMS = ("inspect.signin", "inspect.try_it")  # HTML forms of the inspector's own pages
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class AppState:
    """What the views need, kept in ``app.extensions["roogab"]``."""

    config: Config
    service: ChatService
    started: float
    revival: Revival
    gate: TurnGate | None = None  # None: no bound (tests that build an app by hand)
    bodies: BodyCache | None = field(default_factory=BodyCache)  # None: every body decoded whole


def _state() -> AppState:
    state: AppState = current_app.extensions["roogab"]
    return state


def _serve_turn(protocol: WireProtocol) -> Response | tuple[dict[str, Any], int, dict[str, str]]:
    """Run one turn in *protocol*; SSE when the request asks to stream. The response names the
    task's routing key (``x-roogab-affinity``) for a load balancer."""
    state = _state()
    headers = {name.lower(): value for name, value in request.headers.items()}
    client = _client_identity(state.config)
    body, turn = _parse_turn(state, protocol, headers, client)
    route = affinity_key(headers, body if isinstance(body, dict) else None, lambda: thread_key(turn))
    routing = {AFFINITY_HEADER: route.key, INSTANCE_HEADER: state.service.registry.instance}
    request_fields.for_app(current_app.extensions).note(f"{client} {headers.get('user-agent', '')}", protocol.name, body)
    exchange = Exchange(protocol.new_id(), turn.model, int(time.time()))
    request_id.set(exchange.id)
    log.info("turn %s (%s): model=%s stream=%s messages=%d tools=%d", exchange.id, protocol.name, turn.model,
             turn.stream, len(turn.messages), len(turn.tools))
    note = g.turn_note = TurnNote()
    slot = _slot(state, turn.model)
    if not turn.stream:
        with slot:
            answer = state.service.complete(turn, client, note)
        return protocol.complete(answer, turn, exchange), 200, routing
    items = _held(slot, state.service.run(turn, client, note))
    first = next(items)  # errors before any output still get their real HTTP status
    sse = protocol.stream(_bugs_as_errors(_chain(first, items)), turn, exchange)
    return Response(_with_request_id(exchange.id, sse, note, state.service.live), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **routing})


def _parse_turn(state: AppState, protocol: WireProtocol, headers: dict[str, str],
                client: str) -> tuple[object, ChatRequest]:
    """The body and the turn it asks for; decoded and validated from where it differs from one of
    the client's previous bodies (``body_prefix``), with the same result and errors as a whole parse."""
    raw = request.get_data(cache=False)
    depth = state.config.max_json_depth
    if state.bodies is None:
        body = decode_body(raw, depth)
        return body, protocol.parse(body, headers)
    return state.bodies.parse_turn((client, protocol.name), raw, depth, protocol, headers)


def _slot(state: AppState, model: str) -> AbstractContextManager[None]:
    """A place for one turn on the provider of *model* (``ServerBusy`` when none is free)."""
    if state.gate is None:
        return nullcontext()
    provider, _ = state.service.resolve_model(model)
    return state.gate.turn(provider.name)


def _held(slot: AbstractContextManager[None], items: Iterator[Out]) -> Generator[Out, None, None]:
    """*items*, with *slot* held from the first item until the stream ends or is closed."""
    with slot:
        try:
            yield from items
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()


@api.after_request
def _turn_headers(response: Response) -> Response:
    """``x-roogab-turn`` (the turn's id in the inspector, also on errors); ``x-roogab-from-record``
    when the answer is the retry record's (the id of the turn it repeats, or ``unknown``)."""
    note: TurnNote | None = g.get("turn_note")
    if note is not None and note.turn_id:
        response.headers["x-roogab-turn"] = note.turn_id
    if note is not None and note.from_record is not None:
        response.headers["x-roogab-from-record"] = note.from_record
    return response


for _path, _protocol in PROTOCOLS.items():
    api.add_url_rule(_path, endpoint=_protocol.name, view_func=functools.partial(_serve_turn, _protocol),
                     methods=["POST"])


@api.post("/messages/count_tokens")
def count_tokens() -> dict[str, Any]:
    """Anthropic's ``count_tokens``: the request's tokens, by the counter that fills ``usage``."""
    state = _state()
    turn = parse_request(_json_body(state.config), count_only=True)
    state.service.resolve_model(turn.model)  # ModelNotFound (404), as /v1/messages answers
    return {"input_tokens": sum(state.service.tokens.count(text) for text in count_texts(turn))}


@api.get("/models")
def models() -> dict[str, Any]:
    """The published models, with their context lengths."""
    state = _state()
    return model_list(state.service.models(), int(state.started))


@api.get("/models/<path:model>")
def model(model: str) -> dict[str, Any]:
    """One published model, as in the list (the SDKs' ``models.retrieve``); 404 when none has that id."""
    state = _state()
    for entry in model_list(state.service.models(), int(state.started))["data"]:
        if entry["id"] == model:
            return dict(entry)
    raise ModelNotFound(f"model '{model}' does not exist", param="model")


@status.get("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    """This instance, its store and per-provider readiness; 503 when no provider is usable or the
    store does not answer."""
    state = _state()
    service = state.service
    providers: dict[str, dict[str, Any]] = {}
    for name, h in service.health().items():
        pace = state.service.outbox.pacer(name).state()
        revival = state.revival.state(name)
        providers[name] = {"ready": h.ready, "connected": h.connected, "logged_in": h.logged_in,
                           "last_error": h.last_error, "since": iso_time(h.since),
                           "retrying": revival is not None and revival.retrying and not h.ready,
                           "turns": {"running": pace.running, "queued": pace.queued,
                                     "max_concurrent": pace.max_concurrent_turns,
                                     "min_interval": pace.min_interval}}
        if revival is not None and revival.retrying and not h.ready:
            providers[name]["retry"] = {"attempts": revival.attempts, "next_attempt_in": revival.next_attempt_in}
    store = _store_health(service.registry.store, service.redactor)
    ready = any(p["ready"] for p in providers.values()) and store["ok"]
    return {"status": "ok" if ready else "unavailable", "instance": service.registry.instance,
            "store": store, "providers": providers}, 200 if ready else 503


def _store_health(store: Store, redactor: Redactor) -> dict[str, Any]:
    try:
        store.ping()
    except StoreError as exc:
        return {"kind": store.kind, "ok": False, "last_error": redactor.redact(str(exc))}
    return {"kind": store.kind, "ok": True, "last_error": None}


@status.get("/")
def index() -> Response | str:
    """What is running and the settings to paste into each client (a page, or text for curl)."""
    state = _state()
    base = request.host_url.rstrip("/")
    key_hint = "one of the configured keys" if state.config.api_keys else "any text (no keys configured)"
    models = [m for m, _ in state.service.models()]
    settings = client_settings(base, models, key_hint) if models else NO_MODELS
    health = state.service.health()
    down = {name: _down_line(name, h.last_error, state.revival) for name, h in health.items() if not h.ready}
    if request.accept_mimetypes.best_match(["text/plain", "text/html"]) == "text/html":
        return render_template("index.html", settings=settings, providers=health, iso_time=iso_time,
                               down=down)
    lines = "".join(line + "\n" for line in down.values())
    return Response("RooGab is running.\n\n" + (lines + "\n" if lines else "") + settings + "\n",
                    mimetype="text/plain")


NO_MODELS = ("No model is available yet: no chat service could be reached. RooGab keeps trying in "
             "the background; reload this page once /healthz says a service is ready.")


def _down_line(name: str, error: str | None, revival: Revival) -> str:
    """One line for a service that is not ready: why, and whether RooGab is still trying."""
    state = revival.state(name)
    retrying = f" (retrying in the background, {state.attempts} attempts so far)" if state and state.retrying else ""
    return f"{name} is not ready{retrying}: {error or 'not started'}"


def iso_time(timestamp: float) -> str | None:
    """An epoch time as ISO 8601 UTC (None for 0: never)."""
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _with_request_id(rid: str, body: Iterator[str], note: TurnNote, live: LiveTurns) -> Iterator[str]:
    """*body*, with the turn's request id set: it streams after the view returned, still on
    this worker thread, and every log line of the turn carries the id. Each event is noted on the
    live board (the inspector's view of what the agent was sent)."""
    request_id.set(rid)
    for chunk in body:
        live.to_agent(note.turn_id, chunk)
        yield chunk


def _bugs_as_errors(items: Iterator[Out]) -> Generator[Out, None, None]:
    """*items*, with a bug in the turn engine after the stream began raised as a 500
    ``RooGabError``: the protocol's stream then ends with its own error event, as a bug before
    any output gets a 500 in the protocol's error shape (``_http_error``), instead of a body cut
    off mid-chunk. The agent is told only the bug's type; the log has the traceback."""
    try:
        yield from items
    except RooGabError:
        raise
    except Exception as exc:  # the request boundary (as Flask's own for a view): logged whole, then told
        log.exception("turn failed mid-stream on a bug in RooGab")
        raise RooGabError(f"internal error in RooGab ({type(exc).__name__}); "
                          "the server log has the details") from exc
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _chain(first: Out, rest: Iterator[Out]) -> Generator[Out, None, None]:
    try:
        yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


def _json_body(config: Config) -> object:
    return decode_body(request.get_data(cache=False), config.max_json_depth)


def _client_identity(config: Config) -> str:
    if config.api_keys:
        return "key:" + hashlib.sha256(_bearer().encode()).hexdigest()[:16]
    return "addr:" + (request.remote_addr or "?")


def _bearer() -> str:
    """The API key: ``Authorization: Bearer`` (OpenAI clients, Claude Code with an auth token)
    or ``x-api-key`` (Anthropic clients)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    if request.headers.get("x-api-key"):
        return request.headers.get("x-api-key", "").strip()
    if request.blueprint == "inspect":  # a browser opening the inspector: /inspect?key=...
        return request.args.get("key", "")
    return ""


def _check_host(config: Config) -> None:
    if not config.is_loopback():
        return
    host = (request.host or "").lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name not in LOOPBACK_HOSTS and name not in config.allowed_hosts:
        raise ForbiddenHost(f"Host '{host}' is not allowed: RooGab answers only to localhost "
                            "(add the name to allowed_hosts to permit it)")


def _is_signin() -> bool:
    return request.endpoint == "inspect.signin"


def _wants_html() -> bool:
    """A browser (it prefers a page to JSON): sent to the sign-in form rather than given a 401."""
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _check_key(config: Config) -> BaseResponse | None:
    if not config.api_keys or request.blueprint not in PROTECTED_BLUEPRINTS or _is_signin():
        return None
    token = _bearer().encode()
    matches = [hmac.compare_digest(token, key.encode()) for key in config.api_keys]
    if any(matches):
        return None
    if request.blueprint == "inspect":
        if inspect_auth.valid(request.cookies.get(inspect_auth.COOKIE, ""), config.api_keys):
            return None
        if _wants_html():
            return redirect(url_for("inspect.signin", next=request.full_path.rstrip("?")))
    raise Unauthorized("missing or invalid API key: send 'Authorization: Bearer <key>' "
                           "or 'x-api-key: <key>'")


def install_guards(app: Flask) -> None:
    """Host, origin, content-type and key checks before every request; OpenAI error JSON for
    every error."""

    @app.before_request
    def _guards() -> BaseResponse | None:
        request_id.set("req-" + uuid.uuid4().hex[:12])
        config = _state().config
        _check_host(config)
        headers = {name.lower(): value for name, value in request.headers.items()}
        check_origin(headers, request.host or "", config.allowed_hosts)
        if request.endpoint in INSPECTOR_FORMS:  # its own pages' forms post form-encoded
            check_own_form(request.method, headers, request.host or "")
        elif request.routing_exception is None:  # no such route or method: that 404 or 405 comes first
            check_content_type(request.method, headers)
        return _check_key(config)

    @app.errorhandler(RooGabError)
    def _roogab_error(exc: RooGabError) -> tuple[dict[str, Any], int]:
        status_code, body = protocol_for(request.path).error(exc)
        log.log(logging.WARNING if status_code >= 500 else logging.INFO, "%d %s %s: %s",
                status_code, request.method, request.path, exc)
        return body, status_code

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
        mapped: dict[int, RooGabError] = {404: NotFound(f"no route {request.method} {request.path}"),
                                          405: MethodNotAllowed(f"{request.method} is not allowed on {request.path}"),
                                          413: PayloadTooLarge("the request body is larger than max_body_bytes")}
        status = exc.code or 500
        error = mapped.get(status)
        if error is None:  # a 5xx (a bug Flask caught) is the server's fault, not the request's
            error = (RequestError if status < 500 else RooGabError)(exc.description or exc.name)
            error.status = status
        body, code = _roogab_error(error)
        allowed = getattr(exc, "valid_methods", None)  # a 405 says what is allowed (RFC 9110 §15.5.6)
        return body, code, {"Allow": ", ".join(allowed)} if allowed else {}
