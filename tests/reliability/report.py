"""Renders build/reliability/figures.json into the table of docs/reliability.md.

.venv/bin/pytest tests/reliability && .venv/bin/python -m tests.reliability.report
"""

from __future__ import annotations

import json

from tests.reliability.support import FIGURES, ROOT

DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def table(figures: dict[str, dict[str, object]]) -> str:
    rows = ["| scenario | measured at | figures |", "|---|---|---|"]
    for scenario, values in sorted(figures.items()):
        when = values.get("measured_at", "")
        cells = "; ".join(
            f"{key}: {json.dumps(value, sort_keys=True).replace('|', '/')}"
            for key, value in values.items()
            if key != "measured_at"
        )
        rows.append(f"| {scenario} | {when} | {cells} |")
    return "\n".join(rows)


def main() -> None:
    figures = json.loads(FIGURES.read_text())
    text = DOC.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{table(figures)}\n{END}{tail}")


if __name__ == "__main__":
    main()
