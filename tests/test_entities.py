"""Per-key sequences: every request lands in exactly one sequence, in time order, named right."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from licanom.data.columns import FEATURE_COLUMNS
from licanom.detectors.sequence.sessions import STEP_FEATURES, aggregate_row_labels, make_sequences, sequence_labels


def _encoded(rows: list[tuple]) -> pl.DataFrame:
    """A minimal encoded frame: (Id, Key, MachineCode, IP, Time[, State[, country]]) rows plus the
    eight thesis feature columns (which per-key sequences must not read)."""
    n = len(rows)
    frame = pl.DataFrame(
        {
            "Id": [r[0] for r in rows],
            "Key": [r[1] for r in rows],
            "MachineCode": [r[2] for r in rows],
            "IP": [r[3] for r in rows],
            "Time": [r[4] for r in rows],
            "ProductId": [1] * n,
            "State": [r[5] if len(r) > 5 else 1010 for r in rows],
            "success": [True] * n,
            "action": ["verify"] * n,
            "country": [r[6] if len(r) > 6 else "SE" for r in rows],
        },
        schema_overrides={"Time": pl.Datetime("us", "UTC")},
    )
    return frame.with_columns(
        *(pl.lit(0.5, dtype=pl.Float32).alias(c) for c in FEATURE_COLUMNS[1:]),
        pl.lit(0.0).alias(FEATURE_COLUMNS[0]),
    ).sort("Time", "Id")


T0 = datetime(2025, 3, 1, tzinfo=UTC)


def test_every_request_in_one_sequence_per_key_and_day() -> None:
    rows = [
        (1, "A", "m1", "1.1.1.1", T0 + timedelta(hours=1)),
        (2, "B", "m2", "2.2.2.2", T0 + timedelta(hours=2)),
        (3, "A", "m3", "1.1.1.2", T0 + timedelta(hours=6)),
        (4, "A", "m1", "1.1.1.1", T0 + timedelta(days=1, hours=1)),  # next day: new sequence
        (5, "B", None, "2.2.2.2", T0 + timedelta(hours=23)),
    ]
    seqs = make_sequences(_encoded(rows), by="key")
    assert seqs.n_sequences == 3
    meta = seqs.meta
    assert meta["key"].to_list() == ["A", "B", "A"]
    assert meta["requests"].to_list() == [2, 2, 1]
    assert meta["first_id"].to_list() == [1, 2, 4]
    assert meta["last_id"].to_list() == [3, 5, 4]
    assert meta["machine_codes"].to_list() == ["m1,m3", "m2", "m1"]
    assert meta["ips"].to_list() == [2, 1, 1]
    all_ids = np.sort(np.concatenate(seqs.row_ids))
    assert all_ids.tolist() == [1, 2, 3, 4, 5]
    assert seqs.X[0].dtype == np.float32 and seqs.X[0].shape == (2, len(STEP_FEATURES))


def test_key_machine_pairs_and_long_sequences_split() -> None:
    rows = [(i, "A", f"m{i % 2}", "1.1.1.1", T0 + timedelta(minutes=i)) for i in range(10)]
    seqs = make_sequences(_encoded(rows), by="key-machine", max_length=3)
    assert sorted(seqs.meta["requests"].to_list()) == [2, 2, 3, 3]
    assert set(seqs.meta["machine_codes"].to_list()) == {"m0", "m1"}
    assert sorted(seqs.meta["part"].to_list()) == [0, 0, 1, 1]
    assert sum(len(x) for x in seqs.X) == 10


def test_shorter_period() -> None:
    rows = [(i, "A", "m", "1.1.1.1", T0 + timedelta(minutes=20 * i)) for i in range(6)]
    seqs = make_sequences(_encoded(rows), by="key", period=timedelta(hours=1))
    assert seqs.meta["requests"].to_list() == [3, 3]


def test_labels_by_id_and_by_key() -> None:
    rows = [(i, "AB"[i % 2], "m", "1.1.1.1", T0 + timedelta(minutes=i)) for i in range(6)]
    seqs = make_sequences(_encoded(rows), by="key")
    by_id = pl.DataFrame({"Id": [1, 2], "label": [-1, 1]})
    assert sequence_labels(seqs, by_id).tolist() == [1, -1]  # A holds Id 2 (+1), B holds Id 1 (-1)
    by_key = pl.DataFrame({"Key": ["A"], "label": [-1]})
    assert sequence_labels(seqs, by_key).tolist() == [-1, 0]
    assert aggregate_row_labels([np.array([7, 8])], by_id).tolist() == [0]


def test_bad_arguments() -> None:
    enc = _encoded([(1, "A", "m", "1.1.1.1", T0)])
    with pytest.raises(ValueError, match="key"):
        make_sequences(enc, by="ip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="period"):
        make_sequences(enc, period=timedelta(0))
    with pytest.raises(ValueError, match="no valid rows"):
        make_sequences(enc.clear())


def _column(seqs, name: str, i: int = 0) -> list[float]:
    return seqs.X[i][:, STEP_FEATURES.index(name)].tolist()


def test_steps_say_what_the_request_was_and_what_is_new_to_the_key() -> None:
    rows = [
        (1, "A", "m1", "1.1.1.1", T0 + timedelta(hours=1), 1010, "SE"),
        (2, "A", "m1", "1.1.1.1", T0 + timedelta(hours=1, seconds=9), 1021, "SE"),  # activation failed, detail 1
        (3, "A", "m2", "2.2.2.2", T0 + timedelta(hours=3), 2013, "US"),  # new machine, address, country
        (4, "A", None, "1.1.1.1", T0 + timedelta(hours=3), 6010, "SE"),  # no machine code: never new
    ]
    seqs = make_sequences(_encoded(rows), by="key")
    assert seqs.n_sequences == 1
    assert _column(seqs, "group_10") == [1, 1, 0, 0]
    assert _column(seqs, "group_20") == [0, 0, 1, 0]
    assert _column(seqs, "group_60") == [0, 0, 0, 1]
    assert _column(seqs, "success") == [1, 0, 1, 1]
    assert _column(seqs, "action_101") == [0, 1, 0, 0] and _column(seqs, "action_203") == [0, 0, 1, 0]
    assert _column(seqs, "action_100") == [1, 0, 0, 0] and _column(seqs, "action_600") == [0, 0, 0, 1]
    assert _column(seqs, "first_request") == [1, 0, 0, 0]
    assert _column(seqs, "new_machine_code") == [1, 0, 1, 0]
    assert _column(seqs, "new_ip") == [1, 0, 1, 0]
    assert _column(seqs, "new_country") == [1, 0, 1, 0]
    gap = np.array(_column(seqs, "log_gap"))
    np.testing.assert_allclose(gap * np.log1p(86_400), np.log1p([0, 9, 2 * 3600 - 9, 0]), rtol=1e-5)
    assert len(set(_column(seqs, "log_length"))) == 1 and _column(seqs, "log_length")[0] > 0


def test_no_identity_enters_a_step() -> None:
    """Renaming every key, machine code and address (and scrambling the thesis's vocabulary
    features) leaves every sequence's steps unchanged: no identity index is an input."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        key = f"K{rng.integers(6)}"
        rows.append((i, key, f"m{rng.integers(4)}", f"10.0.0.{rng.integers(5)}",
                     T0 + timedelta(minutes=int(37 * i + rng.integers(30))), int(rng.choice([1010, 1021, 2010, 6010])),
                     str(rng.choice(["SE", "US"]))))
    enc = _encoded(rows).with_columns(
        *(pl.Series(c, rng.random(len(rows)), dtype=pl.Float32) for c in FEATURE_COLUMNS[1:]))
    rename = {f"K{i}": f"Z{5 - i}" for i in range(6)} | {f"m{i}": f"x{(i * 3) % 4}" for i in range(4)}
    renamed = enc.with_columns(
        pl.col("Key").replace_strict(rename), pl.col("MachineCode").replace_strict(rename),
        ("192.168.1." + pl.col("IP").str.split(".").list.last()).alias("IP"),
        *(pl.Series(c, rng.random(len(rows)), dtype=pl.Float32) for c in FEATURE_COLUMNS[1:]),
    )
    a, b = make_sequences(enc, by="key"), make_sequences(renamed, by="key")
    assert a.n_sequences == b.n_sequences
    for xa, xb, ia, ib in zip(a.X, b.X, a.row_ids, b.row_ids, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)
