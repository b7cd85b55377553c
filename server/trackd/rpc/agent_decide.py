"""Agent's `/v1/decide` answer (OptimizelyDecisions as JSON) printed from the bytes
`trackd.rpc.decisions.DecideEncoder` joined, without parsing them back into a DecideResponse.

Parsing the response and walking each FlagDecision into a dict for `json.dumps` cost ~720 us
of a 50-flag call, more than twice the decision itself. Most frames of a response are the
very ones the encoder keeps for a datafile's shared decisions, so, as
`trackd.rpc.decide_json.DecideJson` does for Connect JSON, each frame's text is made once and
kept, keyed by its bytes: everything of an OptimizelyDecision but its `userContext`, which is
the call's, printed between the two halves. What a frame's text says depends on the served
datafile as well (its "Everyone Else" rule, an error's wording), so the kept texts are
dropped when the datafile changes. A frame with reasons is the call's alone: printed each
time, not kept. The text is what `json.dumps` printed of the decisions as dicts (Agent's API
before), byte for byte: strings by its own quoting, variables by `json.dumps` of their dict.
Measured in-process for 50 flags: ~55 us against ~610 us; with INCLUDE_REASONS ~1,250 us
either way, most of it the rewording (trackd.agent_reasons).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _quoted  # json.dumps' own, for a str
from typing import Any, Final

from trackd.agent_reasons import worded_as_go
from trackd.datafile.model import ProjectConfig
from trackd.kept import kept
from trackd.rpc import values
from trackd.rpc.decide_json import response_parts, struct_text
from trackd.rpc.decisions import CACHE_LIMIT
from trackd.v1 import tracking_service_pb2 as pb

DEFAULT_ROLLOUT_PREFIX: Final = "default-"  # the key (and id) of a flag's "Everyone Else" rule
_BOOL: Final = {False: "false", True: "true"}


class AgentDecideJson:
    """Serialized DecideResponses as Agent's `/v1/decide` JSON, each frame's text kept."""

    def __init__(self) -> None:
        # A decision with reasons is this call's alone, but its variables are its variation's.
        self._variables = values.KeptStructs(struct_text, CACHE_LIMIT)
        self._config: ProjectConfig | None = None  # the datafile the kept texts speak of
        # frame -> its OptimizelyDecision's text before and after the userContext's
        self._halves: dict[bytes, tuple[str, str]] = {}

    def text(self, data: bytes, config: ProjectConfig, user_context: Any, *, one: bool) -> bytes:
        """The decisions of `data` as a JSON list, or the first alone when `one` (Agent's
        answer to a single key) and there is one, each with `user_context`; `config` is the
        datafile served."""
        if config is not self._config:
            self._halves.clear()
            self._config = config
        parts = response_parts(data)
        if parts is None:  # not what DecideEncoder writes: a parse reads anything
            frames = [d.SerializeToString() for d in pb.DecideResponse.FromString(data).decisions]
        else:
            frames = parts[0]
        context = json.dumps(user_context)
        texts = []
        for frame in frames:
            head, tail = self._halves_of(frame, config)
            texts.append(head + context + tail)
        if one and texts:
            return texts[0].encode()
        return ("[" + ", ".join(texts) + "]").encode()

    def _halves_of(self, frame: bytes, config: ProjectConfig) -> tuple[str, str]:
        halves = self._halves.get(frame)
        if halves is not None:
            return halves
        flag = pb.FlagDecision.FromString(frame)
        # Agent's members in its order, every one even when empty, as its Go struct prints.
        head = (
            f'{{"variationKey": {_quoted(flag.variation_key)}, "enabled": {_BOOL[flag.enabled]}, '
            f'"ruleKey": {_quoted(flag.rule_key)}, "flagKey": {_quoted(flag.flag_key)}, '
            '"userContext": '
        )
        reasons = ", ".join(map(_quoted, worded_reasons(flag, config)))
        everyone_else = _BOOL[is_everyone_else(flag, config)]
        tail = f', "reasons": [{reasons}], "isEveryoneElseVariation": {everyone_else}'
        if flag.variables.fields:
            tail += ', "variables": ' + self._variables(flag.variables)
        halves = head, tail + "}"
        if flag.reasons:  # one with reasons is this call's alone: not worth keeping
            return halves
        return kept(self._halves, frame, halves, CACHE_LIMIT)


def worded_reasons(flag: pb.FlagDecision, config: ProjectConfig) -> list[str]:
    """Worded as Agent's Go SDK words them (trackd.agent_reasons). An error decision's
    are its error alone, as the Go SDK's (NewErrorDecision, handleDecisionServiceError)."""
    reasons = [flag.error] if flag.error else flag.reasons
    return worded_as_go(reasons, config, flag.flag_key)


def is_everyone_else(flag: pb.FlagDecision, config: ProjectConfig) -> bool:
    """Whether the rule is the flag's "Everyone Else" delivery rule, as Agent tells it:
    a rollout rule whose key is its id and starts with `default-`."""
    if flag.rule_type != pb.RULE_TYPE_ROLLOUT:
        return False
    found = config.flags_by_key.get(flag.flag_key)
    rules = found.rollout.rules if found is not None and found.rollout is not None else ()
    return any(
        rule.key == flag.rule_key == rule.id and rule.key.startswith(DEFAULT_ROLLOUT_PREFIX)
        for rule in rules
    )
