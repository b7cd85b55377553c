"""Variation decisions, made exactly as the Optimizely SDKs make them."""

from trackd.decision.engine import decide
from trackd.decision.outcome import Decision, Reason

__all__ = ["Decision", "Reason", "decide"]
