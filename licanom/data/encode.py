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

from licanom.data.columns import (
    CATEGORICAL,
    FEATURES,
    ROW_GAP_FEATURES,
    ROW_GROUPS,
    ROW_REQUEST_FEATURES,
    UNKNOWN_COUNTRY,
)
from licanom.data.derive import offsets, derive, distinct_countries, outcome
from licanom.data.codes import TextCodes, first_appearance, in_threads, text_ids

UNKNOWN = 0.0
VOCAB_VERSION = 1


@dataclass(frozen=True)
class Vocabulary:
    """Known values per raw column, in order of first appearance."""

    values: dict[str, tuple[str | int, ...]]
    encoder: str = "thesis"
    version: int = VOCAB_VERSION
    rows: RowsState | None = None  # the rows encoder's training state (None for the others)
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
        data: dict[str, object] = {"encoder": self.encoder, "version": self.version, "values": self.values}
        if self.rows is not None:
            data["rows"] = self.rows.to_dict()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        data = json.loads(text)
        if data.get("version") != VOCAB_VERSION:
            raise ValueError(f"unsupported vocabulary version {data.get('version')!r}")
        return cls(
            values={k: tuple(v) for k, v in data["values"].items()},
            encoder=data["encoder"],
            rows=RowsState.from_dict(data["rows"]) if "rows" in data else None,
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
    a window's distinct values on the features (licanom.data.chunk), and on the raw text only for
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
    return derived.with_columns(
        pl.lit(given["f_time"]) if "f_time" in given else _time_feature(derived["Time"]),
        pl.lit(given["f_success"]) if "f_success" in given else pl.col("success").cast(pl.Float32).alias("f_success"),
        *exprs,
    )


def _time_feature(times: pl.Series) -> pl.Expr:
    """``f_time``: seconds since the first row (Float64)."""
    t0 = times.min() if times.len() else None
    time = (
        (pl.col("Time") - pl.lit(t0)).dt.total_microseconds().cast(pl.Float64) / 1e6
        if t0 is not None
        else pl.lit(0.0, dtype=pl.Float64)
    )
    return time.alias("f_time")


def derive_fit_encode(valid: pl.DataFrame, codes: TextCodes | None = None) -> tuple[pl.DataFrame, Vocabulary]:
    """``derive``, ``Vocabulary.fit`` and ``ThesisEncoder.encode`` in one go: the same frame and
    vocabulary (tested), with each text hashed once (its id among the column's distinct texts,
    which gives both the distinct values and each row's position) and the countries not hashed
    row by row at all.

    An address's position among the distinct addresses (in order of first appearance) gives
    its feature, its country (looked up once per address) and the country's feature; the
    countries' order of first appearance follows from the addresses'.

    ``codes``: integer codes of ``valid``'s texts already found (validation finds the
    addresses' and keys'; :class:`licanom.data.validate.ValidationResult`), not hashed again.
    """
    texts = ("IP", "Key", "MachineCode")
    if valid.height == 0 or any(valid[c].dtype != pl.String or valid[c].null_count() for c in texts):
        derived = derive(valid)
        vocabulary = Vocabulary.fit(derived)
        return ThesisEncoder().encode(derived, vocabulary), vocabulary
    features = dict(CATEGORICAL)
    held = {c: codes.get(valid, c) if codes is not None else None for c in texts}

    def text(c: str) -> dict[str, pl.Series]:
        """A text's distinct values in order of first appearance (``values``), each row's
        position among them (its place in the vocabulary: ``at``) and its feature; for the
        address also the countries: of each distinct address, of each row, and their feature."""
        values, at = _first_appearance(valid[c], None if held[c] is None else pl.Series(held[c]),
                                       codes.first.get(c) if held[c] is not None and codes is not None else None)
        out = {"values": values, "at": at, "feature": _code_table(len(values)).gather(at).alias(f"f_{features[c]}")}
        if c == "IP":
            ip_country = distinct_countries(values)
            countries = ip_country.unique(maintain_order=True)
            code = _code_table(len(countries)).gather(ip_country.cast(pl.Enum(countries)).to_physical())
            out |= {"countries": countries, "country": ip_country.gather(at).alias("country"),
                    "f_country": code.gather(at).alias("f_country")}
        return out

    def indexed(column: pl.Series) -> tuple[pl.Series, pl.Series]:
        """An integer column's distinct values in order of first appearance, and its feature."""
        values = column.unique(maintain_order=True).drop_nulls()
        one = Vocabulary(values={column.name: tuple(values.to_list())})
        frame = column.to_frame()
        name = f"f_{features[column.name]}"
        return values, frame.with_columns(_index(frame, column.name, one).alias(name))[name]  # a constant broadcast

    def outcomes() -> tuple[pl.Series, pl.Series, pl.Series, pl.Series, pl.Series]:
        success, action = outcome(valid["State"])
        return success, action, *indexed(action), success.cast(pl.Float32).alias("f_success")

    def times() -> pl.Series:
        return valid.select(_time_feature(valid["Time"])).to_series()

    # polars and numpy work outside the GIL: two tasks at a time, the texts still to hash first
    # (the longest), the address's next (its countries ride along)
    order = sorted(texts, key=lambda c: (held[c] is not None, c != "IP"))
    *done, (success, action, actions, f_action, f_success), (products, f_product), f_time = in_threads([
        *(lambda c=c: text(c) for c in order),
        outcomes,
        lambda: indexed(valid["ProductId"]),
        times,
    ])
    found = dict(zip(order, done, strict=True))
    values = {c: found[c]["values"] for c in texts} | {"ProductId": products, "action": actions,
                                                         "country": found["IP"]["countries"]}
    vocabulary = Vocabulary(values={raw: tuple(values[raw].to_list()) for raw, _ in CATEGORICAL})
    derived = valid.with_columns(success, action, found["IP"]["country"])
    given = {f"f_{features[c]}": found[c]["feature"] for c in texts} | {
        "f_country": found["IP"]["f_country"], "f_time": f_time, "f_success": f_success,
        "f_action": f_action, "f_product": f_product}
    return _encode(derived, vocabulary, given), vocabulary


def _first_appearance(text: pl.Series, ids: pl.Series | None = None,
                      first: pl.Series | None = None) -> tuple[pl.Series, pl.Series]:
    """A text column's distinct values in order of first appearance and each row's position
    among them, for a column without nulls.

    Categories of the column's own give each distinct text an id in one hash per row (unless
    ``ids``, codes of the texts, are given), and :func:`licanom.data.codes.first_appearance`
    the ids' first rows in one integer hash (none where ``first``, those rows, is given; the
    ids are the positions where polars handed them out in row order, as it does)."""
    if ids is None:
        ids = text_ids(text)
    first, at = first_appearance(ids, first)
    return text.gather(first), at


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


# --------------------------------------------------------------------------- the rows mode

# The entities whose newness the rows mode marks, with the raw value that means "none".
_NEW_ENTITIES: tuple[tuple[str, str, str], ...] = (
    ("Key", "key", ""), ("MachineCode", "machine", ""), ("IP", "ip", ""), ("country", "country", UNKNOWN_COUNTRY),
)
_NEW_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("MachineCode", "machine", ""), ("IP", "ip", ""), ("country", "country", UNKNOWN_COUNTRY),
)


