"""`Running`, the started daemon that tests look into."""

from __future__ import annotations

import typing

from trackd import server


def test_running_parts_are_none_only_where_a_setting_turns_them_off() -> None:
    """`Running` promises its parts: only those of a port that is off are absent (the
    metrics ones with --metrics-listen off, the HTTP ones with --http-listen off), so no
    caller checks the others for None."""
    hints = typing.get_type_hints(server.Running)
    optional = {name for name, hint in hints.items() if type(None) in typing.get_args(hint)}
    assert optional == {"metrics_port", "registry", "metrics_server", "http_server"}
