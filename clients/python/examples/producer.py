"""A high-volume producer: batches of events over one TrackStream, each acknowledged.

TRACKD_ADDRESS=127.0.0.1:50051 python examples/producer.py
"""

import os

from trackd_client import Client

with Client(os.environ.get("TRACKD_ADDRESS", "127.0.0.1:50051")) as client:
    with client.producer(batch_size=500, flush_interval=0.5) as producer:
        for n in range(5_000):
            producer.send("signup", f"user-{n}", {"device": "iPhone"})
    # Leaving the block flushed the buffer and waited for every acknowledgement.
    print(producer.stats)
