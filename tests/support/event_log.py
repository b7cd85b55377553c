"""An `EventLog` (trackd.tracking) in a list, for tests that drive a Tracker without an
outbox: what was appended, in order, and no results."""

from __future__ import annotations

from collections.abc import Sequence

from trackd.events.outbox import Receipt
from trackd.events.records import ConversionColumns, Record
from trackd.events.results import ExperimentResults, ResultsConfig, ResultsExperiment


class ListEventLog:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def append(
        self, records: Sequence[Record] | ConversionColumns, receipt: Receipt | None = None
    ) -> bytes | None:
        self.records.extend(self.expanded(records))
        return None

    @staticmethod
    def expanded(records: Sequence[Record] | ConversionColumns) -> list[Record]:
        """A TrackStream batch's columns as the records they hold."""
        return records.records() if isinstance(records, ConversionColumns) else list(records)

    async def results(
        self, config: ResultsConfig, experiment: ResultsExperiment
    ) -> ExperimentResults:
        return ExperimentResults(experiment.key, experiment.id, ())
