"""Where the datafile comes from: a watched file, a polled URL, or the bundled example.

A source only produces bytes and offers them to a `Reloader` (`trackd.sources.reloader`),
which decides whether they replace the live datafile.
"""

from __future__ import annotations

from importlib import resources
from typing import Protocol

from trackd.config import Settings
from trackd.datafile.model import ProjectConfig
from trackd.datafile.parse import parse_datafile
from trackd.errors import DatafileError
from trackd.sources.file import FileSource
from trackd.sources.reloader import Reloader
from trackd.sources.url import UrlSource


class DatafileSource(Protocol):
    """Produces datafile bytes: `initial` at start (None: wait for `run`), then changes."""

    description: str  # for logs; never holds a secret

    def initial(self) -> bytes | None: ...

    async def run(self, reloader: Reloader) -> None: ...


def bundled_datafile() -> bytes:
    return resources.files("trackd").joinpath("data/example_datafile.json").read_bytes()


def open_source(settings: Settings) -> DatafileSource | None:
    """The configured source; None serves the bundled example datafile, unwatched."""
    if settings.datafile is not None:
        return FileSource(settings.datafile)
    url = settings.resolved_datafile_url
    if url:
        shown = url.replace(settings.sdk_key, redact(settings.sdk_key)) if settings.sdk_key else url
        return UrlSource(url, settings.datafile_poll_interval, description=shown)
    return None


def redact(secret: str) -> str:
    """Enough of a key to tell two apart in a log, not enough to use it."""
    return secret[:4] + "..." if len(secret) > 8 else "..."


def initial_config(source: DatafileSource | None) -> tuple[ProjectConfig | None, bytes | None]:
    """Parses what the daemon starts with; raises DatafileError naming the source."""
    data = bundled_datafile() if source is None else source.initial()
    if data is None:
        return None, None
    try:
        return parse_datafile(data), data
    except DatafileError as error:
        where = "bundled example" if source is None else source.description
        raise DatafileError(f"{where}: {error}") from error


__all__ = ["DatafileSource", "Reloader", "initial_config", "open_source"]
