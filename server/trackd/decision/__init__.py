"""Variation decisions, made exactly as the Optimizely SDKs make them."""

from trackd.datafile.model import Decision, Reason
from trackd.decision.engine import decide

__all__ = ["Decision", "Reason", "decide"]
