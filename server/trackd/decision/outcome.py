"""What a decision says: the variation (or none) and the step of the SDK's order that chose it.

Kept apart from the engine so the datafile model can build every possible Decision of an
experiment at load time; deciding then allocates nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trackd.datafile.model import Experiment, Variation


class Reason(enum.Enum):
    BUCKETED = "bucketed"
    FORCED = "forced"  # set through the SDK-style set_forced_variation API
    WHITELISTED = "whitelisted"  # the experiment's forcedVariations in the datafile
    STICKY = "sticky"  # a variation remembered from an earlier activation
    NOT_RUNNING = "not_running"
    AUDIENCE_MISMATCH = "audience_mismatch"
    OUTSIDE_TRAFFIC = "outside_traffic"
    NOT_IN_GROUP_SLOT = "not_in_group_slot"


@dataclass(frozen=True, slots=True, repr=False)
class Decision:
    experiment: Experiment
    variation: Variation | None  # None: the user sees no variation of this experiment
    reason: Reason

    def __repr__(self) -> str:
        # Keys only: the experiment's own repr spells out its whole configuration.
        variation = self.variation.key if self.variation else None
        return f"Decision({self.experiment.key!r}, {variation!r}, {self.reason.name})"
