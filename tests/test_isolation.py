"""Vendors kept apart, secrets kept out of every output, personal values pseudonymised for MLflow."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import polars as pl
import pytest

from licanom.config import load_config, validate_vendor_name
from licanom.data.privacy import MissingSecretError, pseudonymise, read_secret
from tests.conftest import flow_stores


@pytest.mark.parametrize("name", [
    "../etc", "a/b", "a b", "Acme", "", "-x", "a;drop table", "x" * 64, "lic\u00e9nce", "a\nb", "a.b",
    "licanom/../other", "%2e%2e",
])
def test_vendor_names_that_could_escape_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid vendor name"):
        validate_vendor_name(name)


def test_good_vendor_names() -> None:
    for name in ("acme", "acme-2", "a_b", "0vendor"):
        assert validate_vendor_name(name) == name


def test_pseudonyms_are_keyed_stable_and_keep_blanks() -> None:
    frame = pl.DataFrame({"Key": ["A", "B", "A", None], "IP": ["1.2.3.4"] * 4, "MachineCode": ["", "m", "m", None],
                          "State": [1, 2, 3, 4]})
    one, two = pseudonymise(frame, b"s" * 16), pseudonymise(frame, b"t" * 16)
    assert one["Key"][0] == one["Key"][2] != one["Key"][1] and one["Key"][3] is None
    assert one["Key"][0] != two["Key"][0]  # another vendor's secret, other pseudonyms
    assert one["MachineCode"].to_list()[0] == "" and one["MachineCode"][3] is None
    assert one["State"].equals(frame["State"])
    assert not set(one["Key"].drop_nulls()) & {"A", "B"}


def test_missing_secret_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LICANOM_PSEUDONYM_SECRET_ACME_2", raising=False)
    with pytest.raises(MissingSecretError, match="LICANOM_PSEUDONYM_SECRET_ACME_2"):
        read_secret("acme-2")
    monkeypatch.setenv("LICANOM_PSEUDONYM_SECRET_ACME_2", "short")
    with pytest.raises(MissingSecretError, match="at least 16"):
        read_secret("acme-2")


def _bytes_under(*roots: Path) -> bytes:
    out = []
    for root in roots:
        for path in ([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                out.append(path.read_bytes())
    return b"\n".join(out)


@pytest.mark.slow
def test_token_and_personal_values_stay_out_of_tracking(tmp_path_factory, prefect_harness, capfd) -> None:
    """A vendor read over HTTP with a planted token and pseudonymisation on: train, then score;
    then every file written, the MLflow store and the console output are searched."""
    from tests.test_extract_http import PRODUCT, TOKEN, fake_cryptolens

    root = tmp_path_factory.mktemp("isolation")
    secret = "pseudonym-secret-of-delta-0123456789"
    mlflow_yaml = root / "mlflow.yaml"
    with fake_cryptolens() as fake:
        mp = flow_stores(root, {"delta": f"""
