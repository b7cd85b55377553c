"""Override stores: forced variations and forced decisions every worker and replica sees."""

from trackd.overrides.memory import MemoryOverrideStore
from trackd.overrides.store import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_SECONDS,
    NO_OVERRIDES,
    DecisionContext,
    OverrideStore,
    UserOverrides,
)

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_TTL_SECONDS",
    "NO_OVERRIDES",
    "DecisionContext",
    "MemoryOverrideStore",
    "OverrideStore",
    "UserOverrides",
]
