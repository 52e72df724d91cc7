"""Integer codes of a log's entity texts (key, machine code, address, country), computed once
per frame and shared by the steps that count on them: the windows' summary
(:mod:`licanom.data.chunk`), the context vector (:mod:`licanom.data.context_vector`) and the rows
encoder (:mod:`licanom.data.encode`). Grouping and counting then run on integers, and each text
is hashed once per row instead of once per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import polars as pl

__all__ = ["ENTITY_TEXTS", "TextCodes", "first_appearance", "first_rows", "in_threads", "text_ids"]

ENTITY_TEXTS: tuple[str, ...] = ("Key", "MachineCode", "IP", "country")

T = TypeVar("T")


def in_threads(tasks: Iterable[Callable[[], T]], threads: int = 2) -> list[T]:
    """The results of ``tasks``, run on ``threads`` threads (polars' casts, pandas' hash tables
    and numpy's gathers work outside the GIL, so two cores share the work)."""
    tasks = list(tasks)
    if len(tasks) < 2 or threads < 2:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=min(threads, len(tasks))) as pool:
        return list(pool.map(lambda task: task(), tasks))


def text_ids(text: pl.Series) -> pl.Series:
    """Each text's id in categories of the column's own (UInt32; null for null): one hash per
    row, and nothing left behind in polars' global categories, which a long-running worker would
    fill with every vendor's keys and addresses."""
    return text.cast(pl.Categorical(pl.Categories.random())).to_physical()


def first_rows(ids: np.ndarray, block: int = 1 << 15) -> np.ndarray:
    """Bool per row: the first row of its group, for ids that count up in the order they appear
    (a row is first where its id exceeds every id before it), ``block`` rows at a time."""
    ids = np.asarray(ids, dtype=np.int64)  # no copy for int64 ids; unsigned ones compare with -1
    first = np.zeros(len(ids), dtype=bool)
    top = -1
    for lo in range(0, len(ids), block):
        part = ids[lo : lo + block]
        before = np.maximum.accumulate(part)
        first[lo] = part[0] > top
        np.greater(part[1:], np.maximum(before[:-1], top), out=first[lo + 1 : lo + len(part)])
        top = max(top, int(before[-1]))
    return first


def first_appearance(codes: pl.Series, first: pl.Series | None = None) -> tuple[pl.Series, pl.Series]:
    """For integer codes (equal codes for equal values, and only then): the row where each
    value first appears, in row order, and each row's position among the values so ordered
    (the values' order of first appearance).

    One integer hash per row (``arg_unique``; none where ``first``, those rows, is known);
    where the codes already count up in the order they appear (polars hands out a frame's
    own categories so) they are the positions."""
    if first is None:
        first = codes.arg_unique()
    if not first.is_sorted():  # polars lists first occurrences in row order; made sure
        first = first.sort()
    seen = codes.gather(first).to_numpy()
    if np.array_equal(seen, np.arange(len(seen))):
        return first, codes
    remap = np.zeros(int(seen.max()) + 1, dtype=np.uint32)
    remap[seen] = np.arange(len(seen), dtype=np.uint32)
    return first, pl.Series(codes.name, remap[codes.to_numpy()])


@dataclass(frozen=True)
class TextCodes:
    """Per text column of one frame, each row's code (numpy ``uint32``): equal codes for equal
    texts and only then, a null read as an empty text. Build it with :meth:`of`.

    The codes are ids in categories of the frame's own (one hash per row; polars' global
    categories would keep every text a long-running worker ever saw)."""

    height: int
    codes: dict[str, np.ndarray]
    _values: dict[str, pl.DataFrame] = field(default_factory=dict, compare=False, repr=False)
    # where known, per column the row where each code first appears (row order): arg_unique's
    first: dict[str, pl.Series] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, frame: pl.DataFrame, columns: Sequence[str] = ENTITY_TEXTS, threads: int = 2) -> TextCodes:
        """The codes of ``columns`` of ``frame`` (two columns at a time on ``threads`` 2)."""
        def one(column: str) -> Callable[[], np.ndarray]:
            def run() -> np.ndarray:
                text = frame[column].cast(pl.String).fill_null("")
                return text_ids(text).to_numpy()
            return run

        found = in_threads([one(c) for c in columns], threads)
        return cls(height=frame.height, codes=dict(zip(columns, found, strict=True)))

    @classmethod
    def in_order(cls, height: int, codes: dict[str, np.ndarray], first: dict[str, pl.Series] | None = None) -> TextCodes:
        """Codes computed elsewhere, renumbered in order of first appearance (0, 1, ... as the
        values first appear: the codes :meth:`of` gives), one integer hash per row (none for
        a column whose codes' first rows ``first`` holds)."""
        first = first or {}
        return cls.from_codes(height, {c: first_appearance(pl.Series(x), first.get(c))[1].to_numpy()
                                       for c, x in codes.items()})

    @classmethod
    def from_codes(cls, height: int, codes: dict[str, np.ndarray], first: dict[str, pl.Series] | None = None) -> TextCodes:
        """Codes computed elsewhere (equal codes for equal texts and only then, null as empty);
        ``first``: per column the rows where its codes first appear, where known."""
        if any(len(c) != height for c in codes.values()):
            raise ValueError(f"codes of {sorted(codes)} do not all have {height} rows")
        return cls(height=height, codes=codes, first={c: f for c, f in (first or {}).items() if c in codes})

    def get(self, frame: pl.DataFrame, column: str) -> np.ndarray | None:
        """The codes of ``column`` when held for a frame of ``frame``'s height, else None."""
        codes = self.codes.get(column)
        return codes if codes is not None and frame.height == self.height else None

    def values(self, frame: pl.DataFrame, column: str) -> pl.DataFrame:
        """``text`` (String) and ``code`` (Int64) of each distinct text of ``column`` in ``frame``
        (the frame the codes were computed on), read at each code's first row."""
        if column not in self._values:
            codes = pl.Series(self.codes[column])
            first = codes.arg_unique().to_numpy()  # each code's first row (one integer hash)
            present = codes.gather(first).to_numpy().astype(np.int64)
            order = np.argsort(present, kind="stable")
            text = frame[column].cast(pl.String).fill_null("").gather(first[order])
            self._values[column] = pl.DataFrame({"text": text, "code": present[order]})
        return self._values[column]

    def lookup(self, frame: pl.DataFrame, column: str, texts: pl.Series) -> np.ndarray:
        """The codes of ``texts`` (Int64), -1 for a text no row of ``column`` holds."""
        found = (
            texts.cast(pl.String).to_frame("text")
            .join(self.values(frame, column), on="text", how="left", maintain_order="left")["code"]
        )
        return found.fill_null(-1).to_numpy()
