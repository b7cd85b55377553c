"""The uuids trackd sends look like the SDKs' (uuid4): Track's, TrackStream's and
Activate's, as delivered to a real local receiver."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from tests.integration.test_decisions_api import DATAFILE
from tests.support.daemon import client_for, settings_for
from tests.support.receiver import Receiver
from trackd.v1 import tracking_service_pb2 as pb


def _is_uuid4(text: str) -> bool:
    parsed = uuid.UUID(text)
    return str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


async def test_track_and_track_stream_uuids_are_distinct_random_version_4_uuids(
    tmp_path: Path,
) -> None:
    async with Receiver() as receiver:
        settings = settings_for(tmp_path, datafile=DATAFILE, event_endpoint=receiver.url)
        async with client_for(settings) as client:
            track_uuids = [
                (await client.stub.Track(pb.TrackRequest(event_key="signup", user_id=f"t{n}"))).uuid
                for n in range(20)
            ]

            async def batches() -> AsyncIterator[pb.TrackStreamRequest]:
                for sequence in range(3):
                    yield pb.TrackStreamRequest(
                        sequence=sequence,
                        events=[
                            pb.TrackRequest(event_key="signup", user_id=f"s{sequence}-{i}")
                            for i in range(30)
                        ],
                    )

            acks = [ack async for ack in client.stub.TrackStream(batches())]
            assert sum(ack.accepted for ack in acks) == 90
            await receiver.wait_for_events(110)
    delivered = receiver.event_uuids
    assert set(track_uuids) <= set(delivered)
    assert len(set(delivered)) == len(delivered) == 110
    assert all(_is_uuid4(u) for u in delivered)
    # Random throughout, as uuid4 is: no digits shared by every Track (they all ended in
    # 00000000), and no prefix shared by a stream batch's events.
    assert len({u[-8:] for u in track_uuids}) == len(track_uuids)
    assert len({u[:28] for u in delivered}) == len(delivered)
