"""However a datafile is damaged, parse_datafile answers with a config or a DatafileError."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trackd.datafile import parse_datafile
from trackd.errors import DatafileError

EXAMPLE = json.loads(files("trackd").joinpath("data/example_datafile.json").read_text())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += paths(child, (*prefix, index))
    return found


ALL_PATHS = paths(EXAMPLE)[1:]


def damaged(document: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    document = json.loads(json.dumps(document))
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return document


@pytest.mark.slow
@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(ALL_PATHS), json_values, st.booleans()), min_size=1, max_size=3
    )
)
def test_damaged_datafile_gives_a_config_or_a_datafile_error(
    edits: list[tuple[tuple[Any, ...], Any, bool]],
) -> None:
    document: Any = EXAMPLE
    for path, replacement, delete in edits:
        try:
            document = damaged(document, path, replacement, delete)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    try:
        parse_datafile(json.dumps(document))
    except DatafileError as error:
        assert str(error) and "\n" not in str(error)
