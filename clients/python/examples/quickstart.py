"""The Optimizely documentation's snippet, against trackd.

TRACKD_ADDRESS=127.0.0.1:50051 python examples/quickstart.py
"""

import os

from trackd_client import Client, TrackdError

address = os.environ.get("TRACKD_ADDRESS", "127.0.0.1:50051")

with Client(address, timeout=2.0) as optimizely_client:
    experiment_key = "ab_running"
    event_key = "my_conversion"
    user_id = "user123"
    attributes = {"device": "iPhone", "ad_source": "my_campaign"}

    # Activate: which variation is user123 in? (None when in no variation)
    variation = optimizely_client.activate(experiment_key, user_id, attributes)
    print(f"{user_id} is in {variation!r} of {experiment_key}")

    # Track a conversion event for the provided user with attributes (and a revenue tag).
    try:
        attributed = optimizely_client.track(event_key, user_id, attributes, {"revenue": 4200})
    except TrackdError as error:  # e.g. NotFoundError for an event key not in the datafile
        raise SystemExit(f"track failed: {error}") from error
    for attribution in attributed:
        print(f"conversion counted for {attribution.experiment_key}/{attribution.variation_key}")
