"""Small result types shared by the sync and async clients."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from trackd_client._proto.v1 import tracking_service_pb2 as pb
from trackd_client._values import Json, Scalar, from_struct, to_value_map


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


class DecideOption(enum.IntEnum):
    """What changes a decide call, as the SDKs' OptimizelyDecideOption."""

    DISABLE_DECISION_EVENT = pb.DECIDE_OPTION_DISABLE_DECISION_EVENT
    ENABLED_FLAGS_ONLY = pb.DECIDE_OPTION_ENABLED_FLAGS_ONLY
    IGNORE_USER_PROFILE_SERVICE = pb.DECIDE_OPTION_IGNORE_USER_PROFILE_SERVICE
    INCLUDE_REASONS = pb.DECIDE_OPTION_INCLUDE_REASONS
    EXCLUDE_VARIABLES = pb.DECIDE_OPTION_EXCLUDE_VARIABLES


# The SDKs' decision sources, by the proto's RuleType.
_RULE_TYPES: dict[int, str | None] = {
    pb.RULE_TYPE_UNSPECIFIED: None,
    pb.RULE_TYPE_EXPERIMENT: "experiment",
    pb.RULE_TYPE_FEATURE_TEST: "feature-test",
    pb.RULE_TYPE_ROLLOUT: "rollout",
    pb.RULE_TYPE_HOLDOUT: "holdout",
}


class VariableTypeError(TypeError):
    """A variable was read with a getter of another type than its own."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One flag's decision, as the SDKs' OptimizelyDecision.

    variation_key and rule_key are None when no variation or rule decided; rule_type is
    "experiment", "feature-test", "rollout", "holdout" or None. error is set (and enabled
    False) when the flag could not be decided, e.g. an unknown flag key.
    """

    flag_key: str
    enabled: bool
    variation_key: str | None
    rule_key: str | None
    rule_type: str | None
    variables: dict[str, Json]
    reasons: tuple[str, ...]
    impression_recorded: bool
    error: str | None

    @classmethod
    def from_proto(cls, message: pb.FlagDecision) -> Decision:
        return cls(
            flag_key=message.flag_key,
            enabled=message.enabled,
            variation_key=variation_or_none(message.variation_key),
            rule_key=message.rule_key or None,
            rule_type=_RULE_TYPES.get(message.rule_type),
            variables=from_struct(message.variables),
            reasons=tuple(message.reasons),
            impression_recorded=message.impression_recorded,
            error=message.error or None,
        )

    @classmethod
    def dropped(cls, flag_key: str) -> Decision:
        """A disabled flag that ENABLED_FLAGS_ONLY left out of trackd's answer."""
        return cls(flag_key, False, None, None, None, {}, (), False, None)

    def get_boolean(self, key: str) -> bool:
        value = self._variable(key)
        if not isinstance(value, bool):
            raise self._mismatch(key, "boolean")
        return value

    def get_integer(self, key: str) -> int:
        value = self._variable(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._mismatch(key, "integer")
        return value

    def get_double(self, key: str) -> float:
        # A double with a whole value arrives as a whole number (from_value makes it an int).
        value = self._variable(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._mismatch(key, "double")
        return float(value)

    def get_string(self, key: str) -> str:
        value = self._variable(key)
        if not isinstance(value, str):
            raise self._mismatch(key, "string")
        return value

    def get_json(self, key: str) -> dict[str, Json]:
        value = self._variable(key)
        if not isinstance(value, dict):
            raise self._mismatch(key, "json")
        return value

    def _variable(self, key: str) -> Json:
        try:
            return self.variables[key]
        except KeyError:
            raise KeyError(f"flag {self.flag_key!r} has no variable {key!r}") from None

    def _mismatch(self, key: str, wanted: str) -> VariableTypeError:
        value = self.variables[key]
        return VariableTypeError(
            f"flag {self.flag_key!r}: variable {key!r} is {type(value).__name__} {value!r},"
            f" not {wanted}"
        )


def decide_request(
    user_id: str,
    flag_keys: Sequence[str],
    attributes: Mapping[str, Scalar] | None,
    options: Iterable[DecideOption],
) -> pb.DecideRequest:
    """The DecideRequest of decide, decide_for_keys and decide_all (no keys: every flag)."""
    if isinstance(flag_keys, str):
        raise TypeError("flag_keys must be a sequence of keys, not one str")
    return pb.DecideRequest(
        user_id=user_id,
        attributes=to_value_map(attributes),
        flag_keys=list(flag_keys),
        options=[pb.DecideOption.Name(DecideOption(option)) for option in options],
    )


def single_flag_options(options: Iterable[DecideOption]) -> list[DecideOption]:
    """decide's options: the SDK's decide drops ENABLED_FLAGS_ONLY, so one flag always answers."""
    return [o for o in map(DecideOption, options) if o is not DecideOption.ENABLED_FLAGS_ONLY]


def decisions_by_key(response: pb.DecideResponse) -> dict[str, Decision]:
    """flag key -> Decision, in trackd's order (request order, or datafile order for all)."""
    return {d.flag_key: Decision.from_proto(d) for d in response.decisions}
