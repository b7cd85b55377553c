"""What the host-local stores (activations, overrides) share about their LMDB files: how a
user's keys begin, and how a file is opened."""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from pathlib import Path
from typing import Any, Final

import lmdb

USER_BYTES: Final = 16


def user_key(user_id: str) -> bytes:
    """The start of every key of the user's: a fixed-size digest, so that a user's keys sort
    together whatever the user id holds."""
    return blake2b(user_id.encode(), digest_size=USER_BYTES).digest()


def open_env(
    path: Path, store: str, holds: str, names: Sequence[bytes], **options: Any
) -> tuple[lmdb.Environment, list[Any]]:
    """The environment at `path` (a directory, created if missing) and its named databases.
    A file that cannot be opened is an OSError: the daemon's start-up failure (one line, exit
    code 2), as a port that is taken. A damaged file is the one case where deleting it is the
    cure, and the message says so."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        env = lmdb.open(str(path), max_dbs=len(names), **options)
        # Reader slots left by a process killed mid-read pin old pages until cleared.
        env.reader_check()
        return env, [env.open_db(name) for name in names]
    except lmdb.Error as error:
        raise OSError(
            f"cannot open the {store} {path}: {error} (if it is damaged, delete the directory"
            f" while trackd is stopped: it holds only {holds})"
        ) from error
