"""Activation stores: who was activated in which variation, live for a TTL."""

from trackd.activation.memory import MemoryActivationStore
from trackd.activation.store import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_SECONDS,
    ActivationStats,
    ActivationStore,
    Held,
    Keep,
    Lookup,
    Sticky,
    Write,
)

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_TTL_SECONDS",
    "ActivationStats",
    "ActivationStore",
    "Held",
    "Keep",
    "Lookup",
    "MemoryActivationStore",
    "Sticky",
    "Write",
]
