"""Encode the derived log as the thesis's eight numeric columns (3.1.2).

The thesis's encoder maps each categorical value to its index in a per-vendor vocabulary
(values in order of first appearance, over all the data the model is trained on) and divides
by the vocabulary's size: with machine codes AAA, BBB, CCC seen in that order they become
1/3, 2/3 and 1. The vocabulary is saved beside the model, so that a later night's rows
encode known values identically.

Values first seen after the vocabulary was built (a new key, a new IP) encode as 0.0,
which no known value has: the model never saw 0.0 in that column during training, so new
values raise the reconstruction error of their chunk rather than masquerading as an old
value. Retraining rebuilds the vocabulary over all data, new values included.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from licanom.columns import CATEGORICAL

UNKNOWN = 0.0
VOCAB_VERSION = 1


@dataclass(frozen=True)
class Vocabulary:
    """Known values per raw column, in order of first appearance."""

    values: dict[str, tuple[str | int, ...]]
    encoder: str = "thesis"
    version: int = VOCAB_VERSION
    _series: dict[str, pl.Series] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def fit(cls, derived: pl.DataFrame) -> Vocabulary:
        """Build the vocabulary from a time-ordered derived log."""
        values = {
            raw: tuple(derived[raw].unique(maintain_order=True).drop_nulls().to_list())
            for raw, _ in CATEGORICAL
        }
        return cls(values=values)

    def size(self, column: str) -> int:
        return len(self.values[column])

    def series(self, column: str, dtype: pl.DataType) -> pl.Series:
        key = f"{column}:{dtype}"
        if key not in self._series:
            self._series[key] = pl.Series(column, self.values[column], dtype=dtype)
        return self._series[key]

    def digest(self) -> str:
        """A stable hash of the vocabulary, recorded with models that depend on it."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(
            {"encoder": self.encoder, "version": self.version, "values": self.values},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        data = json.loads(text)
        if data.get("version") != VOCAB_VERSION:
            raise ValueError(f"unsupported vocabulary version {data.get('version')!r}")
        return cls(
            values={k: tuple(v) for k, v in data["values"].items()},
            encoder=data["encoder"],
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls.from_json(path.read_text())


class Encoder(Protocol):
    """Turns a derived log into the model's float32 features, one row per request."""

    name: str

    def encode(self, derived: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame: ...


class ThesisEncoder:
    """Index in the vocabulary plus one, divided by the vocabulary's size; unseen -> 0.0."""

    name = "thesis"

    def encode(self, derived: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
        """Return the derived log with the FEATURE_COLUMNS added (float32; ``f_time`` float64).

        ``f_time`` is seconds since the first row: chunking normalises it inside each window.
        """
        exprs = []
        for raw, feature in CATEGORICAL:
            dtype = derived.schema[raw]
            n = vocabulary.size(raw)
            known = vocabulary.series(raw, dtype)
            codes = pl.Series(np.arange(1, n + 1, dtype=np.float32) / max(n, 1))
            exprs.append(
                pl.col(raw)
                .replace_strict(known, codes, default=UNKNOWN, return_dtype=pl.Float32)
                .alias(f"f_{feature}")
            )
        t0 = derived["Time"].min() if derived.height else None
        time = (
            (pl.col("Time") - pl.lit(t0)).dt.total_microseconds().cast(pl.Float64) / 1e6
            if t0 is not None
            else pl.lit(0.0, dtype=pl.Float64)
        )
        return derived.with_columns(
            time.alias("f_time"),
            pl.col("success").cast(pl.Float32).alias("f_success"),
            *exprs,
        )


ENCODERS: dict[str, type[ThesisEncoder]] = {"thesis": ThesisEncoder}


def get_encoder(name: str) -> Encoder:
    try:
        return ENCODERS[name]()
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}") from None
