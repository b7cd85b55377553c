"""An `EventLog` (trackd.tracking) in a list, for tests that drive a Tracker without an
outbox: what was appended, in order, and no results."""

from __future__ import annotations

from collections.abc import Sequence

from trackd.events.outbox import Receipt
from trackd.events.records import (
    ConversionColumns,
    OutboxRecord,
    Record,
    expand_decisions,
    from_plain,
)
from trackd.events.results import ExperimentResults, ResultsConfig, ResultsExperiment


class ListEventLog:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def append(
        self, records: Sequence[OutboxRecord] | ConversionColumns, receipt: Receipt | None = None
    ) -> bytes | None:
        self.records.extend(self.expanded(records))
        return None

    @staticmethod
    def expanded(records: Sequence[OutboxRecord] | ConversionColumns) -> list[Record]:
        """A TrackStream batch's columns, or a Decide call's `DecisionEvents`, as the records
        they hold: a record per event."""
        if isinstance(records, ConversionColumns):
            return records.records()
        return from_plain(expand_decisions(records))

    async def results(
        self, config: ResultsConfig, experiment: ResultsExperiment
    ) -> ExperimentResults:
        return ExperimentResults(experiment.key, experiment.id, ())
