"""A datafile at a URL (Optimizely's CDN, or any HTTP server), polled with ETag /
If-None-Match so an unchanged datafile costs a 304 and no parsing."""

from __future__ import annotations

import asyncio

import httpx

from trackd import __version__
from trackd.sources.reloader import Reloader

FETCH_TIMEOUT = 10.0


class UrlSource:
    def __init__(
        self,
        url: str,
        interval: float,
        *,
        description: str | None = None,
        first_retry: float = 0.5,
    ) -> None:
        self.url = url
        self.interval = interval
        self.description = description or url
        self._first_retry = first_retry
        self.etag: str | None = None

    def initial(self) -> None:
        return None  # the first datafile arrives through `run`; health says NOT_SERVING until

    async def run(self, reloader: Reloader) -> None:
        retry = min(self._first_retry, self.interval)
        headers = {"User-Agent": f"trackd/{__version__}"}
        async with httpx.AsyncClient(
            timeout=FETCH_TIMEOUT, follow_redirects=True, headers=headers
        ) as client:
            while True:
                await self.poll(client, reloader)
                if reloader.loaded:
                    await asyncio.sleep(self.interval)
                else:  # nothing to serve yet: retry sooner, backing off to the interval
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, self.interval)

    async def poll(self, client: httpx.AsyncClient, reloader: Reloader) -> None:
        headers = {"If-None-Match": self.etag} if self.etag else {}
        try:
            response = await client.get(self.url, headers=headers)
        except httpx.HTTPError as error:
            reloader.failed("fetch", self.description, f"{type(error).__name__}: {error}")
            return
        if response.status_code == httpx.codes.NOT_MODIFIED:
            return
        if response.status_code != httpx.codes.OK:
            reloader.failed("fetch", self.description, f"HTTP {response.status_code}")
            return
        # Kept even when the body is rejected: the same bad datafile is then a 304, not a
        # new warning every poll.
        self.etag = response.headers.get("etag")
        await reloader.offer(response.content, self.description)
