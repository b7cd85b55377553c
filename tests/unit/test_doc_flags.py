"""The README and docs/ name only flags that `trackd serve` or `trackd health` has, and
`trackd serve --help` prints them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trackd import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Flags of other tools the README shows beside trackd's.
OTHER_TOOLS = {
    "--call": "ghz",
    "--proto": "grpcurl",
    "--quick": "bench",
    "--seconds": "bench",
    "--durable": "bench",
    "--loop": "bench",
    "--no-write": "bench",
}


def _trackd_flags() -> set[str]:
    (commands,) = (
        action.choices for action in cli.build_parser()._actions if isinstance(action.choices, dict)
    )
    return {
        flag
        for command in commands.values()
        for action in command._actions
        for flag in action.option_strings
    }


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_flag_a_doc_names_is_one_trackd_has(doc: Path) -> None:
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", doc.read_text()))
    assert named - _trackd_flags() - OTHER_TOOLS.keys() == set()


def test_serve_help_prints_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse %-formats each help text: a bare % in one crashed `trackd serve --help`."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--help"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    assert "--event-loop LOOP" in printed
    assert "10-15% less CPU" in printed
