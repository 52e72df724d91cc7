"""The registered (pyfunc) model given rows that fail validation, as a user reads a vendor's CSV
with pandas: refused with the command line's wording when too many fail, scored with a logged
warning when a few do; never an empty frame without a word.

Small: the Tail_context bundle of tests/night_harness.py (600 rows, chunks of 20), saved as the
registered versions are (models-from-code, the bundle artifact, the signature) and loaded through
``mlflow.pyfunc.load_model``, so that MLflow's own input checks run too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import polars as pl
import pytest

from licanom.data.validate import ValidationError
from tests.night_harness import make_bundle, rows


@pytest.fixture(scope="module")
def model(tmp_path_factory):  # type: ignore[no-untyped-def]
    from licanom.ops.tracking import MODEL_CODE, model_signature

    root = tmp_path_factory.mktemp("pyfunc")
    make_bundle().save(root / "bundle")
    mlflow.pyfunc.save_model(str(root / "model"), python_model=str(MODEL_CODE), pip_requirements=[],
                             artifacts={"bundle": str(root / "bundle")}, signature=model_signature())
    return mlflow.pyfunc.load_model(str(root / "model"))


def _csv_rows(tmp_path: Path, n: int = 100) -> pd.DataFrame:
    """The vendor's rows as a user has them: a CSV export read with pandas (integer Ids, text times)."""
    rows(1600, n).write_csv(tmp_path / "log.csv")
    return pd.read_csv(tmp_path / "log.csv")


def test_the_pyfunc_refuses_rows_that_all_fail_validation_naming_the_reason(model, tmp_path) -> None:
    """Every row of an unknown state code, or with times in the vendor's own layout (which the
    registered model does not read): a ValidationError with the command line's refusal, not an
    empty frame."""
    good = _csv_rows(tmp_path)
    assert model.predict(good).shape == (5, 29)

    states = good.assign(State=5555)
    with pytest.raises(ValidationError, match=(
            r"^rows refused by the model of vendor 'acme', nothing scored: 100 of 100 rows \(100\.0%\) failed "
            r"validation, more than validate\.max_bad_fraction allows \(5\.0%\)\. Failures: State: unknown state "
            r"code \(100 rows\)\. Examples .*row 0 \(Id 1600\): State: unknown state code \(State '5555'\)")) as err:
        model.predict(states)
    assert err.value.result is not None and err.value.result.quarantine.height == 100  # each row's reason

    berlin = good.assign(Time=pd.to_datetime(good["Time"]).dt.tz_convert("Europe/Berlin")
                         .dt.strftime("%d.%m.%Y %H:%M:%S"))
    with pytest.raises(ValidationError, match=(
            r"100 of 100 rows \(100\.0%\) failed validation.*Failures: Time: unparsable \(100 rows\).*"
            r"\(Time '01\.03\.2025 06:00:00'\).*a registered model applies neither source\.time_format nor "
            r"source\.timezone: parse Time into datetimes before predict, docs/running\.md\)$")):
        model.predict(berlin)

    # parsed by the caller as docs/running.md shows, the same rows are the same chunks
    parsed = berlin.assign(Time=pd.to_datetime(berlin["Time"], format="%d.%m.%Y %H:%M:%S")
                           .dt.tz_localize("Europe/Berlin", ambiguous="NaT", nonexistent="NaT"))
    assert model.predict(parsed).equals(model.predict(good))
    as_polars = pl.from_pandas(berlin).with_columns(pl.col("Time").str.strptime(
        pl.Datetime("us"), "%d.%m.%Y %H:%M:%S").dt.replace_time_zone("Europe/Berlin", ambiguous="earliest",
                                                                     non_existent="null")).to_pandas()
    assert model.predict(as_polars).equals(model.predict(good))


def test_the_pyfunc_scores_the_rest_of_a_partly_bad_input_and_says_so(model, tmp_path, caplog) -> None:
    """A few bad rows (within validate.max_bad_fraction): the other rows are scored as without them,
    and a warning names how many rows were left out and why."""
    good = _csv_rows(tmp_path)
    part = good.copy()
    part.loc[part.index[-3:], "State"] = 5555  # the last three: the five windows before them stay whole
    caplog.set_level(logging.WARNING, logger="licanom.ops.tracking")
    chunks = model.predict(part)
    assert chunks.shape == (4, 29)
    assert chunks.equals(model.predict(good.head(97)))
    said = [r for r in caplog.records if r.name == "licanom.ops.tracking" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in said] == [
        "the model of vendor 'acme': 3 of 100 rows failed validation and were left out, not scored: "
        "State: unknown state code (3); the chunks are cut from the other rows"]

    # rows of a product the model does not know are left out too, not counted against the limit
    caplog.clear()
    foreign = good.copy()
    foreign.loc[foreign.index[-10:], "ProductId"] = 13301
    assert model.predict(foreign).equals(model.predict(good.head(90)))
    assert "10 of 100 rows failed validation" in caplog.text and "licanom run train --vendor acme" in caplog.text

    caplog.clear()
    model.predict(good)  # nothing left out, nothing said
    assert not [r for r in caplog.records if r.name == "licanom.ops.tracking"]


