"""``roogab check``: is each configured chat service usable, and does its model follow the format?"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from .app import build_service
from .config import Config
from .errors import RooGabError
from .providers.base import Provider
from .providers.loop import ProviderLoop
from .redact import Redactor
from .registry import Registry
from .runtime import build_provider, secrets
from .wire import parse_chat_request

__all__ = ["CheckResult", "check_providers"]

PROBE = "RooGab check: reply with the text OK; no tool call is needed."
# A tool on offer makes the probe strict: plain prose without an envelope is then non-compliant.
PROBE_TOOL = {"type": "function", "function": {"name": "attempt_completion", "parameters": {
    "type": "object", "properties": {"result": {"type": "string"}}, "required": ["result"]}}}


@dataclass(frozen=True)
class CheckResult:
    """What ``roogab check`` found for one provider."""

    provider: str
    ok: bool
    lines: tuple[str, ...]


def check_providers(config: Config) -> Iterator[CheckResult]:
    """Connect, log in, list models and send one probe to every provider of *config*; what it
    says of a failure is redacted (the chat service's message may quote a secret)."""
    redactor = Redactor(secrets(config))
    loop = ProviderLoop()
    loop.start()
    try:
        for profile in config.providers:
            provider = build_provider(profile, loop, config)
            try:
                yield _check(config, provider, redactor)
            finally:
                provider.close()
    finally:
        loop.stop()


def _check(config: Config, provider: Provider, redactor: Redactor) -> CheckResult:
    lines: list[str] = []
    try:
        provider.start()
        health = provider.health()
        lines.append(f"connected{', logged in' if health.logged_in else ''}")
        models = [m.id for m in provider.models()]
        lines.append(f"models: {', '.join(models)}")
        started = time.monotonic()
        registry = Registry()
        try:
            service = build_service(config, {provider.name: provider}, registry=registry, redactor=redactor)
            request = parse_chat_request({"model": f"{provider.name}/{models[0]}", "tools": [PROBE_TOOL],
                                          "messages": [{"role": "user", "content": PROBE}]})
            answer = service.complete(request, "check")
        finally:
            registry.close()
        elapsed = (time.monotonic() - started) * 1000
        lines.append(f"probe answered in a valid envelope in {elapsed:.0f} ms: {answer.text[:60]!r}")
        return CheckResult(provider.name, True, tuple(lines))
    except RooGabError as exc:
        lines.append(f"FAILED: {redactor.redact(str(exc))}")  # start() and models() fail outside the service
        return CheckResult(provider.name, False, tuple(lines))
