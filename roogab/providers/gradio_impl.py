"""GradioProvider: a ``gr.ChatInterface`` app, reached through ``gradio_client`` (providers.md §8).

``gradio_client`` is the maintained client of Gradio's page protocol (``sse_v3``: ``POST
/gradio_api/queue/join``, the ``/queue/data`` event stream with ``process_generating`` diffs and
``process_completed``; ``POST /login`` for ``auth=`` apps), so RooGab does not speak it by hand.
This is the only module that imports it, and its exceptions become RooGab errors here.

The app keeps no conversation: the page holds the chat and hands it back every turn, and a
``gr.ChatInterface`` function gets ``(message, history)``. So this provider holds each
conversation (the handle) as the page would show it, the messages RooGab sent and the replies
as they came, and every turn gives the app that whole history, then the new message. It does
what the page does: the chat's ``history`` goes to the chatbot-sync event the interface wires up
(``inputs=[chatbot]``, ``outputs=[chatbot_state, ...]``), then the message to the ``/chat``
endpoint, both in one fresh ``session_hash``. A Gradio app that restarts loses nothing; a RooGab
that restarts does not know the handle any more (``ConversationGone``: the registry replays).

A turn runs on a thread of its own (``gradio_client`` is blocking) with a ``Client`` of its own,
closed with its threads when the turn ends (it costs a ``GET /config``, and a login for an
``auth=`` app, per turn). Each output is the whole reply so far (``Snapshot``).
Gradio's analytics are off: the client's telemetry thread is never started.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from gradio_client import Client
from gradio_client.exceptions import AppError, AuthenticationError
from gradio_client.utils import InvalidAPIEndpointError, QueueError, TooManyRequestsError

from ..config import ProviderProfile
from ..errors import (
    ConfigError,
    ConversationGone,
    ProviderDisconnected,
    ProviderRejected,
    ProviderUnavailable,
    UpstreamError,
)
from . import _http_wire as wire
from ._text import safe_url, short
from .base import Created, Deadlines, Done, Health, ModelInfo, Snapshot, Traits, Turn
from .kinds import Context, Kind

__all__ = ["KIND", "GradioProvider", "GradioSettings"]

logger = logging.getLogger(__name__)

TRAITS = Traits(keeps_conversations=False, stream="snapshots")
DEFAULT_MODEL = "chat"  # a ChatInterface has one function; its endpoint names the model
POLL_SECONDS = 0.02  # how often a turn looks for new output (and for a cancel)
MAX_CONVERSATIONS = 1000  # oldest forgotten first; a forgotten one is replayed when it comes back

History = list[dict[str, Any]]


@dataclass(frozen=True)
class GradioSettings:
    """The keys a ``gradio`` profile has beyond the common ones."""

    api_name: str = "/chat"


class _QuietClient(Client):  # type: ignore[misc]
    """A ``Client`` that sends no telemetry (its constructor starts the thread unless the process
    environment says otherwise; RooGab does not change the environment) and starts no heartbeat
    thread (it would outlive the turn by up to a heartbeat interval).

    With a *turn*, the page protocol's exchanges go on the turn's wire: ``GET config``, each
    ``POST queue/join`` and its event id, the ``GET queue/data`` stream and every message it
    brings (``estimation``, ``process_starts``, ``process_generating`` diffs, ``process_completed``).
    """

    def __init__(self, *args: Any, turn: Turn | None = None, **kwargs: Any) -> None:
        self._turn = turn  # before the constructor: it fetches the config
        super().__init__(*args, **kwargs)
        if turn is not None:
            self.pending_messages_per_event = _Recorded(turn)

    def _telemetry_thread(self) -> None:
        return

    def _get_config(self) -> dict[str, Any]:
        wire.request(self._turn, "GET", _path(self.src) + "config", self.headers, None)
        config: dict[str, Any] = super()._get_config()
        wire.answer(self._turn, "GET", _path(self.src) + "config", 200, "application/json",
                    {k: config.get(k) for k in ("version", "protocol", "api_prefix", "mode")})
        config["connect_heartbeat"] = False  # a session lives for one turn: nothing to keep alive
        return config

    def send_data(self, data: dict[str, Any], hash_data: dict[str, Any], protocol: str,
                  request_headers: dict[str, str] | None) -> str:
        path = _path(self.sse_data_url)
        wire.request(self._turn, "POST", path, {**(request_headers or {}), **self.headers}, {**data, **hash_data})
        event_id: str = super().send_data(data, hash_data, protocol, request_headers)
        wire.answer(self._turn, "POST", path, 200, "application/json", {"event_id": event_id})
        return event_id

    def stream_messages(self, protocol: str, session_hash: str) -> None:
        wire.request(self._turn, "GET", _path(self.sse_url), self.headers, {"session_hash": session_hash})
        super().stream_messages(protocol, session_hash)


class _RecordedMessages(deque[Any]):
    """The messages of one event as the client's stream reader queues them, each noted on the
    turn's wire as it arrives."""

    def __init__(self, turn: Turn) -> None:
        super().__init__()
        self._turn = turn

    def append(self, message: Any) -> None:
        if isinstance(message, dict):  # None is the client's own end-of-stream marker
            wire.event(self._turn, str(message.get("msg", "data")), message)
        super().append(message)