def test_the_pyfunc_says_so_when_its_rows_are_fewer_than_one_chunk(model, tmp_path, caplog) -> None:
    """Fewer valid rows than one chunk: nothing to score, an empty frame, and a warning that says why."""
    caplog.set_level(logging.WARNING, logger="licanom.ops.tracking")
    chunks = model.predict(_csv_rows(tmp_path, n=12))  # chunks of 20
    assert chunks.shape[0] == 0
    assert "12 valid row(s), fewer than one chunk of 20: nothing scored" in caplog.text


def test_a_pseudonymising_models_refusal_shows_no_address(tmp_path, monkeypatch) -> None:
    """The registered model of a pseudonymised vendor refuses rows as the command line does, naming
    each example's row and column but not the address it holds."""
    from dataclasses import replace

    from licanom.ops.tracking import MODEL_CODE, model_signature

    monkeypatch.setenv("LICANOM_TEST_PYFUNC_SECRET", "a-secret-of-more-than-16-characters")
    replace(make_bundle(), pseudonym_env="LICANOM_TEST_PYFUNC_SECRET").save(tmp_path / "bundle")
    mlflow.pyfunc.save_model(str(tmp_path / "model"), python_model=str(MODEL_CODE), pip_requirements=[],
                             artifacts={"bundle": str(tmp_path / "bundle")}, signature=model_signature())
    private = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    bad = _csv_rows(tmp_path).assign(IP=lambda f: [f"10.9.{i}.777" for i in range(len(f))])
    with pytest.raises(ValidationError, match=r"row 0 \(Id 1600\): IP: malformed address \(IP not shown") as err:
        private.predict(bad)
    assert "10.9." not in str(err.value)


def test_the_pyfunc_says_once_that_it_empties_the_fields_its_training_never_held(tmp_path, caplog) -> None:
    """A model whose training rows held no machine code empties a night's before scoring them (as
    it was trained): the nightly flow says so in the night's message, the pyfunc said nothing."""
    from dataclasses import replace

    from licanom.ops.tracking import LicanomPyfunc

    pyfunc = LicanomPyfunc()
    pyfunc.bundle = replace(make_bundle(), absent_fields=("MachineCode",))
    good = _csv_rows(tmp_path)
    caplog.set_level(logging.WARNING, logger="licanom.ops.tracking")
    pyfunc.predict(None, good)
    said = [r.getMessage() for r in caplog.records if r.name == "licanom.ops.tracking"]
    assert said == ["the model of vendor 'acme': the rows hold machine codes (MachineCode), which it was trained "
                    "without: emptied before scoring, the rows judged without them until the vendor is trained again "
                    "(licanom run train --vendor acme)"], said

    caplog.clear()
    pyfunc.predict(None, good.assign(MachineCode=""))  # nothing to empty: nothing said
    assert not [r for r in caplog.records if r.name == "licanom.ops.tracking"]


def test_the_docs_give_the_registered_signatures_columns_and_a_csv_read_it_takes_without_a_warning(
        model, tmp_path, monkeypatch, caplog) -> None:
    """docs/ui.md said "7 raw Web API Log columns in, the 27 columns of chunks.parquet out" where the
    signature takes 9 and gives 29; and the CSV read as docs/running.md suggested held FriendlyName
    and FloatingExpires, which MLflow warns it ignores. The doc's numbers are the signature's, and
    its read (the signature's columns only) passes without that warning, scoring the same chunks."""
    import re

    from licanom.ops.tracking import model_signature

    docs = Path(__file__).resolve().parents[1] / "docs"
    ui = " ".join((docs / "ui.md").read_text().split())
    (n_in, n_out), = re.findall(r"a signature \((\d+) raw Web API Log columns in\b.*?the (\d+) columns of", ui)
    signature = model_signature()
    assert (int(n_in), int(n_out)) == (len(signature.inputs.input_names()), len(signature.outputs.input_names()))
    assert model.predict(_csv_rows(tmp_path)).shape[1] == int(n_out)

    running = (docs / "running.md").read_text()
    (snippet,) = [block for block in re.findall(r"```python\n(.*?)```", running, re.S) if "usecols" in block]
    rows(1600, 100).with_columns(pl.lit("a friendly name").alias("FriendlyName"),
                                 pl.lit("").alias("FloatingExpires")).write_csv(tmp_path / "export.csv")
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {"model": model}
    exec(snippet, scope)  # the doc's own lines
    log_rows = scope["log_rows"]
    assert isinstance(log_rows, pd.DataFrame) and "FriendlyName" not in log_rows.columns
    with caplog.at_level(logging.WARNING):
        assert model.predict(log_rows).equals(model.predict(_csv_rows(tmp_path)))
    assert "extra inputs" not in caplog.text
    with caplog.at_level(logging.WARNING):  # the whole file, as the doc said before: MLflow's warning
        model.predict(pd.read_csv(tmp_path / "export.csv"))
    assert "Found extra inputs" in caplog.text and "FriendlyName" in caplog.text
