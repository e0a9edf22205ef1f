"""SocketSession: one python-socketio ``AsyncClient`` and the bookkeeping every Socket.IO provider
needs around it (the multiplexed, Chainlit and Open WebUI providers all use it).

It owns the client and its own aiohttp session (so a failed connect leaves nothing unclosed), the
bounded ``Reconnection`` schedule handed to python-socketio (never a second, home-made loop:
providers.md §5.3), and the state that schedule leaves implicit: connected or not, whether
python-socketio is still trying to reconnect, how many tries failed, and what the server said
when it refused us. A provider gives it its handlers and three callbacks; everything here runs
on the provider loop's thread.

Every call into the client goes through ``socketio_errors``, so only RooGab errors leave.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import socketio

from ..errors import ProviderUnavailable, UpstreamError
from ._text import short
from .socketio_errors import MAX_FRAME_BYTES, socketio_errors

__all__ = ["PacketJson", "Reconnection", "SocketSession"]

logger = logging.getLogger(__name__)

_FINAL = (socketio.AsyncClient.reason.CLIENT_DISCONNECT, socketio.AsyncClient.reason.SERVER_DISCONNECT)


class PacketJson:
    """The ``json`` python-socketio and python-engineio decode packets with (their documented
    ``json=`` option): the standard library's, with engineio's own guard against huge integers,
    but one decoder made once. engineio's ``loads`` passes ``parse_int`` to ``json.loads``, which
    then builds a new ``JSONDecoder`` for every packet: a tenth of the provider loop's time at 400
    streams (one packet per token), 2.2 against 0.8 µs for a token's packet."""

    MAX_INT_DIGITS = 100  # as engineio's json: a longer integer is refused, not parsed

    def __init__(self) -> None:
        self._decoder = json.JSONDecoder(parse_int=self._int)

    @classmethod
    def _int(cls, digits: str) -> int:
        if len(digits) > cls.MAX_INT_DIGITS:
            raise ValueError("Integer is too large")
        return int(digits)

    def loads(self, text: str | bytes | bytearray, **options: Any) -> Any:
        """``json.loads``; *text* as a ``str`` and no options (every packet) takes the kept decoder."""
        if options or not isinstance(text, str):
            return json.loads(text, **{"parse_int": self._int, **options})
        return self._decoder.decode(text)

    dumps = staticmethod(json.dumps)  # as the libraries call it


@dataclass(frozen=True)
class Reconnection:
    """python-socketio's reconnection schedule: delays double from ``delay`` up to
    ``delay_max``, ± ``jitter`` seconds; after ``attempts`` failed tries it gives up."""

    attempts: int = 8
    delay: float = 0.5
    delay_max: float = 5.0
    jitter: float = 0.25


OnConnect = Callable[[], Awaitable[None]]
OnDisconnect = Callable[[object], None]
OnFailure = Callable[[str], None]


