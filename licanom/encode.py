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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

from licanom.columns import CATEGORICAL
from licanom.derive import offsets, derive, distinct_countries, outcome

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
        """Build the vocabulary from a time-ordered derived log (all columns in one pass)."""
        firsts = derived.select(
            pl.col(raw).unique(maintain_order=True).drop_nulls().implode() for raw, _ in CATEGORICAL
        )
        values = {raw: tuple(firsts[raw][0].to_list()) for raw, _ in CATEGORICAL}
        return cls(values=values)

    @classmethod
    def fit_by_frequency(cls, derived: pl.DataFrame) -> Vocabulary:
        """The values ordered from the rarest to the most common (ties: first appearance)."""
        values = {}
        for raw, _ in CATEGORICAL:
            counts = (
                derived.select(pl.col(raw).drop_nulls()).with_row_index("_first")
                .group_by(raw, maintain_order=True).agg(pl.len().alias("_n"), pl.col("_first").first())
                .sort(["_n", "_first"])
            )
            values[raw] = tuple(counts[raw].to_list())
        return cls(values=values, encoder=FrequencyEncoder.name)

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
    """Turns a derived log into the model's float32 features, one row per request.

    Distinct known values of a categorical column must get distinct features: chunking counts
    a window's distinct values on the features (licanom.chunk), and on the raw text only for
    features of 0.0 (values the vocabulary does not know).
    """

    name: str

    def encode(self, derived: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame: ...


class ThesisEncoder:
    """Index in the vocabulary plus one, divided by the vocabulary's size; unseen -> 0.0."""

    name = "thesis"

    def fit(self, derived: pl.DataFrame) -> Vocabulary:
        """The vocabulary in order of first appearance (the thesis's)."""
        return Vocabulary.fit(derived)

    def encode(self, derived: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
        """Return the derived log with the FEATURE_COLUMNS added (float32; ``f_time`` float64).

        ``f_time`` is seconds since the first row: chunking normalises it inside each window.
        Known values encode as distinct floats (so chunking can count distinct values on
        them), which float32 guarantees for vocabularies of up to 2**24 values.
        """
        return _encode(derived, vocabulary, {})


def _encode(derived: pl.DataFrame, vocabulary: Vocabulary, given: dict[str, pl.Series]) -> pl.DataFrame:
    """ThesisEncoder.encode, with the features in ``given`` already computed."""
    exprs = []
    for raw, feature in CATEGORICAL:
        n = vocabulary.size(raw)
        if n > MAX_VOCABULARY:
            raise ValueError(
                f"the vocabulary of {raw} has {n:,} values; float32 features can tell at most "
                f"{MAX_VOCABULARY:,} apart"
            )
        name = f"f_{feature}"
        exprs.append(pl.lit(given[name]) if name in given else _index(derived, raw, vocabulary).alias(name))
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


def derive_fit_encode(valid: pl.DataFrame) -> tuple[pl.DataFrame, Vocabulary]:
    """``derive``, ``Vocabulary.fit`` and ``ThesisEncoder.encode`` in one go: the same frame and
    vocabulary (tested), with each text hashed twice (distinct values, then positions) and
    the countries not hashed row by row at all.

    An address's position among the distinct addresses (in order of first appearance) gives
    its feature, its country (looked up once per address) and the country's feature; the
    countries' order of first appearance follows from the addresses'.
    """
    texts = ("IP", "Key", "MachineCode")
    if valid.height == 0 or any(valid[c].dtype != pl.String or valid[c].null_count() for c in texts):
        derived = derive(valid)
        vocabulary = Vocabulary.fit(derived)
        return ThesisEncoder().encode(derived, vocabulary), vocabulary
    base = valid.with_columns(*outcome(valid["State"]))

    def distinct(c: str) -> tuple[pl.Series, pl.Series | None]:
        """A column's distinct values in order of first appearance, and for text each row's
        position among them (its place in the vocabulary)."""
        values = base[c].unique(maintain_order=True).drop_nulls()
        return values, base[c].cast(pl.Enum(values)).to_physical() if c in texts else None

    columns = [raw for raw, _ in CATEGORICAL if raw != "country"]
    with ThreadPoolExecutor(max_workers=2) as pool:  # polars works outside the GIL
        found = dict(zip(columns, pool.map(distinct, columns), strict=True))
    values = {c: v for c, (v, _) in found.items()}
    at = {c: found[c][1] for c in texts}
    ip_country = distinct_countries(values["IP"])
    values["country"] = ip_country.unique(maintain_order=True)
    vocabulary = Vocabulary(values={raw: tuple(values[raw].to_list()) for raw, _ in CATEGORICAL})
    country_code = _code_table(len(values["country"])).gather(
        ip_country.cast(pl.Enum(values["country"])).to_physical()
    )
    derived = base.with_columns(ip_country.gather(at["IP"]).alias("country"))
    given = {
        f"f_{feature}": _code_table(len(values[raw])).gather(at[raw]).alias(f"f_{feature}")
        for raw, feature in CATEGORICAL
        if raw in texts
    }
    given["f_country"] = country_code.gather(at["IP"]).alias("f_country")
    return _encode(derived, vocabulary, given), vocabulary


def _code_table(n: int) -> pl.Series:
    """The feature of the value at each position of an n-value vocabulary: (i + 1) / n."""
    return pl.Series(np.arange(1, n + 1, dtype=np.float32) / max(n, 1))


MAX_VOCABULARY = 2**24  # (i + 1) / n stays distinct in float32 up to here
LUT_LIMIT = 1 << 22  # integer columns whose values span less than this use a look-up table


def _index(derived: pl.DataFrame, raw: str, vocabulary: Vocabulary) -> pl.Expr:
    """(position in the vocabulary + 1) / size as float32, 0.0 for a value not in it.

    Text goes through an Enum of the vocabulary (its position in one hash look-up per row);
    integers of a narrow range through a table indexed by value, others through replace_strict.
    """
    n = vocabulary.size(raw)
    dtype = derived.schema[raw]
    col = pl.col(raw)
    codes = _code_table(n)
    if dtype != pl.String:
        values = derived[raw]
        lo, hi = values.min(), values.max()
        if dtype.is_integer() and not values.null_count() and lo is not None and hi - lo < LUT_LIMIT:
            # a table indexed by value - min: one array look-up per row, no hashing
            known = np.asarray(vocabulary.values[raw], dtype=np.int64)
            inside = (known >= lo) & (known <= hi)
            table = np.full(hi - lo + 1, UNKNOWN, dtype=np.float32)
            table[known[inside] - lo] = codes.to_numpy()[inside]
            if lo == hi:  # one value (one product): a constant
                return pl.lit(float(table[0]), dtype=pl.Float32)
            return pl.lit(pl.Series(raw, table[offsets(values, lo)], dtype=pl.Float32))
        known = vocabulary.series(raw, dtype)
        return col.replace_strict(known, codes, default=UNKNOWN, return_dtype=pl.Float32)
    if n == 0:
        return pl.lit(UNKNOWN, dtype=pl.Float32)
    # a Series cast: in an expression over a many-chunk frame the Enum cast costs more
    position = derived[raw].cast(pl.Enum(vocabulary.series(raw, pl.String)), strict=False).to_physical()
    return pl.lit(codes.gather(position).fill_null(UNKNOWN).alias(raw))


class FrequencyEncoder(ThesisEncoder):
    """The thesis's formula over a vocabulary ordered by how common each value is.

    A value's feature is (its rank from the rarest + 1) / vocabulary size: the vendor's most
    common key, IP or machine code is 1.0, the rarest 1/n, and a value never seen in training
    0.0, below every known one. Unlike the order of first appearance, which gives neighbouring
    values unrelated meanings, the feature then says something a network can generalise from:
    how usual the value is for this vendor (a burst of new or rare keys sits at the bottom, a
    heartbeat of the usual machines at the top). Distinct values keep distinct features.
    """

    name = "frequency"

    def fit(self, derived: pl.DataFrame) -> Vocabulary:
        return Vocabulary.fit_by_frequency(derived)


ENCODERS: dict[str, type[ThesisEncoder]] = {"thesis": ThesisEncoder, "frequency": FrequencyEncoder}


def get_encoder(name: str) -> Encoder:
    try:
        return ENCODERS[name]()
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}") from None