class _Recorded(dict[str, Any]):
    """``Client.pending_messages_per_event`` whose queues note what they are given."""

    def __init__(self, turn: Turn) -> None:
        super().__init__()
        self._turn = turn

    def __setitem__(self, event_id: str, messages: Any) -> None:
        super().__setitem__(event_id, self._recorded(messages))

    def setdefault(self, event_id: str, messages: Any = None) -> Any:
        if event_id not in self:
            self[event_id] = messages
        return self[event_id]

    def _recorded(self, messages: Any) -> Any:
        if isinstance(messages, deque) and not isinstance(messages, _RecordedMessages):
            recorded = _RecordedMessages(self._turn)
            recorded.extend(messages)
            return recorded
        return messages


def _path(url: str) -> str:
    """The path of *url* (no host, no query): how a frame names the request."""
    return urlunsplit(("", "", urlsplit(url).path, "", "")) or "/"


class GradioProvider:
    """A Gradio chat app reached the way its web page reaches it.

    Raises (from ``__init__``):
        ConfigError: the profile's URL is not an http(s) URL.
    """

    def __init__(self, profile: ProviderProfile, settings: GradioSettings, *, connect_timeout: float = 10.0) -> None:
        parts = urlsplit(profile.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"providers.{profile.name}.url", "must be the app's http(s) URL")
        self.profile = profile
        self.name = profile.name
        self.traits = TRAITS
        self.max_message_chars = TRAITS.message_limit(profile.max_message_chars)
        self._url = profile.url.rstrip("/") + "/"
        self._where = safe_url(profile.url)
        self._api_name = "/" + settings.api_name.lstrip("/")
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._histories: dict[str, History] = {}
        self._sync: int | None = None
        self._models: list[str] = []
        self._health = Health(ready=False, connected=False, since=time.time())

    # -- the Provider protocol ------------------------------------------------------------

    def start(self) -> None:
        """Open a client (logging in when the profile has a username) and find the chat endpoint.

        Raises:
            ProviderRejected: the login was refused, or the app needs one and none is configured.
            ProviderUnavailable: the app could not be reached, or is not a ``gr.ChatInterface``.
        """
        try:
            with self._client() as client:
                self._sync = self._sync_event(client)
        except UpstreamError as exc:
            refused = isinstance(exc, ProviderRejected)
            self._set_health(connected=refused, error=str(exc), logged_in=False if refused else None)
            raise
        self._models = list(self.profile.models) or [DEFAULT_MODEL]
        self._set_health(connected=True, error=None)
        logger.info("%s: %s ready (%s), models: %s", self.name, self._where, self._api_name, ", ".join(self._models))

    def models(self) -> list[ModelInfo]:
        """The configured models, else ``chat``; none before the app was reached."""
        return [ModelInfo(m, self.profile.context_length) for m in self._models]

    def send(self, handle: str | None, model: str, text: str, deadlines: Deadlines) -> Turn:
        """Start a turn on a thread of its own; never blocks."""
        cancel = threading.Event()
        turn = Turn(self.name, deadlines, on_cancel=cancel.set)
        thread = threading.Thread(target=self._turn, args=(turn, cancel, handle, text),
                                  name=f"roogab-gradio-{self.name}", daemon=True)
        thread.start()
        return turn

    def forget(self, handle: str) -> None:
        """Drop a conversation's history; never blocks, never raises."""
        with self._lock:
            self._histories.pop(handle, None)

    def health(self) -> Health:
        """Readiness for ``/healthz``: reachable, logged in when the app asks, the last error."""
        return self._health

    def close(self) -> None:
        """Nothing stays open between turns; a turn in flight closes its client when it ends."""

    # -- a turn (its own thread) -----------------------------------------------------------

    def _turn(self, turn: Turn, cancel: threading.Event, handle: str | None, text: str) -> None:
        with self._lock:
            history = [] if handle is None else self._histories.get(handle)
        if history is None:
            turn.put(ConversationGone(f"{self.name}: conversation {handle} is not known here (RooGab "
                                      "restarted): replaying", provider=self.name))
            return
        handle = handle or uuid.uuid4().hex
        try:
            with self._client(turn) as client:
                reply = self._exchange(client, turn, cancel, handle, history, text)
        except UpstreamError as exc:
            turn.put(exc)
            return
        if reply is None:
            return
        with self._lock:
            self._histories[handle] = history + [_message("user", text), _message("assistant", reply)]
            while len(self._histories) > MAX_CONVERSATIONS:
                self._histories.pop(next(iter(self._histories)))
        turn.put(Done(reply))

    def _exchange(self, client: Client, turn: Turn, cancel: threading.Event, handle: str,
                  history: History, text: str) -> str | None:
        """Sync the history, send the message, stream the reply; None when the turn was cancelled."""
        with _gradio_errors(self.name, self._where):
            client.reset_session()
            if history and self._sync is not None:
                client.predict(history, fn_index=self._sync)
            job = client.submit(text, api_name=self._api_name)
            turn.put(Created(handle))
            seen = 0
            while not job.done():
                if cancel.wait(POLL_SECONDS):
                    job.cancel()
                    return None
                outputs = job.outputs()
                if len(outputs) > seen:
                    seen = len(outputs)
                    turn.put(Snapshot(_reply_text(self.name, outputs[-1])))
            error = job.exception()
            if error is not None:
                raise error
            outputs = job.outputs()
        if not outputs:
            raise ProviderDisconnected(f"{self.name}: the app ended the turn without a reply", provider=self.name)
        self._set_health(connected=True, error=None)
        return _reply_text(self.name, outputs[-1])

    # -- clients ---------------------------------------------------------------------------

    @contextmanager
    def _client(self, turn: Turn | None = None) -> Iterator[Client]:
        """A client for one turn, closed after it with its worker threads (none idles between turns)."""
        client = self._new_client(turn)
        try:
            yield client
        finally:
            _close(client)

    def _new_client(self, turn: Turn | None) -> Client:
        p = self.profile
        auth = (p.username, p.password) if p.username else None
        with _gradio_errors(self.name, self._where):
            client: Client = _QuietClient(
                self._url, verbose=False, auth=auth, headers=dict(p.headers) or None, download_files=False,
                analytics_enabled=False, max_workers=4, httpx_kwargs={"timeout": self._timeout}, turn=turn)
        return client

    def _sync_event(self, client: Client) -> int | None:
        """The event that copies the page's chat into the interface's state (see the module doc)."""
        deps = client.config.get("dependencies") or []
        types = {c.get("id"): c.get("type") for c in client.config.get("components") or []}
        chat = next((d for d in deps if "/" + str(d.get("api_name", "")).lstrip("/") == self._api_name), None)
        if chat is None or len(chat.get("inputs") or []) < 2:
            raise ProviderUnavailable(f"{self.name}: {self._where} has no {self._api_name} endpoint that takes "
                                      "a message and a history: is it a gr.ChatInterface app?", provider=self.name)
        state = chat["inputs"][1]
        for dep in deps:
            inputs, outputs = dep.get("inputs") or [], dep.get("outputs") or []
            if len(inputs) == 1 and types.get(inputs[0]) == "chatbot" and outputs[:1] == [state]:
                return int(dep.get("id", deps.index(dep)))
        raise ProviderUnavailable(f"{self.name}: {self._where}: no event sets the chat history; this "
                                  "Gradio version is not supported", provider=self.name)

    def _set_health(self, *, connected: bool, error: str | None, logged_in: bool | None = None) -> None:
        old = self._health
        if logged_in is None and self.profile.username:
            logged_in = connected
        self._health = Health(ready=connected and logged_in is not False, connected=connected, logged_in=logged_in,
                              last_error=error if error is not None else old.last_error, since=time.time())


