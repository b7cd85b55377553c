"""Compiled audience conditions: three-valued (True, False, None = unknown) as in the SDK.

Each node answers `evaluate(attributes)`. Checks that depend only on the datafile (is the
condition value a finite number? is the target a valid version?) were settled when the node
was built, so evaluation looks at the user's value only. The per-check rules mirror
optimizely/helpers/condition.py; where that code would log a warning and return None, a node
returns None.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from trackd.decision import semver

Attributes = Mapping[str, object]

MAX_NUMBER = 2**53  # the SDK's limit for numbers it will compare (validator.is_finite_number)


def is_number(value: object) -> bool:
    """int or float, but not bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    # `not abs <= MAX` also rejects NaN, for which every comparison is False.
    return is_number(value) and abs(value) <= MAX_NUMBER  # type: ignore[arg-type]


class Condition:
    """A node of a compiled condition tree."""

    __slots__ = ()

    def evaluate(self, attributes: Attributes) -> bool | None:
        raise NotImplementedError


class Constant(Condition):
    """A result known at load: an unknown leaf, an empty "and", a "qualified" segment check."""

    __slots__ = ("result",)

    def __init__(self, result: bool | None) -> None:
        self.result = result

    def evaluate(self, attributes: Attributes) -> bool | None:
        return self.result

    def __repr__(self) -> str:
        return f"Constant({self.result!r})"


UNKNOWN = Constant(None)
TRUE = Constant(True)
FALSE = Constant(False)


class AllOf(Condition):
    """The "and" operator: False wins, then unknown, else True."""

    __slots__ = ("operands",)

    def __init__(self, operands: tuple[Condition, ...]) -> None:
        self.operands = operands

    def evaluate(self, attributes: Attributes) -> bool | None:
        saw_unknown = False
        for operand in self.operands:
            result = operand.evaluate(attributes)
            if result is False:
                return False
            if result is None:
                saw_unknown = True
        return None if saw_unknown else True

    def __repr__(self) -> str:
        return f"AllOf({list(self.operands)!r})"


# AnyOf is AllOf with the answers swapped, written out twice on purpose: one class reading
# which answer decides from the node cost 40 to 60 ns more per node (10-15% of evaluating an
# "and"/"or" of three leaves, measured 2026-12-07), on the path every audience check takes.
class AnyOf(Condition):
    """The "or" operator (also a list without one): True wins, then unknown, else False."""

    __slots__ = ("operands",)

    def __init__(self, operands: tuple[Condition, ...]) -> None:
        self.operands = operands

    def evaluate(self, attributes: Attributes) -> bool | None:
        saw_unknown = False
        for operand in self.operands:
            result = operand.evaluate(attributes)
            if result is True:
                return True
            if result is None:
                saw_unknown = True
        return None if saw_unknown else False

    def __repr__(self) -> str:
        return f"AnyOf({list(self.operands)!r})"


class Not(Condition):
    """The "not" of the first operand (the SDK ignores the rest); not unknown is unknown."""

    __slots__ = ("operand",)

    def __init__(self, operand: Condition) -> None:
        self.operand = operand

    def evaluate(self, attributes: Attributes) -> bool | None:
        result = self.operand.evaluate(attributes)
        return None if result is None else not result

    def __repr__(self) -> str:
        return f"Not({self.operand!r})"


class AttributeCondition(Condition):
    """A leaf on one user attribute; `evaluate` is only reached with a non-None user value."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: object) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.value!r})"


class Exists(AttributeCondition):
    def evaluate(self, attributes: Attributes) -> bool | None:
        return attributes.get(self.name) is not None


class Exact(AttributeCondition):
    """Equal values of the same kind: str to str, bool to bool, number to finite number."""

    def evaluate(self, attributes: Attributes) -> bool | None:
        user_value = attributes.get(self.name)
        if user_value is None:
            return None
        value = self.value
        if isinstance(value, str):
            return value == user_value if isinstance(user_value, str) else None
        if isinstance(value, bool):
            return value == user_value if isinstance(user_value, bool) else None
        if not is_number(user_value):
            return None
        if not is_finite_number(user_value):
            return None
        return value == user_value


class Substring(AttributeCondition):
    def evaluate(self, attributes: Attributes) -> bool | None:
        user_value = attributes.get(self.name)
        if not isinstance(user_value, str):
            return None
        return self.value in user_value  # type: ignore[operator]


class NumberComparison(AttributeCondition):
    """gt/ge/lt/le: the user value must be a finite number (bool is not a number)."""

    __slots__ = ("compare",)

    def __init__(self, name: str, value: object, compare: Callable[[Any, Any], bool]) -> None:
        super().__init__(name, value)
        self.compare = compare

    def evaluate(self, attributes: Attributes) -> bool | None:
        user_value = attributes.get(self.name)
        if not is_finite_number(user_value):
            return None
        return self.compare(user_value, self.value)


class SemverComparison(AttributeCondition):
    """semver_*: the user value must be a str and a valid version; `accepts` reads -1/0/1."""

    __slots__ = ("accepts", "target")

    def __init__(self, name: str, target: semver.Target, accepts: frozenset[int]) -> None:
        super().__init__(name, target)
        self.target = target
        self.accepts = accepts

    def evaluate(self, attributes: Attributes) -> bool | None:
        user_value = attributes.get(self.name)
        if not isinstance(user_value, str):
            return None
        order = semver.compare(self.target, user_value)
        if order is None:
            return None
        return order in self.accepts


CONDITION_TYPES = ("custom_attribute", "third_party_dimension")
NUMBER_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
SEMVER_ORDERS = {
    "semver_eq": frozenset({0}),
    "semver_gt": frozenset({1}),
    "semver_ge": frozenset({0, 1}),
    "semver_lt": frozenset({-1}),
    "semver_le": frozenset({-1, 0}),
}


def attribute_condition(name: object, value: object, kind: object, match: object) -> Condition:
    """Compile one leaf {name, value, type, match}; what can never be known becomes UNKNOWN."""
    if not isinstance(kind, str) or kind not in CONDITION_TYPES:
        return UNKNOWN
    if match is None:
        match = "exact"
    if not isinstance(match, str):
        return UNKNOWN
    if match == "qualified":
        # An ODP segment test. trackd holds no segments, so a user qualifies for none,
        # as an SDK user context that never fetched them.
        return FALSE if isinstance(value, str) else UNKNOWN
    if match == "exists":
        # Only str keys can be present in the attributes.
        return Exists(name, value) if isinstance(name, str) else FALSE
    if not isinstance(name, str):
        return UNKNOWN  # never among the user's attributes: "missing attribute"
    if match == "exact":
        if isinstance(value, str | bool) or is_finite_number(value):
            return Exact(name, value)
        return UNKNOWN
    if match == "substring":
        return Substring(name, value) if isinstance(value, str) else UNKNOWN
    compare = NUMBER_COMPARISONS.get(match)
    if compare is not None:
        return NumberComparison(name, value, compare) if is_finite_number(value) else UNKNOWN
    accepts = SEMVER_ORDERS.get(match)
    if accepts is not None and isinstance(value, str):
        target = semver.Target(value)
        return SemverComparison(name, target, accepts) if target.parts is not None else UNKNOWN
    return UNKNOWN  # unknown match type, or a semver target that is not a str
