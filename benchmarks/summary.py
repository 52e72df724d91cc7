"""Issue 24's table from the benches' latest records (benchmarks/results/latest/, see benchmarks/headline.py).

``python -m benchmarks.summary`` (the last step of ``make bench``): one Markdown row per row of the
issue's table, with the figure each bench last wrote, the target beside it, whether it was met,
when, on what load and by which command it was measured. A row no bench has recorded says so and
names the make target that measures it. ``--dir`` reads another folder of records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.headline import ROWS, folder, read


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(records: Path) -> str:
    lines = ["| row | target | measured | met | measured on | when (UTC), load | command |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, row in ROWS.items():
        path = records / f"{key}.json"
        if not path.exists():
            lines.append(f"| {row.title} | {row.target} | not measured | - | - | - | {_cell(row.make)} |")
            continue
        try:
            r = read(path)
        except ValueError as e:
            lines.append(f"| {row.title} | {row.target} | unreadable: {_cell(str(e))} | - | - | - | {_cell(row.make)} |")
            continue
        met = ("met" if r.met else "NOT met") + ("" if r.full_size else " (reduced size: not the row's figure)")
        when = (f"{r.date[:16].replace('T', ' ')}; load {r.load_before:.1f}-{r.load_after:.1f}, "
                f"others kept {r.others_busy:.1f} CPUs busy")
        lines.append(f"| {row.title} | {r.target} | {_cell(r.measured)} | {met} | {_cell(r.conditions)}; "
                     f"{_cell(r.machine)} | {when} | `{_cell(r.command)}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help=f"the records' folder (default {folder()})")
    args = parser.parse_args(argv)
    records = args.dir or folder()
    print(f"Issue 24's table, from the latest record of each row in {records}:\n")
    print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
