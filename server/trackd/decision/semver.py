"""Semantic-version comparison, ported rule for rule from the Python SDK (helpers/condition.py).

The SDK's rules are looser than semver.org (no leading-zero check, a pre-release is compared as
one string, "1.2" equals "1.2.9" when it is the target); parity matters more than the standard.
"""

from __future__ import annotations

PRE_RELEASE = "-"
BUILD = "+"


def is_pre_release(version: str) -> bool:
    """A "-" that comes before any "+": "1.0.0-beta" is, "1.0.0+build-7" is not."""
    return _comes_first(version, PRE_RELEASE, BUILD)


def is_build(version: str) -> bool:
    """A "+" that comes before any "-"."""
    return _comes_first(version, BUILD, PRE_RELEASE)


def _comes_first(version: str, mark: str, other: str) -> bool:
    """`mark` is in `version`, before any `other`."""
    if mark not in version:
        return False
    mark_index = version.find(mark)
    other_index = version.find(other)
    return mark_index < other_index or other_index < 0


def split_version(version: str) -> list[str] | None:
    """Numeric parts of the prefix, then the whole suffix as one part; None when invalid."""
    if " " in version:
        return None
    prefix = version
    suffix: list[str] = []
    if is_pre_release(version):
        prefix, *suffix = version.split(PRE_RELEASE, 1)
    elif is_build(version):
        prefix, *suffix = version.split(BUILD, 1)
    if prefix.count(".") > 2:
        return None
    parts = prefix.split(".")
    # str.isdigit, as the SDK: it also accepts non-ASCII digits.
    if not all(part.isdigit() for part in parts):
        return None
    return parts + suffix


class Target:
    """A condition's target version, split once at load; `parts` is None when it is invalid."""

    __slots__ = ("is_build", "is_pre_release", "parts")

    def __init__(self, version: str) -> None:
        self.is_pre_release = is_pre_release(version)
        self.is_build = is_build(version)
        self.parts = split_version(version)


def compare(target: Target, user_version: str) -> int | None:
    """-1, 0 or 1 as the user version is below, equal to or above the target; None if invalid.

    Where the SDK would raise (int() of a part that isdigit() accepts but int() does not, or of
    a pre-release target part compared with a numeric user part) this returns None: unknown.
    """
    target_parts = target.parts
    if target_parts is None:
        return None
    user_parts = split_version(user_version)
    if user_parts is None:
        return None
    user_is_pre_release = is_pre_release(user_version)
    for index, target_part in enumerate(target_parts):
        if len(user_parts) <= index:
            return 1 if target.is_pre_release or target.is_build else -1
        user_part = user_parts[index]
        if not user_part.isdigit():
            if user_part < target_part:
                return 1 if target.is_pre_release and not user_is_pre_release else -1
            if user_part > target_part:
                return -1 if not target.is_pre_release and user_is_pre_release else 1
        else:
            try:
                user_number, target_number = int(user_part), int(target_part)
            except ValueError:
                return None
            if user_number > target_number:
                return 1
            if user_number < target_number:
                return -1
    if user_is_pre_release and not target.is_pre_release:
        return -1
    return 0