def _close(client: Client) -> None:
    """Stop a client's heartbeat and let its worker threads end. A worker still waiting for events
    of a stream that died with the app would wait forever: the end-of-stream marker gradio_client
    itself uses (``None``) releases it."""
    client.close()
    with client.pending_lock:
        waiting = list(client.pending_messages_per_event.values())
    for messages in waiting:
        messages.append(None)
    for executor in (client.executor, client.stream_executor):
        executor.shutdown(wait=False, cancel_futures=True)


@contextmanager
def _gradio_errors(name: str, where: str) -> Iterator[None]:
    """gradio_client's and httpx's exceptions as RooGab errors (the one place they are named)."""
    try:
        yield
    except AuthenticationError as exc:
        raise ProviderRejected(f"{name}: {where} requires a login: configure username and password_env",
                               provider=name) from exc
    except AppError as exc:
        raise ProviderRejected(f"{name}: the app failed the turn: {short(str(exc))}", provider=name) from exc
    except (QueueError, TooManyRequestsError) as exc:
        raise ProviderRejected(f"{name}: the app is busy ({short(str(exc))})", provider=name) from exc
    except InvalidAPIEndpointError as exc:
        raise ProviderUnavailable(f"{name}: {where} has no such endpoint: {short(str(exc))}", provider=name) from exc
    except concurrent.futures.CancelledError as exc:  # gradio_client's word for "the event stream closed"
        raise ProviderDisconnected(f"{name}: the connection to {where} closed mid-reply", provider=name) from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"{name}: cannot reach {where}: {short(str(exc))}", provider=name) from exc
    except ValueError as exc:  # gradio_client raises plain ValueError for a refused login or a bad config
        if "login" in str(exc).lower():
            raise ProviderRejected(f"{name}: {where} refused the login", provider=name) from exc
        raise ProviderUnavailable(f"{name}: {where}: {short(str(exc))}", provider=name) from exc


def _message(role: str, text: str) -> dict[str, Any]:
    """One chat message as the page's chatbot holds it."""
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _reply_text(name: str, output: object) -> str:
    """The reply so far from one ``/chat`` output: a string, a message, or a list of messages."""
    if isinstance(output, tuple):
        output = output[0] if output else ""
    if isinstance(output, str):
        return output
    if isinstance(output, dict) and isinstance(output.get("content"), str):
        return str(output["content"])
    if isinstance(output, list) and all(isinstance(m, dict) for m in output):
        return "\n\n".join(_reply_text(name, m) for m in output if not (m.get("metadata") or {}).get("title"))
    raise ProviderRejected(f"{name}: the app answered with {type(output).__name__}, not text: only text "
                           "replies are supported", provider=name)


def _build(profile: ProviderProfile, settings: GradioSettings, context: Context) -> GradioProvider:
    return GradioProvider(profile, settings, connect_timeout=context.connect_timeout)


KIND = Kind("gradio", TRAITS, GradioSettings, _build)