output_dir: {root / 'out'}
source: {{kind: cryptolens, product_id: {PRODUCT}, token_env: DELTA_TOKEN, base_url: "{fake.url}"}}
train: {{models: [TCN_AE_Small], epochs: 1, batch_size: 16}}
chunk: {{size: 20, stride: 20}}
detect: {{m1: false, threshold: quantile, threshold_params: {{contamination: 0.95}}}}
privacy: {{pseudonymise: true}}
"""})
        mp.setenv("DELTA_TOKEN", TOKEN)
        mp.setenv("LICANOM_PSEUDONYM_SECRET_DELTA", secret)
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        try:
            from flows.score_vendor import score_vendor
            from flows.train_vendor import train_vendor
            from licanom.ops.scoring_state import start_after
            from licanom.ops.tracking import configure

            rows = pl.DataFrame(fake.rows, infer_schema_length=None).filter(pl.col("ProductId") == PRODUCT)
            summary = train_vendor("delta")
            # score the last third again, as if it were new: restart the state before it
            (root / "out" / "delta" / "state" / "state.json").unlink()
            start_after(root / "out", "delta", int(rows["Id"].sort()[rows.height * 2 // 3]))
            night = score_vendor("delta")
            tracker = configure(mlflow_yaml)
            bundle, _ = tracker.load_champion("delta")
            # the registered input example (made-up stand-ins, not the log's values) is one chunk
            # that the model, with the secret, scores
            import mlflow.pyfunc

            registered = mlflow.pyfunc.load_model("models:/licanom-delta@champion")
            example = registered.input_example
            scored = registered.predict(example)
        finally:
            mp.undo()
    captured = capfd.readouterr()

    assert night.rows_read > 0 and night.out_dir is not None
    assert len(example) == 20 and example["Key"].str.startswith("EXAMPLE-KEY-").all() and len(scored) == 1
    assert bundle.vendor == "delta" and bundle.pseudonym_env == "LICANOM_PSEUDONYM_SECRET_DELTA"
    assert all(str(v).startswith("k-") for v in bundle.vocabulary.values["Key"])

    tracking = _bytes_under(root / "mlflow.db", root / "artifacts")
    everything = tracking + _bytes_under(root / "out") + captured.out.encode() + captured.err.encode()
    for form in (TOKEN, urllib.parse.quote(TOKEN, safe=""), urllib.parse.quote_plus(TOKEN), secret):
        assert form.encode() not in everything, form
    # the raw keys and addresses of the log never reach MLflow ...
    raw_keys = set(rows["Key"].unique().to_list())
    raw_ips = {ip for ip in rows["IP"].unique().to_list() if ip}
    leaked = [v for v in raw_keys | raw_ips if v.encode() in tracking]
    assert leaked == [], leaked[:5]
    assert b"k-" in tracking  # ... their pseudonyms do
    # ... while the vendor's own report, on local disk, shows the real values
    assert night.n_anomalies > 0
    page = (night.out_dir / "report.html").read_text()
    assert any(k in page for k in raw_keys)
    assert not any(k in (night.out_dir / "for-tracking" / "report.html").read_text() for k in raw_keys)
    # runs, artifacts and registered models are the vendor's own
    exp = tracker.client.get_experiment_by_name("licanom/delta")
    assert exp is not None and exp.artifact_location.endswith("/delta")
    assert summary.champion.name == "licanom-delta"
    runs = tracker.client.search_runs([exp.experiment_id])
    assert runs and all(r.data.tags.get("vendor") == "delta" for r in runs)


def test_a_model_refuses_another_vendors_rows(tmp_path: Path) -> None:
    import numpy as np

    from licanom.ops.bundle import ModelBundle, VendorMismatchError, validate_rows
    from licanom.config import ChunkConfig, EncodeConfig
    from licanom.data.derive import derive
    from licanom.data.encode import Vocabulary
    from licanom.detectors.autoencoders.detector import AutoencoderDetector
    from tests.conftest import make_raw_log

    det = AutoencoderDetector(model="TCN_AE_Small", epochs=1, batch_size=16, progress_bar=False, threads=1)
    det.fit(np.random.default_rng(0).random((32, 20, 8), dtype=np.float32))
    bundle = ModelBundle(vendor="acme", detector=det, vocabulary=Vocabulary.fit(derive(make_raw_log(200))),
                         chunk=ChunkConfig(size=20, stride=20), encode=EncodeConfig(), product_ids=(3, 7))
    raw = make_raw_log(100)
    assert validate_rows(bundle, raw, "acme").valid.height > 0
    with pytest.raises(VendorMismatchError, match="'other'"):
        validate_rows(bundle, raw, "other")
    # a product the model was not trained on is quarantined with its reason, not scored
    r = validate_rows(bundle, raw.with_columns(pl.lit(99, dtype=pl.Int64).alias("ProductId")), "acme")
    assert r.valid.height == 0 and r.quarantine["reason"].str.contains("not trained on").all()
    saved = ModelBundle.load(bundle.save(tmp_path / "b"))
    assert saved.vendor == "acme"
    meta = (tmp_path / "b" / "bundle.json").read_text()
    assert '"vendor": "acme"' in meta and "vocabulary_digest" in meta


def test_config_keeps_secrets_out_of_files() -> None:
    """conf/ names environment variables, never values; a token in a vendor file is refused."""
    cfg = load_config("demo")
    assert cfg.source.token_env == "CRYPTOLENS_TOKEN"
    for path in (Path(__file__).parent.parent / "conf").rglob("*.yaml"):
        text = path.read_text().lower()
        assert "token:" not in text.replace("token_env:", "") and "password" not in text
    if os.environ.get("CRYPTOLENS_TOKEN"):
        assert os.environ["CRYPTOLENS_TOKEN"] not in cfg.model_dump_json()


def test_reveal_names_real_values_where_a_pseudonymised_model_named_pseudonyms() -> None:
    from licanom.data.privacy import pseudonymise, reveal

    real = pl.DataFrame({"Id": [1, 2, 3], "Key": ["AAAA-1", "BBBB-2", "AAAA-1"], "IP": ["10.0.0.1", "10.0.0.2", ""],
                         "MachineCode": ["m-one", "", "m-two"]})
    private = pseudonymise(real, b"s" * 32)
    k, ip = private["Key"][0], private["IP"][0]
    found = pl.DataFrame({"entity": [k, ip], "key": [k, None], "address": [None, ip], "requests": [2, 1],
                          "reasons": [f"key {k}: 2 machine codes new to it", f"address {ip} and key {k}"]})
    shown = reveal(found, private, real)
    assert shown["entity"].to_list() == ["AAAA-1", "10.0.0.1"] and shown["key"].to_list() == ["AAAA-1", None]
    assert shown["reasons"].to_list() == ["key AAAA-1: 2 machine codes new to it", "address 10.0.0.1 and key AAAA-1"]
    assert shown["requests"].to_list() == [2, 1]
    assert reveal(found, private.filter(pl.col("Id") == 99), real).equals(found)  # unknown pseudonyms stay


def test_a_pseudonymised_vendors_training_quarantine_reaches_mlflow_pseudonymised(tmp_path, monkeypatch) -> None:
    """The training run's quarantine artifact of a pseudonymised vendor names no real key, address
    or machine code; the real rows stay on the vendor's disk."""
    from licanom.config import load_config
    from licanom.data.pipeline import prepare
    from licanom.data.validate import validate_log
    from licanom.ops.training import input_example, kept_training_quarantine, start_training
    from tests.conftest import make_raw_log

    class Tracker:  # what the run would send to MLflow
        frames: dict[str, pl.DataFrame] = {}

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            def record(*args, **kwargs):  # type: ignore[no-untyped-def]
                if name == "log_frame":
                    self.frames[args[2]] = args[1]
                return "run-1" if name == "start_run" else None
            return record

    raw = make_raw_log(400).with_columns(
        pl.when(pl.col("Id") % 10 == 0).then(pl.lit(5555)).otherwise(pl.col("State")).alias("State"),
        pl.format("user{}@corp.example", pl.col("Id") % 7).alias("FriendlyName"),  # a machine's name: personal too
        pl.format("owner{}@corp.example", pl.col("Id") % 5).alias("Email"))  # a column of the export's own
    for private in (False, True):
        cfg = load_config("demo", overrides={"output_dir": str(tmp_path / "out"), "chunk": {"size": 20, "stride": 20},
                                             "validate": {"max_bad_fraction": 0.5}, "privacy": {"pseudonymise": private}})
        if private:
            monkeypatch.setenv("LICANOM_PSEUDONYM_SECRET_DEMO", "s" * 32)
        prepared = prepare(raw, cfg)
        bad = prepared.validation.quarantine
        assert bad.height >= 40 and bad["Key"].str.starts_with("KEY").all()
        tracker = Tracker()
        run_id = start_training(tracker, cfg, prepared)  # type: ignore[arg-type]
        sent = tracker.frames["quarantine.parquet"]
        if not private:  # as it was: the vendor's values, nothing kept apart
            assert sent.equals(bad) and kept_training_quarantine(cfg, run_id) is None
            continue
        assert sent.height == bad.height and sent["reason"].to_list() == bad["reason"].to_list()
        assert "Email" in bad.columns and "Email" not in sent.columns  # not the log's: left out
        real = ({*bad["Key"], *bad["IP"], *bad["MachineCode"], *bad["FriendlyName"], *bad["Email"]}
                | set(raw["Key"])) - {"", None}
        text = sent.write_csv()
        assert not [v for v in real if v and v in text], text[:300]
        assert sent["Key"].str.starts_with("k-").all()
        own = kept_training_quarantine(cfg, run_id)
        assert own is not None and pl.read_parquet(own).equals(bad)
        # the registered model's input example: one chunk of made-up stand-ins that the model accepts
        # (it pseudonymises the rows it is given: a pseudonym would be refused as an address)
        example = input_example(cfg, prepared)
        assert example.height == 20 and not {*example["Key"], *example["IP"], *example["MachineCode"]} & real
        assert example["Key"].str.starts_with("EXAMPLE-KEY-").all()
        assert validate_log(example).quarantine.height == 0


