"""Files pickled by earlier versions (flat modules) still load; an unreadable one is a clear error."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from licanom.data.context_vector import KeyHistory
from licanom.detectors.context import TailModel
from licanom.detectors.saved import load_pickle


def _old_file(obj: object, path: Path, renames: dict[bytes, bytes]) -> Path:
    data = pickle.dumps(obj, protocol=0)  # protocol 0 names each class as text: "c<module>\n<name>\n"
    for new, old in renames.items():
        assert new in data
        data = data.replace(new, old)
    path.write_bytes(data)
    return path


def test_a_file_written_before_the_packages_loads(tmp_path: Path) -> None:
    tail = TailModel().fit(np.arange(40, dtype=np.float64).reshape(20, 2))
    history = KeyHistory.from_rows(pl.DataFrame({
        "Time": [datetime(2026, 1, 1, 9, tzinfo=UTC), datetime(2026, 1, 1, 10, tzinfo=UTC)], "Key": ["K1", "K1"],
        "MachineCode": ["m1", "m2"], "IP": ["10.0.0.1", "10.0.0.2"], "country": ["SE", "NO"], "success": [1, 1]}))
    payload = {"format": 1, "estimator": tail, "history": history}
    path = _old_file(payload, tmp_path / "old.pkl", {b"clicanom.detectors.context\n": b"clicanom.context\n",
                                                       b"clicanom.data.context_vector\n": b"clicanom.context\n"})
    assert b"licanom.detectors" not in path.read_bytes() and b"licanom.data" not in path.read_bytes()
    got = load_pickle(path, "context detector", {1})
    assert isinstance(got["estimator"], TailModel) and isinstance(got["history"], KeyHistory)
    assert got["history"].machines.equals(history.machines)
    x = np.array([[3.0, 50.0]])
    assert np.array_equal(got["estimator"].score_samples(x), tail.score_samples(x))


def test_an_unreadable_file_names_itself(tmp_path: Path) -> None:
    path = _old_file({"x": TailModel()}, tmp_path / "alien.pkl", {b"clicanom.detectors.context\n": b"clicanom.nowhere\n"})
    with pytest.raises(ValueError, match="alien.pkl: not a readable context detector file"):
        load_pickle(path, "context detector", {1})
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(ValueError, match="cut.pkl"):
        load_pickle(tmp_path / "cut.pkl", "entity model", {1})
    (tmp_path / "new.pkl").write_bytes(pickle.dumps({"format": 9}))
    with pytest.raises(ValueError, match=r"new.pkl: unsupported entity model file \(format 9, this version reads 1, 2\)"):
        load_pickle(tmp_path / "new.pkl", "entity model", {1, 2})
