"""Small result types shared by the sync and async clients."""

from __future__ import annotations

from dataclasses import dataclass

from trackd_client._proto.v1 import tracking_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class Attribution:
    """An experiment a conversion was counted for, and the user's variation in it."""

    experiment_key: str
    variation_key: str
    experiment_id: str
    variation_id: str

    @classmethod
    def from_proto(cls, message: pb.Attribution) -> Attribution:
        return cls(
            experiment_key=message.experiment_key,
            variation_key=message.variation_key,
            experiment_id=message.experiment_id,
            variation_id=message.variation_id,
        )


def variation_or_none(key: str) -> str | None:
    """trackd answers "" when the user is in no variation; Python callers get None."""
    return key or None