def test_the_tracked_training_quarantine_names_each_export_by_its_file_name_only(monkeypatch, tmp_path) -> None:
    """A pseudonymised vendor's quarantine in MLflow names its exports without their folders (a
    local path can name a customer); the reason after the line number stays as it was."""
    from licanom.config import load_config
    from licanom.data.schema import SOURCE_FILE
    from licanom.data.validate import REASON
    from licanom.ops.training import tracked_quarantine

    cfg = load_config("demo", overrides={"output_dir": str(tmp_path / "out"), "privacy": {"pseudonymise": True}})
    monkeypatch.setenv("LICANOM_PSEUDONYM_SECRET_DEMO", "s" * 32)
    bad = pl.DataFrame({
        "Id": ["1", "2", None],
        "Key": ["KEY-A", "KEY-B", None],
        SOURCE_FILE: ["/srv/exports/Acme Customer/jan.csv", "C:\\exports\\acme\\feb.csv", "/srv/x/mar.csv"],
        REASON: ["IP: not an IP address",
                 "C:\\exports\\acme\\feb.csv line 7: cannot be read as CSV (9 fields, the header has 7 a/b)",
                 "/srv/x/mar.csv line 12: not valid JSON (Expecting value at column 1); Id: missing"],
    })
    sent = tracked_quarantine(cfg, bad)
    assert sent[SOURCE_FILE].to_list() == ["jan.csv", "feb.csv", "mar.csv"]
    assert sent[REASON].to_list() == [
        "IP: not an IP address", "feb.csv line 7: cannot be read as CSV (9 fields, the header has 7 a/b)",
        "mar.csv line 12: not valid JSON (Expecting value at column 1); Id: missing"]
    assert "Acme" not in sent.write_csv() and sent["Key"].drop_nulls().str.starts_with("k-").all()


