"""Chat-service providers: the protocol they share and one module per wire family."""

from .base import Created, Deadlines, Delta, Done, Health, ModelInfo, Provider, ProviderEvent, Snapshot, Turn

__all__ = ["Created", "Deadlines", "Delta", "Done", "Health", "ModelInfo", "Provider", "ProviderEvent",
           "Snapshot", "Turn"]
