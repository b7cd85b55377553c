"""Bearer tokens and their scopes: who may call which TrackingService method.

Tokens are kept only as SHA-256 digests, so a lookup compares digests (no timing hint about
a real token) and no token can reach a log or a traceback from here.
"""

from __future__ import annotations

import enum
import hashlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trackd.config import SettingsError

SCOPES = ("decide", "track", "admin")

# The scope each TrackingService method needs; `admin` may call everything, and a method not
# listed here (a future one) needs `admin` until it is.
METHOD_SCOPES: Mapping[str, str] = {
    "Activate": "decide",
    "GetVariation": "decide",
    "GetForcedVariation": "decide",
    "GetConfig": "decide",
    "WatchConfig": "decide",
    "GetExperimentResults": "decide",
    "Decide": "decide",
    "GetForcedDecision": "decide",
    "Track": "track",
    "TrackStream": "track",
    "SetForcedVariation": "admin",
    # Forced decisions are forced variations for flags: the same scopes.
    "SetForcedDecision": "admin",
    "RemoveForcedDecision": "admin",
    "RemoveAllForcedDecisions": "admin",
}


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    MISSING = "missing"  # no `authorization: Bearer ...` metadata
    UNKNOWN = "unknown"  # a token that is not in the file
    OUT_OF_SCOPE = "out_of_scope"  # a known token without the method's scope


def scope_for(method: str) -> str:
    return METHOD_SCOPES.get(method, "admin")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens:
    def __init__(self, scopes: Mapping[str, frozenset[str]]) -> None:
        self._scopes = {_digest(token): granted for token, granted in scopes.items()}

    def __len__(self) -> int:
        return len(self._scopes)

    def check(self, authorization: str | None, scope: str) -> Verdict:
        if not authorization:
            return Verdict.MISSING
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            return Verdict.MISSING
        granted = self._scopes.get(_digest(token.strip()))
        if granted is None:
            return Verdict.UNKNOWN
        if scope in granted or "admin" in granted:
            return Verdict.ALLOWED
        return Verdict.OUT_OF_SCOPE

    @classmethod
    def load(cls, path: Path) -> Tokens:
        """Reads `{token = [scopes]}` from TOML or JSON (by extension; TOML otherwise), at the
        top level or under a `tokens` table. Mistakes are one line each, never quoting a token."""
        flag = f"--auth-tokens {path}"
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise SettingsError([f"{flag}: cannot read: {error.strerror}"]) from error
        try:
            table: Any = (
                json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw.decode())
            )
        except (ValueError, UnicodeDecodeError) as error:
            kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
            raise SettingsError([f"{flag}: not valid {kind}: {error}"]) from None
        if isinstance(table, dict) and isinstance(table.get("tokens"), dict):
            table = table["tokens"]
        if not isinstance(table, dict) or not table:
            raise SettingsError([f"{flag}: expected a mapping of token -> list of scopes"])
        scopes: dict[str, frozenset[str]] = {}
        problems: list[str] = []
        for number, (token, granted) in enumerate(table.items(), start=1):
            where = f"{flag}: token #{number}"
            if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
                problems.append(f"{where}: a token must be non-empty with no whitespace")
            elif not isinstance(granted, list) or not granted:
                problems.append(f"{where}: expected a non-empty list of scopes")
            elif unknown := sorted({str(s) for s in granted} - set(SCOPES)):
                problems.append(f"{where}: unknown scope {unknown[0]!r} (use {', '.join(SCOPES)})")
            else:
                scopes[token] = frozenset(granted)
        if problems:
            raise SettingsError(problems)
        return cls(scopes)
