"""Decision reasons worded as Optimizely Agent words them, for its REST API (`/v1/decide`).

Agent decides with the Optimizely Go SDK (github.com/optimizely/go-sdk/v2 v2.3.1, the version
Agent's go.mod pins), whose reasons are not optimizely-sdk's (Python), which
trackd.decision.flags writes and gRPC's Decide keeps. Each row of REWORDINGS reads one of
trackd's reasons back by its wording and gives what the Go SDK says at the same step: one
reason, or several where the Go SDK says more (it reports an audience check before bucketing,
for instance). A reason of a step the Go SDK takes silently, or does not take, stays as
trackd words it; docs/operations.md lists them.

Where the Go SDK says something trackd never does (a holdout the user is not in, an audience
condition it cannot evaluate) nothing is added: only what trackd decided is reworded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from trackd.datafile.model import ProjectConfig

EVERYONE_ELSE: Final = "Everyone Else"  # the name both SDKs give a rollout's last rule
# What a placeholder may match: any text, shortest first, but a rule's number is digits.
_PLACEHOLDER_PATTERNS: Final = {"rule": r"\d+"}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Rewording:
    """trackd's wording of a reason and the Go SDK's for the same step, each with `{name}`
    placeholders for the keys and ids in it. In `go`, `{rule_key}` is the key of the rollout
    rule that trackd's `{rule}` (its 1-based number) names, which the Go SDK prints."""

    trackd: str
    go: tuple[str, ...]

    def literal(self) -> str:
        """The longest text between placeholders: a reason without it cannot match."""
        return max(_PLACEHOLDER.split(self.trackd)[::2], key=len)

    def pattern(self) -> re.Pattern[str]:
        parts = []
        position = 0
        for placeholder in _PLACEHOLDER.finditer(self.trackd):
            parts.append(re.escape(self.trackd[position : placeholder.start()]))
            name = placeholder.group(1)
            parts.append(f"(?P<{name}>{_PLACEHOLDER_PATTERNS.get(name, '.*?')})")
            position = placeholder.end()
        parts.append(re.escape(self.trackd[position:]))
        return re.compile("".join(parts), re.DOTALL)


def _in_experiment(reason: str, *go: str) -> Rewording:
    trackd = 'User "{user}" is in variation "{variation}" of experiment {experiment}'
    return Rewording(f"{trackd} ({reason}).", go)


def _not_in_experiment(reason: str, *go: str) -> Rewording:
    trackd = 'User "{user}" is in no variation of experiment "{experiment}"'
    return Rewording(f"{trackd} ({reason}).", go)


def _same(wording: str) -> Rewording:
    return Rewording(wording, (wording,))


_AUDIENCES_MATCH = "Audiences for experiment {experiment} collectively evaluated to true."

