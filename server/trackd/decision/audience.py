"""Build condition trees from datafile JSON, the way the SDK reads it, once at load.

Two levels, as in optimizely/helpers/audience.py: an experiment's audienceConditions (or
audienceIds) combine audience ids; each audience's conditions combine attribute leaves. Audience
ids are resolved here, so an experiment's tree is self-contained and evaluation does no lookups.

Where the SDK would raise mid-decision (an empty list as an operand, a leaf of an unusable
kind) the node is UNKNOWN instead: the decision degrades to "audience not met" rather than
an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from trackd.decision.conditions import (
    FALSE,
    TRUE,
    UNKNOWN,
    AllOf,
    AnyOf,
    Condition,
    Not,
    attribute_condition,
)

OPERATORS = ("and", "or", "not")


SharedNodes = dict[tuple[object, ...], Condition]
"""(node type, operand nodes) -> the node first built for them: one snapshot's equal trees
become one object (see ExperimentConditions)."""


def compile_tree(
    structure: object, leaf: Callable[[object], Condition], shared: SharedNodes | None = None
) -> Condition:
    """Compile a nested ["and"|"or"|"not", ...] structure; a list without an operator is "or".

    With `shared`, a node whose type and operands were built before is that same node."""
    if not isinstance(structure, list):
        return leaf(structure)
    if not structure:
        return UNKNOWN  # the SDK indexes [0] and raises
    head = structure[0]
    if head in OPERATORS:
        operands = tuple(compile_tree(item, leaf, shared) for item in structure[1:])
        if head == "not":
            return _node(Not, operands[:1], shared) if operands else UNKNOWN
        if head == "and":
            return _combine(AllOf, operands, TRUE, shared)
        return _combine(AnyOf, operands, FALSE, shared)
    return _combine(
        AnyOf, tuple(compile_tree(item, leaf, shared) for item in structure), FALSE, shared
    )


def _combine(
    kind: type[AllOf] | type[AnyOf],
    operands: tuple[Condition, ...],
    empty: Condition,
    shared: SharedNodes | None,
) -> Condition:
    # With one operand, "and" and "or" both return exactly what it returns.
    if not operands:
        return empty
    if len(operands) == 1:
        return operands[0]
    return _node(kind, operands, shared)


def _node(
    kind: type[AllOf] | type[AnyOf] | type[Not],
    operands: tuple[Condition, ...],
    shared: SharedNodes | None,
) -> Condition:
    # Operands compare by identity (Condition defines no __eq__), and they were shared in
    # turn, so equal keys mean equal trees.
    key = (kind, *operands)
    node = None if shared is None else shared.get(key)
    if node is None:
        node = kind(operands[0]) if issubclass(kind, Not) else kind(operands)
        if shared is not None:
            shared[key] = node
    return node


def compile_audience_conditions(conditions_json: str) -> Condition:
    """Compile an audience's `conditions` JSON text; raises ValueError if it is not JSON.

    Decoded as the SDK does (condition.loads): every JSON object becomes the integer index of
    a [name, value, type, match] entry, and integers in the structure are read as indexes.
    """
    entries: list[list[object]] = []

    def to_index(obj: dict[str, object]) -> int:
        entries.append([obj.get("name"), obj.get("value"), obj.get("type"), obj.get("match")])
        return len(entries) - 1

    structure = json.JSONDecoder(object_hook=to_index).decode(conditions_json)

    def leaf(index: object) -> Condition:
        # Python list indexing, as the SDK: True is 1 and negative indexes count from the end.
        if not isinstance(index, int) or not -len(entries) <= index < len(entries):
            return UNKNOWN
        name, value, kind, match = entries[index]
        return attribute_condition(name, value, kind, match)

    return compile_tree(structure, leaf)


class ExperimentConditions:
    """Compiles the audienceConditions (or audienceIds) of one datafile's experiments, rules and
    holdouts against its audiences.

    Equal trees come back as one object: a decide_all remembers each tree's answer for the
    call (trackd.decision.flags), so rules that share a tree cost one evaluation per user.
    Audience ids resolve to the audience's own compiled conditions, shared already.
    """

    def __init__(self, audience_conditions: Mapping[str, Condition]) -> None:
        self.audience_conditions = audience_conditions
        self._shared: SharedNodes = {}

    def compile(self, conditions_or_ids: object) -> Condition | None:
        """The compiled tree; None when everyone qualifies. An id that names no audience is
        unknown, as in the SDK."""
        if conditions_or_ids is None or conditions_or_ids == []:
            return None
        audiences = self.audience_conditions

        def leaf(audience_id: object) -> Condition:
            if not isinstance(audience_id, str):
                return UNKNOWN
            return audiences.get(audience_id, UNKNOWN)

        tree = compile_tree(conditions_or_ids, leaf, self._shared)
        return None if tree is TRUE else tree


def qualifies(conditions: Condition | None, attributes: Mapping[str, object]) -> bool:
    """True only when the tree says True: unknown counts as not met."""
    return conditions is None or conditions.evaluate(attributes) is True
