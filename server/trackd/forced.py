"""Forced variations set at run time, as the Optimizely SDK's `set_forced_variation`.

Held in this process's memory like the SDK's, with no expiry; a forced variation beats the
activation cache and bucketing. Keyed by ids: the caller resolves experiment and variation
keys against the live datafile (and raises `UnknownExperiment` / `UnknownVariation`) first.
"""

from __future__ import annotations

from collections.abc import Callable

from trackd.errors import InvalidArgument, ResourceExhausted

DEFAULT_MAX_FORCED = 100_000


class ForcedVariations:
    """`(user_id, experiment_id) -> variation_id`, at most `max_entries` of them.

    Setting a new pair when full raises `ResourceExhausted` rather than silently evicting
    an override someone relies on; replacing or clearing an existing one always works.
    """

    def __init__(self, *, max_entries: int = DEFAULT_MAX_FORCED) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self._max_entries = max_entries
        self._by_experiment: dict[str, dict[str, str]] = {}  # experiment_id -> user -> var
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def set(self, user_id: str, experiment_id: str, variation_id: str | None) -> None:
        """Force `user_id` into `variation_id` of `experiment_id`; None clears, as the SDK.

        The user id may be any string, empty included (the SDK accepts it); the ids must
        be non-empty.
        """
        if variation_id is None:
            self.clear(user_id, experiment_id)
            return
        if not experiment_id:
            raise InvalidArgument("experiment id must not be empty")
        if not variation_id:
            raise InvalidArgument("variation id must not be empty")
        users = self._by_experiment.get(experiment_id)
        if users is not None and user_id in users:
            users[user_id] = variation_id
            return
        if self._size >= self._max_entries:
            raise ResourceExhausted(
                f"forced variations are full ({self._max_entries}); clear some first"
            )
        if users is None:
            users = self._by_experiment[experiment_id] = {}
        users[user_id] = variation_id
        self._size += 1

    def get(self, user_id: str, experiment_id: str) -> str | None:
        """The forced variation id, or None."""
        users = self._by_experiment.get(experiment_id)
        return None if users is None else users.get(user_id)

    def clear(self, user_id: str, experiment_id: str) -> bool:
        """Remove the forced variation; True if there was one."""
        users = self._by_experiment.get(experiment_id)
        if users is None or users.pop(user_id, None) is None:
            return False
        self._size -= 1
        if not users:
            del self._by_experiment[experiment_id]
        return True

    def retain(self, keep: Callable[[str, str], bool]) -> int:
        """Drop the forced variations whose `keep(experiment_id, variation_id)` is False (a new
        datafile removed the experiment or the variation); return how many.

        `keep` is asked once per distinct pair, not once per user.
        """
        dropped = 0
        for experiment_id, users in list(self._by_experiment.items()):
            verdicts: dict[str, bool] = {}
            gone: list[str] = []
            for user_id, variation_id in users.items():
                kept = verdicts.get(variation_id)
                if kept is None:
                    kept = verdicts[variation_id] = keep(experiment_id, variation_id)
                if not kept:
                    gone.append(user_id)
            if len(gone) == len(users):
                del self._by_experiment[experiment_id]
            else:
                for user_id in gone:
                    del users[user_id]
            dropped += len(gone)
        self._size -= dropped
        return dropped