def _row_features() -> tuple[str, ...]:
    from licanom.data.context_vector import ENCODER_ROW_COLUMNS

    return (*ROW_REQUEST_FEATURES, *ENCODER_ROW_COLUMNS)


ROW_FEATURES: tuple[str, ...] = _row_features()
ROW_FEATURE_COLUMNS: tuple[str, ...] = tuple(f"r_{f}" for f in ROW_FEATURES)
# The columns the detector standardises (median/IQR of the training rows): the log gaps and the
# log1p entity counts; the others are 0/1 indicators.
ROW_SCALED: tuple[str, ...] = (*ROW_GAP_FEATURES, *ROW_FEATURES[len(ROW_REQUEST_FEATURES):])
# Columns of the model input per input mode.
INPUT_FEATURES: dict[str, tuple[str, ...]] = {"thesis": FEATURES, "rows": ROW_FEATURES}


def input_mode(encoder: str) -> str:
    """The model input mode ("thesis" or "rows") an encoder's chunks have."""
    return "rows" if encoder == RowsEncoder.name else "thesis"


@dataclass(frozen=True)
class RowsState:
    """What the rows encoder keeps from its training rows (saved in the vocabulary's JSON).

    ``first_seen``: per entity (Key, MachineCode, IP, country) each value with the time (epoch
    microseconds) of its first training row; ``pairs``: the same per (Key, MachineCode),
    (Key, IP) and (Key, country); ``key_last``: each key's last training request;
    ``gap_fill``: the median log gaps (overall, same key) of the training rows, for a row
    whose previous request is unknown. Only what lies *before* a row counts as known at that
    row, so training rows are encoded as they looked when they arrived, and a log scored
    against a state trained on later rows (held-out evaluation) learns nothing from them.
    """

    first_seen: dict[str, tuple[tuple[str, int], ...]]
    pairs: dict[str, tuple[tuple[str, str, int], ...]]
    key_last: tuple[tuple[str, int], ...]
    gap_fill: tuple[float, float]

    def to_dict(self) -> dict[str, object]:
        return {
            "first_seen": {k: [list(v) for v in vals] for k, vals in self.first_seen.items()},
            "pairs": {k: [list(v) for v in vals] for k, vals in self.pairs.items()},
            "key_last": [list(v) for v in self.key_last],
            "gap_fill": list(self.gap_fill),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RowsState:
        try:
            return cls(
                first_seen={k: tuple((str(a), int(b)) for a, b in v) for k, v in data["first_seen"].items()},  # type: ignore[union-attr]
                pairs={k: tuple((str(a), str(b), int(c)) for a, b, c in v) for k, v in data["pairs"].items()},  # type: ignore[union-attr]
                key_last=tuple((str(a), int(b)) for a, b in data["key_last"]),  # type: ignore[union-attr]
                gap_fill=(float(data["gap_fill"][0]), float(data["gap_fill"][1])),  # type: ignore[index]
            )
        except (LookupError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"the rows encoder's state is malformed ({type(err).__name__}: {err})") from None

    def advanced(self, later: RowsState) -> RowsState:
        """This state with ``later``'s (the state of rows scored since, :meth:`RowsEncoder.state`
        on them) merged in: values and pairs keep their earliest time, each key its latest
        request; the gap medians stay the training rows'. So a key first seen on one night is
        not new again the next, and its gap is counted from its last scored request."""
        def earliest(a: tuple[tuple, ...], b: tuple[tuple, ...]) -> tuple[tuple, ...]:
            out: dict[tuple, int] = {}
            for *value, t in (*a, *b):
                k = tuple(value)
                out[k] = min(t, out.get(k, t))
            return tuple((*k, t) for k, t in out.items())

        last = dict(self.key_last)
        for k, t in later.key_last:
            last[k] = max(t, last.get(k, t))
        return RowsState(
            first_seen={e: earliest(self.first_seen.get(e, ()), later.first_seen.get(e, ()))
                        for e in {*self.first_seen, *later.first_seen}},
            pairs={e: earliest(self.pairs.get(e, ()), later.pairs.get(e, ())) for e in {*self.pairs, *later.pairs}},
            key_last=tuple(last.items()),
            gap_fill=self.gap_fill,
        )

    def known(self, entity: str) -> pl.DataFrame:
        """``entity`` (String), ``_t0`` (Int64): values and their first training time."""
        vals = self.first_seen.get(entity, ())
        return pl.DataFrame({entity: [v for v, _ in vals], "_t0": [t for _, t in vals]},
                            schema={entity: pl.String, "_t0": pl.Int64})

    def known_pairs(self, entity: str) -> pl.DataFrame:
        """``Key``, ``entity`` (String), ``_t0`` (Int64): the pairs and their first training time."""
        vals = self.pairs.get(entity, ())
        return pl.DataFrame({"Key": [k for k, _, _ in vals], entity: [v for _, v, _ in vals],
                             "_t0": [t for _, _, t in vals]},
                            schema={"Key": pl.String, entity: pl.String, "_t0": pl.Int64})


_ROW_NEEDED = ("Time", "State", "success", "Key", "MachineCode", "IP", "country")
_ROW_TEXTS = ("Key", "MachineCode", "IP", "country")


def _code(column: str) -> str:
    """The name of a text column's integer code in :func:`_row_frame`."""
    return f"_code_{column}"


def _first(entity: str, by_key: bool = False) -> str:
    """The name of the flag of a value's (or, ``by_key``, a (Key, value) pair's) first row."""
    return f"_first_Key_{entity}" if by_key else f"_first_{entity}"


def _row_frame(derived: pl.DataFrame, codes: TextCodes | None = None) -> pl.DataFrame:
    """What the rows mode reads of a derived log, one row per request.

    ``_row`` (position), ``_t`` (epoch microseconds), State, success, the texts (null as ""),
    each text's integer code (equal codes for equal texts, and only then), ``_gap`` and
    ``_key_gap`` (microseconds since the previous row overall and of the same key, null where
    the frame holds none), and flags of the first row of each value and of each (Key, value)
    pair. Grouping and first occurrences run on the codes: one hash per text instead of one per
    question asked of it. The codes come from categories of the frame's own (not polars' global
    ones, which a long-running worker would fill with every vendor's keys and addresses), or
    from ``codes`` where the caller has them for all four texts (:func:`licanom.data.derive.derive_coded`).
    """
    missing = [c for c in _ROW_NEEDED if c not in derived.columns]
    if missing:
        raise ValueError(f"the rows encoder needs the derived columns {missing}")
    texts = [pl.col(c).cast(pl.String).fill_null("") for c in _ROW_TEXTS]
    held = {c: codes.get(derived, c) for c in _ROW_TEXTS} if codes is not None else {}
    if all(held.get(c) is not None for c in _ROW_TEXTS):
        coded = [pl.lit(pl.Series(_code(c), held[c], dtype=pl.UInt32)) for c in _ROW_TEXTS]
    else:
        categories = pl.Categorical(pl.Categories.random())
        coded = [text.cast(categories).to_physical().alias(_code(c)) for c, text in zip(_ROW_TEXTS, texts, strict=True)]
    key = pl.col(_code("Key"))
    return (
        derived.lazy()
        .select(
            pl.col("Time").dt.epoch("us").alias("_t"),
            pl.col("State"),
            pl.col("success"),
            *texts,
            *coded,
        )
        .with_row_index("_row")
        .with_columns(
            (pl.col("_t") - pl.col("_t").shift(1)).alias("_gap"),
            (pl.col("_t") - pl.col("_t").shift(1).over(key)).alias("_key_gap"),
            *(pl.col(_code(c)).is_first_distinct().alias(_first(c)) for c in _ROW_TEXTS),
            *(_pair(key, pl.col(_code(c))).is_first_distinct().alias(_first(c, True))
              for c in _ROW_TEXTS if c != "Key"),
        )
        .collect()
    )


def _pair(key: pl.Expr, value: pl.Expr) -> pl.Expr:
    """One integer per (key code, value code) pair."""
    return key.cast(pl.UInt64) * 2**32 + value.cast(pl.UInt64)


def _flags_at(n: int, rows: pl.Series) -> pl.Series:
    """A Boolean column of ``n`` rows, True at ``rows`` only."""
    flags = np.zeros(n, dtype=bool)
    flags[rows.to_numpy()] = True
    return pl.Series(flags)


def _log_seconds(us: pl.Expr) -> pl.Expr:
    return (us.cast(pl.Float64).clip(lower_bound=0.0) / 1e6).log1p()


class RowsEncoder:
    """The rows input mode: per request what it was, never who made it (see :data:`ROW_FEATURES`).

    * ``group_*`` (method group of the state), ``detail_*`` (its detail digit): one-hot;
      ``failed``: 1 for a failed request;
    * ``log_gap``, ``log_key_gap``: ``log1p`` of the seconds since the previous request overall
      and of the same key (the key's last training request where the log holds none before;
      the training median where nothing is known). Absolute, not normalised per window, so a
      runaway client's seconds stay seconds;
    * ``new_key``, ``new_machine``, ``new_ip``, ``new_country``: the row is the first of that
      value the vendor has (none before it in the log, none in the training rows before it);
      ``new_machine_to_key``, ``new_ip_to_key``, ``new_country_to_key``: the same per key.
      An empty machine code or the unknown country is never new;
    * the per-row entity counts of :func:`licanom.data.context_vector.row_context` (``log1p``), with the
      key pairs known before the log's first row as its history.

    Rows must be in time order (licanom.data.validate sorts them). The features are unscaled; the
    detector standardises :data:`ROW_SCALED` with its training rows' median and IQR.
    """

    name = "rows"

    def fit(self, derived: pl.DataFrame) -> Vocabulary:
        """The thesis's vocabulary plus the :class:`RowsState` of these (training) rows."""
        return self._fit(derived, _row_frame(derived))

    def fit_encode(self, derived: pl.DataFrame, codes: TextCodes | None = None) -> tuple[pl.DataFrame, Vocabulary]:
        """:meth:`fit` and :meth:`encode` on the same rows, reading them once (``codes``: as in
        :meth:`encode`)."""
        frame = _row_frame(derived, codes)
        vocabulary = self._fit(derived, frame)
        return self._encode(derived, frame, vocabulary), vocabulary

    def _fit(self, derived: pl.DataFrame, frame: pl.DataFrame) -> Vocabulary:
        return Vocabulary(values=_vocabulary_values(derived, frame), encoder=self.name, rows=_state(frame))

    def state(self, derived: pl.DataFrame) -> RowsState:
        """The :class:`RowsState` of these rows (time-ordered, derived): of the training rows in
        :meth:`fit`; of a scored night's rows to advance a state with (:meth:`RowsState.advanced`)."""
        return _state(_row_frame(derived))

    def encode(self, derived: pl.DataFrame, vocabulary: Vocabulary, codes: TextCodes | None = None) -> pl.DataFrame:
        """The derived log with :data:`ROW_FEATURE_COLUMNS` added (float32). ``codes``: the
        codes of its key, machine code, address and country where the caller has them
        (:func:`licanom.data.derive.derive_coded`), not hashed again."""
        return self._encode(derived, _row_frame(derived, codes), vocabulary)

    def _encode(self, derived: pl.DataFrame, frame: pl.DataFrame, vocabulary: Vocabulary) -> pl.DataFrame:
        from licanom.data.context_vector import ENCODER_ROW_COLUMNS, KeyHistory, row_context
        from licanom.data.states import METHOD_GROUPS

        state = vocabulary.rows
        if state is None or vocabulary.encoder != self.name:
            raise ValueError(f"the vocabulary was built by the {vocabulary.encoder!r} encoder, not the rows encoder")
        rows = frame.lazy()
        # A key's previous request where the log holds none (its first row here): its last
        # training request, looked up for those rows only.
        last = pl.LazyFrame({"Key": [k for k, _ in state.key_last], "_last": [t for _, t in state.key_last]},
                            schema={"Key": pl.String, "_last": pl.Int64})
        before = (
            rows.filter(pl.col("_key_gap").is_null())
            .select("_row", "Key", "_t")
            .join(last, on="Key", how="left", maintain_order="left")
            .select("_row", pl.when(pl.col("_last") < pl.col("_t")).then(pl.col("_t") - pl.col("_last")))
        )

        # A row is new when it is the first of its value (or pair) in the log and the training
        # rows hold the value only later or not at all: judged on the first rows alone.
        def new_rows(by: list[str], first: str, known: pl.DataFrame, valid: pl.Expr) -> pl.LazyFrame:
            return (
                rows.filter(pl.col(first))
                .select("_row", *by, "_t")
                .join(known.lazy(), on=by, how="left", maintain_order="left")
                .filter(valid & ~(pl.col("_t0") < pl.col("_t")).fill_null(False))
                .select("_row")
            )

        names = [*(f"new_{short}" for _, short, _ in _NEW_ENTITIES),
                 *(f"new_{short}_to_key" for _, short, _ in _NEW_PAIRS)]
        before, *new = pl.collect_all([
            before,
            *(new_rows([entity], _first(entity), state.known(entity), pl.col(entity) != unknown)
              for entity, _, unknown in _NEW_ENTITIES),
            *(new_rows(["Key", entity], _first(entity, True), state.known_pairs(entity),
                       (pl.col(entity) != unknown) & (pl.col("Key") != ""))
              for entity, _, unknown in _NEW_PAIRS),
        ])
        n = frame.height
        key_gap = frame["_key_gap"]
        if before.height:
            key_gap = key_gap.clone().scatter(before["_row"], before.to_series(1))
        gap_fill, key_gap_fill = state.gap_fill
        group = pl.col("State") // 100
        detail = pl.col("State") % 10
        features = frame.select(
            *((group == g).alias(f"group_{name}") for g, name in zip(METHOD_GROUPS, ROW_GROUPS, strict=True)),
            (pl.col("success") == 0).alias("failed"),
            *((detail == d).alias(f"detail_{d}") for d in range(10)),
            _log_seconds(pl.col("_gap")).fill_null(gap_fill).alias("log_gap"),
            _log_seconds(pl.lit(key_gap)).fill_null(key_gap_fill).alias("log_key_gap"),
        ).with_columns(_flags_at(n, first["_row"]).alias(name) for name, first in zip(names, new, strict=True))
        # the key pairs known before the log's first row: what row_context must not call new
        t_first = frame["_t"].min() if frame.height else None
        history = None
        if t_first is not None and any(state.pairs.get(e) for e in ("MachineCode", "country")):
            known = {e: state.known_pairs(e).filter(pl.col("_t0") < t_first).select("Key", e).unique().sort("Key", e)
                     for e in ("MachineCode", "country")}
            history = KeyHistory(machines=known["MachineCode"], countries=known["country"])
        # the entities' codes of the frame (texts null as empty, as the context reads them)
        codes = TextCodes.from_codes(n, {c: frame[_code(c)].to_numpy() for c in _ROW_TEXTS})
        # version 1: the counts the rows encoder was built with (its saved models keep their inputs)
        counts = row_context(derived, history, codes, ENCODER_ROW_COLUMNS, version=1)
        out = pl.concat([features, counts], how="horizontal").select(
            pl.col(f).cast(pl.Float32).alias(f"r_{f}") for f in ROW_FEATURES
        )
        return derived.with_columns(out)


def _vocabulary_values(derived: pl.DataFrame, frame: pl.DataFrame) -> dict[str, tuple[str | int, ...]]:
    """:meth:`Vocabulary.fit`'s values of a derived log, a text column's read off the first-row
    flags of its :func:`_row_frame` (the same values in the same order where it has no nulls)."""
    queries = [
        frame.lazy().filter(pl.col(_first(raw))).select(raw)
        if raw in _ROW_TEXTS and derived.schema[raw] == pl.String and not derived[raw].null_count()
        else derived.lazy().select(pl.col(raw).unique(maintain_order=True).drop_nulls())
        for raw, _ in CATEGORICAL
    ]
    found = pl.collect_all(queries)
    return {raw: tuple(f.to_series().to_list()) for (raw, _), f in zip(CATEGORICAL, found, strict=True)}


def _state(frame: pl.DataFrame) -> RowsState:
    """:meth:`RowsEncoder.state` of a :func:`_row_frame`."""
    rows = frame.lazy()
    # In time order (as validation leaves a log) a group's earliest time is its first row's
    # and its latest its last row's: first and last occurrences instead of group-bys.
    ordered = frame["_t"].null_count() == 0 and frame["_t"].is_sorted()

    def earliest(by: list[str], first: str, keep: pl.Expr) -> pl.LazyFrame:
        """``by`` and ``_t`` of each group of the rows ``keep``, in order of first appearance."""
        if ordered:
            return rows.filter(keep & pl.col(first)).select(*by, "_t")
        return rows.filter(keep).group_by(*by, maintain_order=True).agg(pl.col("_t").min())

    keyed = pl.col("Key") != ""
    if ordered:
        last = rows.filter(keyed & pl.col(_first("Key"))).select("Key").join(
            rows.filter(keyed & pl.col(_code("Key")).is_last_distinct()).select("Key", "_t"),
            on="Key", how="left", maintain_order="left")
    else:
        last = rows.filter(keyed).group_by("Key", maintain_order=True).agg(pl.col("_t").max())
    fills = rows.select(_log_seconds(pl.col("_gap")).median(), _log_seconds(pl.col("_key_gap")).median())
    *found, last, fills = pl.collect_all([
        *(earliest([entity], _first(entity), pl.col(entity) != unknown) for entity, _, unknown in _NEW_ENTITIES),
        *(earliest(["Key", entity], _first(entity, True), (pl.col(entity) != unknown) & keyed)
          for entity, _, unknown in _NEW_PAIRS),
        last,
        fills,
    ])
    singles, pairs = found[: len(_NEW_ENTITIES)], found[len(_NEW_ENTITIES):]
    return RowsState(
        first_seen={entity: tuple(g.iter_rows()) for (entity, _, _), g in zip(_NEW_ENTITIES, singles, strict=True)},
        pairs={entity: tuple(g.iter_rows()) for (entity, _, _), g in zip(_NEW_PAIRS, pairs, strict=True)},
        key_last=tuple(last.iter_rows()),
        gap_fill=tuple(float(v) if v is not None else 0.0 for v in fills.row(0)),  # type: ignore[arg-type]
    )


ENCODERS: dict[str, type[ThesisEncoder] | type[RowsEncoder]] = {
    "thesis": ThesisEncoder, "frequency": FrequencyEncoder, "rows": RowsEncoder,
}


def get_encoder(name: str) -> Encoder:
    try:
        return ENCODERS[name]()
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}") from None