def test_a_pseudonymised_vendors_refusal_names_rows_and_columns_not_their_values(tmp_path, monkeypatch) -> None:
    """A log refused for too many bad rows: its examples name each row, its Id and the failing column.
    For a pseudonymised vendor they show no key, address or machine code (the refusal reaches the
    console and Prefect's database); without pseudonyms the value is shown, as before."""
    from licanom.data.pipeline import prepare
    from licanom.data.validate import ValidationError
    from tests.conftest import make_raw_log

    raw = make_raw_log(200)
    bad = raw.with_columns(
        pl.when(pl.col("Id") % 4 == 0).then(pl.format("10.0.{}.999", pl.col("Id"))).otherwise(pl.col("IP")).alias("IP"),
        pl.when(pl.col("Id") % 4 == 1).then(pl.format("MACHINE-{}-", pl.col("Id")) + pl.lit("x" * 300))
        .otherwise(pl.col("MachineCode")).alias("MachineCode"))
    values = [v for v in bad["IP"] if v.endswith(".999")] + [v[:40] for v in bad["MachineCode"] if len(v) > 256]
    monkeypatch.setenv("LICANOM_PSEUDONYM_SECRET_DEMO", "s" * 32)
    for private in (False, True):
        cfg = load_config("demo", overrides={"output_dir": str(tmp_path / "out"), "privacy": {"pseudonymise": private}})
        with pytest.raises(ValidationError, match=r"Examples \(rows counted from 0 in the order read\): row \d+ \(Id \d+\): "
                                                  r"(IP|MachineCode): ") as err:
            prepare(bad, cfg)
        shown = [v for v in values if v in str(err.value)]
        if private:
            assert not shown, str(err.value)
            assert "(IP not shown: privacy.pseudonymise)" in str(err.value)
            assert "(MachineCode not shown: privacy.pseudonymise)" in str(err.value)
        else:
            assert len(shown) == 2  # one value per example, the first row of each of the two reasons