class SocketSession:
    """One Socket.IO connection with its reconnection state.

    *on_connect* runs after every (re)connect (re-establish what the server forgot there);
    *on_disconnect* gets the reason of an unexpected drop (never called while closing);
    *on_failure* gets a short message for each failed connect attempt.
    """

    def __init__(self, provider: str, where: str, reconnection: Reconnection,
                 handlers: Mapping[str, Callable[..., Any]], *, on_connect: OnConnect,
                 on_disconnect: OnDisconnect, on_failure: OnFailure) -> None:
        self.provider = provider
        self.where = where  # the service's URL as it may be shown (no credentials)
        self.reconnection = reconnection
        self.client: socketio.AsyncClient | None = None
        self.connected = asyncio.Event()
        self.reconnecting = False
        self.failed_attempts = 0
        self.refused = ""       # the server's message when it refused the connection
        self.closing = False
        self._handlers = dict(handlers)
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_failure = on_failure
        self._http: aiohttp.ClientSession | None = None

    @property
    def sid(self) -> str | None:
        """The Socket.IO session id of the live connection (Open WebUI's ``session_id``)."""
        client = self.client
        return client.get_sid() if client is not None and client.connected else None

    async def open(self, url: str, *, socketio_path: str, timeout: float,
                   headers: Callable[[], dict[str, str]] | Mapping[str, str] | None = None,
                   auth: Callable[[], dict[str, str]] | Mapping[str, str] | None = None) -> None:
        """Connect a fresh client (a given-up one is never reused); *headers* and *auth* may be
        callables, asked again on every reconnect.

        Raises:
            ProviderUnavailable: the connection could not be made (``refused`` says whether the
                server refused it).
        """
        await self.drop()
        self._http = aiohttp.ClientSession()
        self.client = self._new_client(self._http)
        self.refused, self.closing = "", False
        try:
            with socketio_errors(self.provider, f"cannot connect to {self.where}"):
                await self.client.connect(url, headers=headers or {}, auth=auth, transports=["websocket"],
                                          socketio_path=socketio_path, wait_timeout=timeout)
        except ProviderUnavailable:
            await self.drop()
            raise

    async def ensure(self, connect: Callable[[], Awaitable[None]], timeout: float) -> None:
        """Connected: at once, or after python-socketio's reconnection succeeds within *timeout*;
        otherwise (never connected, it gave up, or it is too slow) *connect* once, directly."""
        if self.client is not None and self.client.connected:
            return
        if self.client is not None and self.reconnecting:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while self.reconnecting and not self.connected.is_set() and loop.time() < deadline:
                try:
                    await asyncio.wait_for(self.connected.wait(), 0.05)
                except asyncio.TimeoutError:
                    continue
            if self.connected.is_set():
                return
            self.reconnecting = False
        await connect()

    async def drop(self) -> None:
        """Shut the client down (stopping any reconnection) and close its HTTP session."""
        client, http = self.client, self._http
        self.client = self._http = None
        self.closing = True
        self.reconnecting = False
        self.connected.clear()
        if client is not None:
            with socketio_errors(self.provider, "disconnect"):
                await client.shutdown()
        if http is not None:
            await http.close()

    async def emit(self, event: str, data: object = None) -> None:
        """Send *event*.

        Raises:
            ProviderUnavailable: not connected, or the transport broke.
        """
        if self.client is None:
            raise ProviderUnavailable(f"{self.provider}: not connected", provider=self.provider)
        with socketio_errors(self.provider, f"sending {event}"):
            await self.client.emit(event, data)

    async def emit_quietly(self, event: str, data: object = None) -> None:
        """Emit where a failure has nobody to report to; the disconnect handler tells the turns."""
        try:
            await self.emit(event, data)
        except UpstreamError as exc:
            logger.info("%s", exc)

    async def call(self, event: str, data: object = None, *, timeout: float) -> object:
        """Send *event* and wait for its acknowledgement.

        Raises:
            ProviderTimeout: no acknowledgement within *timeout*.
            ProviderUnavailable: not connected, or the transport broke.
        """
        if self.client is None:
            raise ProviderUnavailable(f"{self.provider}: not connected", provider=self.provider)
        with socketio_errors(self.provider, event):
            return await self.client.call(event, data, timeout=timeout)

    def _new_client(self, http: aiohttp.ClientSession) -> socketio.AsyncClient:
        r = self.reconnection
        client = socketio.AsyncClient(
            reconnection=True, reconnection_attempts=r.attempts, reconnection_delay=r.delay,
            reconnection_delay_max=r.delay_max, randomization_factor=r.jitter,
            handle_sigint=False, logger=False, engineio_logger=False, http_session=http, json=PacketJson(),
            # aiohttp drops the connection on a frame over 4 MB by default: one long reply would
            # take every conversation on the connection with it
            websocket_extra_options={"max_msg_size": MAX_FRAME_BYTES})
        client.on("connect", self._connected)
        client.on("disconnect", self._disconnected)
        client.on("connect_error", self._connect_failed)
        for event, handler in self._handlers.items():
            client.on(event, handler)
        return client

    async def _connected(self) -> None:
        self.reconnecting, self.failed_attempts, self.refused = False, 0, ""
        self.connected.set()
        await self._on_connect()

    def _disconnected(self, reason: object = None) -> None:
        self.connected.clear()
        self.reconnecting = not self.closing and reason not in _FINAL
        self.failed_attempts = 0
        if not self.closing:
            self._on_disconnect(reason)

    def _connect_failed(self, data: object = None) -> None:
        self.failed_attempts += 1
        if self.failed_attempts >= self.reconnection.attempts > 0:
            self.reconnecting = False
        message = data.get("message") if isinstance(data, dict) else data
        self.refused = str(message or "") if isinstance(data, dict) else ""
        self._on_failure(f"connect failed: {short(message)}")
