"""Event tags, validated the way optimizely-sdk reads them (helpers/event_tag_utils.py).

Every tag is passed through. `revenue` counts only when it is an integer (bools are not);
`value` counts when it converts to a finite float (a numeric string such as "3.5" does, as
in the SDK). A whole double within 2**53 is an integer, so 4200.0 is revenue 4200; a double
beyond 2**53 stays a float and, as in the SDK, is then no revenue. NaN and infinity are
rejected outright: they cannot be sent as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final, NamedTuple

from trackd.errors import InvalidTag

TagValue = str | bool | int | float | None

REVENUE: Final = "revenue"
VALUE: Final = "value"
_EXACT_INT_LIMIT: Final = 2.0**53


class ParsedTags(NamedTuple):
    tags: Mapping[str, TagValue]
    revenue: int | None
    value: float | None


NO_TAGS: Final = ParsedTags({}, None, None)


def _revenue(raw: TagValue) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    return None


def _value(raw: TagValue) -> float | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def parse_tags(tags: Mapping[str, TagValue] | None) -> ParsedTags:
    """Raises InvalidTag for NaN, infinity or a value that is not a plain scalar.

    The mapping is kept as given (not copied) unless a whole float must become an int:
    the caller hands over a fresh mapping per event, and copying every one would cost a
    dict per event on the TrackStream path.
    """
    if not tags:
        return NO_TAGS
    copied: dict[str, TagValue] | None = None
    for key, raw in tags.items():
        kind = type(raw)
        if kind is str or kind is int:  # the common cases, valid as they are
            continue
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise InvalidTag(f"tag {key!r}: NaN and infinity are not allowed")
            if raw.is_integer() and -_EXACT_INT_LIMIT <= raw <= _EXACT_INT_LIMIT:
                if copied is None:
                    copied = dict(tags)
                copied[key] = int(raw)
        elif not (raw is None or isinstance(raw, str | int)):
            raise InvalidTag(f"tag {key!r}: only strings, numbers, booleans and null are allowed")
    clean = tags if copied is None else copied
    return ParsedTags(clean, _revenue(clean.get(REVENUE)), _value(clean.get(VALUE)))


__all__ = ["NO_TAGS", "ParsedTags", "TagValue", "parse_tags"]
