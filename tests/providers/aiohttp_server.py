"""An aiohttp application served on 127.0.0.1 (a free port) from a thread, for provider tests."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class AiohttpServer:
    """Serve *app* on its own event loop thread; ``start`` returns the base URL, ``stop`` ends it."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-aiohttp", daemon=True)

    def start(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self.url

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
