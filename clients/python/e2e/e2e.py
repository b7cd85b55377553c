"""The Python client's end-to-end program (docs/dev/clients-e2e.md): one JSON line on stdout."""

from __future__ import annotations

import json
import os
import sys

from trackd_client import Client, NotFoundError

LANGUAGE = "python"
PRODUCER_EVENTS = 10_000


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
