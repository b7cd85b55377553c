"""The Python client's end-to-end program (docs/dev/clients-e2e.md): one JSON line on stdout."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from trackd_client import Client, DecideOption, NotFoundError, VariableTypeError

LANGUAGE = "python"
PRODUCER_EVENTS = 10_000


def decide_report(client: Client, run_id: str) -> dict[str, Any]:
    """The decide part of the report (docs/dev/clients-e2e.md)."""
    quiet = [DecideOption.DISABLE_DECISION_EVENT]
    decisions = {}
    quiet_recorded = False
    for n in range(50):
        d = client.decide(
            f"user-{n}", "e2e_checkout", {"device": "iPhone" if n % 3 else "Android"}, quiet
        )
        decisions[f"user-{n}"] = [d.enabled, d.variation_key, d.rule_key, d.rule_type]
        quiet_recorded = quiet_recorded or d.impression_recorded
    every = client.decide_all("user-1", {"device": "iPhone"}, quiet)

    forced_user = f"forced-{LANGUAGE}-{run_id}"
    client.set_forced_decision(forced_user, "e2e_checkout", "treatment")
    treatment = client.decide(forced_user, "e2e_checkout", {}, quiet)
    variables = {
        "show_banner": treatment.get_boolean("show_banner"),
        "max_items": treatment.get_integer("max_items"),
        "discount": treatment.get_double("discount"),
        "title": treatment.get_string("title"),
        "layout": treatment.get_json("layout"),
    }
    try:
        treatment.get_integer("title")
        type_error = False
    except VariableTypeError:
        type_error = True
    forced = [
        client.get_forced_decision(forced_user, "e2e_checkout"),
        client.remove_forced_decision(forced_user, "e2e_checkout"),
        client.remove_forced_decision(forced_user, "e2e_checkout"),
    ]
    client.set_forced_decision(forced_user, "e2e_checkout", "control")
    client.set_forced_decision(forced_user, "e2e_checkout", "control", rule_key="checkout_test")
    forced.append(client.remove_all_forced_decisions(forced_user))

    unknown = client.decide(forced_user, "no_such_flag")
    user = f"e2e-{LANGUAGE}-{run_id}-flag"
    recorded = client.decide(user, "e2e_checkout", {"device": "iPhone"}).impression_recorded
    attributions = client.track("checkout_conversion", user, {"device": "iPhone"})
    return {
        "decisions": decisions,
        "all": list(every),
        "variables": variables,
        "type_error": type_error,
        "unknown_flag_error": bool(unknown.error) and not unknown.enabled,
        "forced": forced,
        "attributed": [a.experiment_key for a in attributions],
        "impressions": [quiet_recorded, recorded],
    }


def main() -> int:
    address = os.environ["TRACKD_ADDRESS"]
    run_id = os.environ.get("E2E_RUN_ID", "local")
    with Client(address, timeout=10.0, wait_for_ready=True) as client:
        variations = {
            f"user-{n}": client.activate(
                "ab_iphone", f"user-{n}", {"device": "iPhone" if n % 3 else "Android"}
            )
            for n in range(200)
        }

        user = f"e2e-{LANGUAGE}-{run_id}"
        client.activate("ab_running", user, {})
        attributions = client.track(
            "my_conversion", user, {"device": "iPhone"}, {"revenue": 4200, "category": "shoes"}
        )
        attributed = [a.experiment_key for a in attributions]

        try:
            client.track("no_such_event", "u", {"device": "iPhone"})
            not_found = False
        except NotFoundError:
            not_found = True

        decide = decide_report(client, run_id)

    # The producer on its own connection: the driver may route it through a proxy that breaks
    # its stream after trackd stored batches whose acknowledgements it then loses.
    producer_address = os.environ.get("TRACKD_PRODUCER_ADDRESS", address)
    with (
        Client(producer_address, timeout=10.0, wait_for_ready=True) as producer_client,
        producer_client.producer(
            batch_size=500, flush_interval=0.2, backoff_initial=0.05
        ) as producer,
    ):
        for n in range(PRODUCER_EVENTS):
            producer.send("signup", f"p-{LANGUAGE}-{run_id}-{n}", {"device": "iPhone"})
    stats = producer.stats
    print(f"producer: {stats}", file=sys.stderr)

    report = {
        "language": LANGUAGE,
        "variations": variations,
        "attributed": attributed,
        "not_found": not_found,
        "decide": decide,
        "producer": {
            "sent": stats.sent,
            "acked": stats.acked,
            "batches": stats.batches,
            "duplicates": stats.duplicates,
            "stream_failures": stats.stream_failures,
        },
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
