"""trackd.notifications.Notifier: what a listener gets, and what a slow one loses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trackd.datafile import parse_datafile
from trackd.decision.engine import decide
from trackd.decision.flags import DecideOption, decide_for_keys
from trackd.notifications import CONFIG_UPDATE, DECISION, TRACK, Notifier

EXAMPLE = Path(__file__).resolve().parents[2] / "server/trackd/data/example_datafile.json"
CONFIG = parse_datafile(EXAMPLE.read_bytes())
EXPERIMENT = CONFIG.experiments_by_key["checkout_flow"]


def decided(notifier: Notifier, user_id: str) -> None:
    decision = decide(CONFIG, EXPERIMENT, user_id, {})
    notifier.experiment_decided(CONFIG, decision, user_id, {})


async def test_a_slow_listener_loses_what_does_not_fit_and_it_is_counted() -> None:
    notifier = Notifier(queue_limit=2)
    slow = notifier.subscribe()
    for user_id in ("a", "b", "c", "d"):
        decided(notifier, user_id)
    waiting = await slow.next()
    assert [json.loads(n.data)["UserContext"]["ID"] for n in waiting] == ["a", "b"]
    assert (slow.dropped, notifier.dropped) == (2, 2)
    decided(notifier, "e")  # room again
    assert [json.loads(n.data)["UserContext"]["ID"] for n in await slow.next()] == ["e"]


async def test_a_listener_gets_only_the_types_it_asked_for() -> None:
    notifier = Notifier()
    tracks = notifier.subscribe([TRACK])
    everything = notifier.subscribe()
    decided(notifier, "a")
    notifier.config_updated(CONFIG)
    assert [n.type for n in await everything.next()] == [DECISION, CONFIG_UPDATE]
    assert tracks.dropped == 0 and notifier.dropped == 0
    assert tracks._queue.empty()


async def test_a_new_datafile_is_notified_once_and_a_closed_listener_gets_nothing() -> None:
    notifier = Notifier()
    listener = notifier.subscribe()
    notifier.config_updated(CONFIG)
    notifier.config_updated(CONFIG)  # offered again while the shared store was down
    [update] = await listener.next()
    assert json.loads(update.data) == {"Type": CONFIG_UPDATE, "Revision": CONFIG.revision}
    listener.close()
    assert not notifier.listened
    decided(notifier, "a")
    assert listener._queue.empty()


async def test_flag_notifications_say_whether_this_call_sent_the_decision_event() -> None:
    """A shared decision's DecisionInfo is written once for each answer, and one decided with
    reasons carries them; an unknown flag's error is not notified, as the SDK."""
    notifier = Notifier()
    listener = notifier.subscribe()
    [plain] = decide_for_keys(CONFIG, ["checkout_redesign"], "u", {"device": "iPhone"})
    [reasoned, unknown] = decide_for_keys(
        CONFIG, ["checkout_redesign", "nope"], "u", {}, [DecideOption.INCLUDE_REASONS]
    )
    assert unknown.error is not None
    notifier.flags_decided("u", {"device": "iPhone"}, [(plain, True)])
    notifier.flags_decided("u", {}, [(plain, False), (reasoned, False), (unknown, False)])
    sent = [json.loads(n.data) for n in await listener.next()]
    assert [n["DecisionInfo"]["decisionEventDispatched"] for n in sent] == [True, False, False]
    assert sent[0]["UserContext"] == {
        "ID": "u",
        "Attributes": {"device": "iPhone"},
        "QualifiedSegments": None,
    }
    assert sent[0]["DecisionInfo"]["reasons"] == []
    assert sent[2]["DecisionInfo"]["reasons"] == list(reasoned.reasons) != []
    assert sent[1]["DecisionInfo"]["flagKey"] == plain.flag_key


def test_nothing_is_built_while_nobody_listens() -> None:
    """Each hook returns before it reads its arguments: these would raise if it read them."""
    notifier = Notifier()
    nothing: Any = None
    notifier.experiment_decided(nothing, nothing, "u", {})
    notifier.flags_decided("u", {}, nothing)
    notifier.tracked(nothing, "u", {}, {}, nothing)
    notifier.tracked_batch(nothing, nothing, nothing)
