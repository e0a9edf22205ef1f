"""Fixtures for provider tests: the provider loop, a live demo chat service, a connected provider.

Everything binds 127.0.0.1 on a free port and is stopped in teardown.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from roogab.config import demo_profile
from roogab.demo import DemoChatService
from roogab.providers.loop import ProviderLoop
from roogab.providers.socketio_impl import MultiplexProvider, Reconnection

FAST_RECONNECT = Reconnection(attempts=3, delay=0.05, delay_max=0.2, jitter=0.02)


@pytest.fixture
def provider_loop() -> Iterator[ProviderLoop]:
    loop = ProviderLoop()
    loop.start()
    yield loop
    loop.stop()


@pytest.fixture
def demo() -> Iterator[DemoChatService]:
    service = DemoChatService()
    service.start()
    yield service
    service.stop()


@pytest.fixture
def provider(demo: DemoChatService, provider_loop: ProviderLoop) -> Iterator[MultiplexProvider]:
    p = MultiplexProvider(demo_profile(demo.url), provider_loop, connect_timeout=2.0,
                          reconnection=FAST_RECONNECT)
    p.start()
    yield p
    p.close()
