"""The Optimizely datafile: parsed once into an immutable, pre-indexed ProjectConfig."""

from trackd.datafile.model import (
    Attribute,
    AttributeValue,
    Audience,
    Event,
    Experiment,
    FeatureFlag,
    FlagDecision,
    Group,
    Holdout,
    ProjectConfig,
    Rollout,
    RuleType,
    TrafficRange,
    Variable,
    Variation,
)
from trackd.datafile.parse import SUPPORTED_VERSIONS, parse_datafile

__all__ = [
    "SUPPORTED_VERSIONS",
    "Attribute",
    "AttributeValue",
    "Audience",
    "Event",
    "Experiment",
    "FeatureFlag",
    "FlagDecision",
    "Group",
    "Holdout",
    "ProjectConfig",
    "Rollout",
    "RuleType",
    "TrafficRange",
    "Variable",
    "Variation",
    "parse_datafile",
]
