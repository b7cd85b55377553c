"""Optimizely's Event API hosts, chosen by the datafile's region as the SDKs choose them."""

from __future__ import annotations

from typing import Final

# `--event-endpoint optimizely`: the Event API host of the loaded datafile's region.
OPTIMIZELY: Final = "optimizely"

EVENT_API_URLS: Final = {
    "US": "https://logx.optimizely.com/v1/events",
    "EU": "https://eu.logx.optimizely.com/v1/events",
}


def event_api_url(region: str) -> str:
    """The Event API URL for a datafile's `region`; an unknown region gets the US host, as
    in optimizely-sdk's EventFactory."""
    return EVENT_API_URLS.get(region.upper(), EVENT_API_URLS["US"])


__all__ = ["EVENT_API_URLS", "OPTIMIZELY", "event_api_url"]
