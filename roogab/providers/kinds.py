"""The table of provider kinds: a kind's name -> the module that implements it.

Like uvicorn's tables of implementations (``LOOP_SETUPS``, ``HTTP_PROTOCOLS``), the table holds
import strings, so reading it (``config.py`` checks ``kind = ...`` against it) imports no network
library; ``load`` imports one kind's module when a provider of that kind is built.

Every kind module exposes ``KIND``, a ``Kind``: what the kind is (``Traits``), the dataclass of
its own settings (the profile's keys beyond the common ones, in ``ProviderProfile.options``) and
a factory. A row also names those keys, so ``load_config`` refuses a misspelt key before anything
is imported (a test keeps each row's names equal to its dataclass's fields). Adding a kind is one
new module plus one row here.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_type_hints

from ..errors import ConfigError
from .base import Traits

if TYPE_CHECKING:
    from ..config import ProviderProfile
    from .base import Provider
    from .loop import ProviderLoop

__all__ = ["KINDS", "Context", "Kind", "NoSettings", "Row", "build", "load", "parse_settings"]


@dataclass(frozen=True)
class Row:
    """One row of the table: where the kind lives (``module:attribute``) and its own settings keys."""

    target: str
    settings: tuple[str, ...] = ()


KINDS: Mapping[str, Row] = types.MappingProxyType({
    "demo": Row("roogab.providers.socketio_impl:DEMO_KIND"),
    "socketio": Row("roogab.providers.socketio_impl:KIND"),
    "websocket": Row("roogab.providers.websocket_impl:KIND"),
    "chainlit": Row("roogab.providers.chainlit_impl:KIND"),
    "openwebui": Row("roogab.providers.openwebui_impl:KIND", ("temporary_chats", "title")),
    "gradio": Row("roogab.providers.gradio_impl:KIND", ("api_name",)),
})

S = TypeVar("S")


@dataclass(frozen=True)
class Context:
    """What the composition root hands every factory: the provider loop and the timeouts."""

    loop: ProviderLoop
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class NoSettings:
    """The settings of a kind that has none beyond the common profile keys."""


@dataclass(frozen=True)
class Kind(Generic[S]):
    """One provider kind: what it is, its own settings, and how to build one."""

    name: str
    traits: Traits
    settings: type[S]
    factory: Callable[[ProviderProfile, S, Context], Provider]

    def build(self, profile: ProviderProfile, context: Context) -> Provider:
        """A provider of this kind for *profile*.

        Raises:
            ConfigError: a kind-specific setting is unknown or has the wrong type.
        """
        return self.factory(profile, parse_settings(profile, self.settings), context)


def load(name: str) -> Kind[Any]:
    """The ``Kind`` registered as *name* (its module is imported now).

    Raises:
        ConfigError: no kind has that name.
    """
    if name not in KINDS:
        raise ConfigError("kind", f"must be one of {', '.join(KINDS)}, not {name!r}")
    module, _, attribute = KINDS[name].target.partition(":")
    kind: Kind[Any] = getattr(importlib.import_module(module), attribute)
    return kind


def build(profile: ProviderProfile, context: Context) -> Provider:
    """The provider for *profile*, built by its kind's factory.

    Raises:
        ConfigError: the kind is unknown, or one of its settings is invalid.
    """
    return load(profile.kind).build(profile, context)


def parse_settings(profile: ProviderProfile, cls: type[S]) -> S:
    """The kind's settings dataclass from the profile's extra keys, checked by name and type.

    Raises:
        ConfigError: an unknown key (naming it), or a value of the wrong type.
    """
    hints = get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in profile.options:
        where = f"providers.{profile.name}.{key}"
        if key not in fields:
            raise ConfigError(where, f"unknown setting for kind {profile.kind!r}")
        values[key] = _checked(where, hints[key], value)
    return cls(**values)


def _checked(where: str, annotation: object, value: object) -> object:
    expected = annotation if isinstance(annotation, type) else None
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(where, "must be true or false")
    if expected in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(where, "must be a number")
    if expected is str and not isinstance(value, str):
        raise ConfigError(where, "must be a string")
    return float(value) if expected is float else value  # type: ignore[arg-type]