# Source lines are go-sdk v2.3.1's (pkg/...); tests/unit/test_agent_reasons.py checks each.
REWORDINGS: Final[tuple[Rewording, ...]] = (
    # Worded alike by both SDKs: decide/decide_errors.go:30, cmab/errors.go:26 (trackd adds
    # why it never reaches CMAB), decision/forced_decision_service.go:120 and 123.
    _same('No flag was found for key "{flag}".'),
    Rewording(
        "Failed to fetch CMAB data for experiment {experiment}. ({why})",
        ("Failed to fetch CMAB data for experiment {experiment}.",),
    ),
    _same(
        "Variation ({variation}) is mapped to {target} and user ({user}) "
        "in the forced decision map."
    ),
    _same("Invalid variation is mapped to {target} and user ({user}) in the forced decision map."),
    # A feature test: decision/evaluator/audience_evaluator.go:46 and 52 (the audience check
    # before bucketing, which itself says nothing), experiment_override_service.go:113 (a
    # forced variation), experiment_whitelist_service.go:56, persisting_experiment_service.go:106
    # (the user profile, trackd's activation cache), experiment_bucketer_service.go:64.
    _in_experiment("bucketed", _AUDIENCES_MATCH),
    _in_experiment("forced", "Override variation {variation} found for user {user}"),
    _in_experiment(
        "whitelisted",
        'User "{user}" is whitelisted into variation "{variation}" of experiment "{experiment}".',
    ),
    _in_experiment(
        "sticky",
        'User "{user}" was previously bucketed into variation "{variation}" of experiment '
        '"{experiment}".',
    ),
    _not_in_experiment(
        "audience_mismatch",
        "Audiences for experiment {experiment} collectively evaluated to false.",
        'User "{user}" does not meet conditions to be in experiment "{experiment}".',
    ),
    _not_in_experiment("outside_traffic", _AUDIENCES_MATCH),
    _not_in_experiment("not_in_group_slot", _AUDIENCES_MATCH),
    # A rollout's rules: decision/rollout_service.go:116 and 149 (logging/log_messages.go:45
    # and 47), and the bucketing step's audience check, audience_evaluator.go:46 and 52.
    Rewording(
        'User "{user}" does not meet audience conditions for targeting rule {rule}.',
        ('User "{user}" does not meet conditions for targeting rule {rule}.',),
    ),
    Rewording(
        'User "{user}" bucketed into a targeting rule {rule}.',
        ("Audiences for experiment {rule_key} collectively evaluated to true.",),
    ),
    Rewording(
        'User "{user}" not bucketed into a targeting rule {rule}. '
        'Checking "Everyone Else" rule now.',
        ("Audiences for experiment {rule_key} collectively evaluated to true.",),
    ),
    Rewording(
        f'User "{{user}}" bucketed into a targeting rule {EVERYONE_ELSE}.',
        (
            "Audiences for experiment {rule_key} collectively evaluated to true.",
            f'User "{{user}}" meets conditions for targeting rule "{EVERYONE_ELSE}".',
        ),
    ),
    # A holdout the user is in: decision/holdout_service.go:140 and 146, 76, 105.
    Rewording(
        "The user '{user}' is bucketed into variation '{variation}' of holdout '{holdout}'.",
        (
            "Audiences for holdout {holdout} collectively evaluated to true.",
            "User {user} meets conditions for holdout {holdout}.",
            "User {user} is in variation {variation} of holdout {holdout}.",
        ),
    ),
)
# Each row's longest literal is looked for before its pattern is tried: 5.6-8.7 us a reason
# where trying every pattern took 17-21 (the Everyone Else fall-through's reasons, measured
# side by side on the loaded 2-core development machine; one alternation of every row with
# named groups took 35).
_COMPILED: Final = tuple(
    (
        rewording.literal(),
        rewording.pattern(),
        rewording.go,
        any("{rule_key}" in go for go in rewording.go),
    )
    for rewording in REWORDINGS
)


def worded_as_go(reasons: Iterable[str], config: ProjectConfig, flag_key: str) -> list[str]:
    """The reasons of one flag's decision as the Go SDK words them (see REWORDINGS)."""
    worded: list[str] = []
    for reason in reasons:
        worded.extend(_reworded(reason, config, flag_key))
    return worded


def _reworded(reason: str, config: ProjectConfig, flag_key: str) -> Sequence[str]:
    for literal, pattern, go, names_rule_key in _COMPILED:
        if literal not in reason:
            continue
        found = pattern.fullmatch(reason)
        if found is None:
            continue
        values = found.groupdict()
        if names_rule_key:
            rule = values.get("rule", EVERYONE_ELSE)
            values["rule_key"] = _rollout_rule_key(config, flag_key, rule)
        return [template.format_map(values) for template in go]
    return (reason,)


def _rollout_rule_key(config: ProjectConfig, flag_key: str, rule: str) -> str:
    """The key of the rollout rule trackd names by its number, or "Everyone Else" (its last)."""
    flag = config.flags_by_key.get(flag_key)
    rules = flag.rollout.rules if flag is not None and flag.rollout is not None else ()
    index = len(rules) if rule == EVERYONE_ELSE else int(rule)
    return rules[index - 1].key if 0 < index <= len(rules) else rule
