"""Faults: a training killed mid-epoch, unreachable servers, the same night run twice or at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from licanom.ops.scoring_state import VendorBusyError, advance, load_state, start_after, vendor_lock

ROOT = Path(__file__).resolve().parent.parent


def _chunks(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 20, 8), dtype=np.float32)


# --- training killed --------------------------------------------------------------------

# The first run kills itself with SIGKILL (nothing of its own cleanup runs, as with kill -9) in
# the second epoch, after the first epoch's checkpoint: at a known batch, not after a sleep that
# a busy machine could outrun. The test then resumes from that checkpoint.
TRAIN_SCRIPT = textwrap.dedent("""
    import os, signal, sys, numpy as np, torch
    torch.set_num_threads(1)
    from licanom.detectors.autoencoders.detector import AutoencoderDetector
    from licanom.detectors.autoencoders.module import AutoencoderModule
    step = AutoencoderModule.training_step
    def training_step(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 1:  # its second group of batches
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, batch, batch_idx)
    AutoencoderModule.training_step = training_step
    X = np.random.default_rng(0).random((96, 20, 8), dtype=np.float32)
    det = AutoencoderDetector(model="TCN_AE_Small", epochs=int(sys.argv[2]), batch_size=8,
                              checkpoint_dir=sys.argv[1], progress_bar=False, threads=1)
    det.fit(X)
""")


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, str(script), str(ckpt), "3"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    import torch

    done_epochs = torch.load(ckpt / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] + 1
    assert done_epochs == 1  # killed part-way through the second epoch

    # the next run (here, in this process: no second start-up to pay) resumes from that checkpoint
    from licanom.detectors.autoencoders.detector import AutoencoderDetector

    X = np.random.default_rng(0).random((96, 20, 8), dtype=np.float32)  # the script's data
    report = AutoencoderDetector(model="TCN_AE_Small", epochs=3, batch_size=8, checkpoint_dir=str(ckpt),
                                 progress_bar=False, threads=1).fit(X).report_
    assert report.resumed
    assert report.epochs_run == 3
    assert len(report.train_loss) == 3  # the loss history of the killed run came back with the checkpoint


# A training's MLflow runs (its parent and a variant), then SIGKILL mid-epoch: the runs stay RUNNING,
# owned by a process that is gone. For two vendors: one tidied by the next training's start, one by
# the next night's recovery.
KILLED_RUNS_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from licanom.ops.tracking import Tracker, TrackingConfig
    tracker = Tracker(TrackingConfig(tracking_uri=sys.argv[1], registry_uri=sys.argv[1], artifact_location=sys.argv[2]))
    for vendor in ("acme", "beta"):
        parent = tracker.start_run(vendor, f"train {vendor}", "training")
        tracker.start_run(vendor, "TCN_AE", "variant", parent, tags={"model": "TCN_AE"})
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_runs_of_a_training_killed_with_sigkill_are_marked_killed_by_the_next_start(tmp_path: Path) -> None:
    """A training killed with SIGKILL left its parent and variant runs RUNNING for good. Its runs
    record the host and process that own them, and the next training of the vendor (or the next
    night's recovery) marks KILLED those whose process on this host is gone, one line each; a
    training still running is left alone, as is another host's run until it is older than the limit."""
    import socket

    from licanom.ops import training
    from licanom.ops.nightly import recover
    from licanom.ops.tracking import OWNER_HOST_TAG, OWNER_PID_TAG
    from tests.night_harness import tracker_for

    tracker = tracker_for(tmp_path)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUNS_SCRIPT)
    killed = subprocess.Popen([sys.executable, str(script), tracker.config.tracking_uri,
                               str(tracker.config.artifact_location)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stderr=subprocess.PIPE, text=True)
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err[-2000:]

    def runs(vendor: str) -> dict[str, object]:
        exp = tracker.client.get_experiment_by_name(tracker.experiment_name(vendor))
        return {r.info.run_id: r for r in tracker.client.search_runs([exp.experiment_id])}

    left = runs("acme")
    assert [r.info.status for r in left.values()] == ["RUNNING", "RUNNING"]
    host = socket.gethostname()
    assert {(r.data.tags[OWNER_HOST_TAG], r.data.tags[OWNER_PID_TAG]) for r in left.values()} == {(host, str(killed.pid))}
    # a training still running (this process's) and another host's started just now: not touched
    mine = tracker.start_run("acme", "train acme", "training")
    other = tracker.start_run("acme", "train acme", "training", tags={OWNER_HOST_TAG: "gpu-2", OWNER_PID_TAG: "4242"})
    lines = training.end_killed_trainings(tracker, "acme")
    assert sorted(lines) == sorted(f"MLflow run {run_id} ({r.info.run_name}) of vendor acme marked KILLED: its process "
                                   f"{killed.pid} on {host} is gone" for run_id, r in left.items())
    now = runs("acme")
    assert all(now[i].info.status == "KILLED" and now[i].data.tags["licanom.outcome"].startswith("killed: its process")
               for i in left)
    assert now[mine].info.status == now[other].info.status == "RUNNING"
    assert training.end_killed_trainings(tracker, "acme") == []  # safe to repeat
    # another host's run, and one from before runs named their owner, once older than the limit
    exp = tracker.client.get_experiment_by_name(tracker.experiment_name("acme")).experiment_id
    unowned = tracker.client.create_run(exp, run_name="train acme", tags={"licanom.kind": "training"}).info.run_id
    later = time.time() + training.OTHER_HOST_LIMIT.total_seconds() + 60
    lines = training.end_killed_trainings(tracker, "acme", now=later)
    assert len(lines) == 2 and any(f"{other} (train acme) of vendor acme marked KILLED: owned by process 4242 on host "
                                   f"gpu-2, which cannot be asked from {host}, and started " in line for line in lines)
    assert any(f"{unowned} (train acme) of vendor acme marked KILLED: owned by no process recorded" in line for line in lines)
    now = runs("acme")
    assert (now[other].info.status, now[unowned].info.status, now[mine].info.status) == ("KILLED", "KILLED", "RUNNING")
    # a host name shared with another container (or a machine rebooted): its pid is not this host's to
    # ask, though a process of this one has it; and this process's own pid, where the run began before it
    from licanom.ops.tracking import OWNER_SPACE_TAG, owner_space

    elsewhere = tracker.client.create_run(exp, run_name="train acme", tags={
        "licanom.kind": "training", OWNER_HOST_TAG: host, OWNER_PID_TAG: str(os.getpid()),
        OWNER_SPACE_TAG: "another-boot pid:[4026531836]"}).info.run_id
    reused = tracker.client.create_run(exp, run_name="train acme", start_time=int((time.time() - 86_400) * 1000), tags={
        "licanom.kind": "training", OWNER_HOST_TAG: host, OWNER_PID_TAG: str(os.getpid()),
        OWNER_SPACE_TAG: owner_space()}).info.run_id
    lines = training.end_killed_trainings(tracker, "acme")
    if owner_space():  # Linux: this process started after the day-old run, its pid given again
        assert lines == [f"MLflow run {reused} (train acme) of vendor acme marked KILLED: its process {os.getpid()} "
                         f"on {host} is gone"]
    now = runs("acme")
    assert now[elsewhere].info.status == now[mine].info.status == "RUNNING"
    lines = training.end_killed_trainings(tracker, "acme", now=later)
    assert any(f"{elsewhere} (train acme) of vendor acme marked KILLED: owned by process {os.getpid()} on host {host} "
               "(another boot or container)" in line for line in lines)
    assert runs("acme")[mine].info.status == "RUNNING"
    # the night's recovery does the same for its vendor, a line each among its notes
    notes = recover(tmp_path / "out", "beta", tracker)
    assert len(notes) == 2 and all(n.endswith(f"of vendor beta marked KILLED: its process {killed.pid} on {host} is gone")
                                   for n in notes)
    assert {r.info.status for r in runs("beta").values()} == {"KILLED"}


def test_truncated_checkpoint_restarts_cleanly(tmp_path: Path) -> None:
    from licanom.detectors.autoencoders.detector import AutoencoderDetector

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "last.ckpt").write_bytes(b"PK\x03\x04 half a checkpoint")  # killed while writing
    det = AutoencoderDetector(model="TCN_AE_Small", epochs=1, batch_size=16, checkpoint_dir=str(ckpt),
                              progress_bar=False, threads=1).fit(_chunks(64))
    assert det.report_ is not None and not det.report_.resumed and det.report_.epochs_run == 1


# --- the same vendor twice --------------------------------------------------------------

def _tail() -> pl.DataFrame:
    return load_state(Path("/nonexistent"), "x").tail


def test_watermark_only_moves_forward(tmp_path: Path) -> None:
    start_after(tmp_path, "acme", 100)
    assert advance(tmp_path, "acme", 200, _tail(), "3").watermark == 200
    assert advance(tmp_path, "acme", 150, _tail(), "3").watermark == 200  # an older night re-run
    assert advance(tmp_path, "acme", None, _tail(), "3").watermark == 200
    assert load_state(tmp_path, "acme").watermark == 200
    assert start_after(tmp_path, "acme", 5).watermark == 200  # retraining never rewinds


def test_the_key_pairs_of_scored_nights_accumulate_per_model_version(tmp_path: Path) -> None:
    from licanom.data.context_vector import KeyHistory

    def pairs(*rows: tuple[str, str, str]) -> KeyHistory:
        return KeyHistory(machines=pl.DataFrame({"Key": [r[0] for r in rows], "MachineCode": [r[1] for r in rows]}),
                          countries=pl.DataFrame({"Key": [r[0] for r in rows], "country": [r[2] for r in rows]}))

    start_after(tmp_path, "acme", 100)
    assert load_state(tmp_path, "acme").seen is None
    advance(tmp_path, "acme", 200, _tail(), "3", pairs(("K1", "M1", "SE")))
    advance(tmp_path, "acme", 300, _tail(), "3", pairs(("K1", "M2", "SE"), ("K2", "M9", "DE")))
    seen = load_state(tmp_path, "acme").seen
    assert seen is not None and seen.machines.rows() == [("K1", "M1"), ("K1", "M2"), ("K2", "M9")]
    assert seen.countries.rows() == [("K1", "SE"), ("K2", "DE")]
    # an older night re-run changes nothing; a new model version starts from its own nights
    advance(tmp_path, "acme", 250, _tail(), "3", pairs(("K7", "M7", "US")))
    assert load_state(tmp_path, "acme").seen.machines.height == 3
    advance(tmp_path, "acme", 400, _tail(), "4", pairs(("K3", "M3", "FR")))
    assert load_state(tmp_path, "acme").seen.machines.rows() == [("K3", "M3")]
    advance(tmp_path, "acme", 500, _tail(), "5")  # a model that keeps no history
    assert load_state(tmp_path, "acme").seen is None


def test_a_state_of_the_first_layout_is_read_and_rewritten_in_one_file(tmp_path: Path) -> None:
    """state.json + tail.parquet side by side (before generations): read as it is; the next
    commit moves the tail into a generation named by state.json."""
    import json

    from tests.conftest import make_raw_log
    from licanom.data.validate import validate_log

    d = tmp_path / "acme" / "state"
    d.mkdir(parents=True)
    tail = validate_log(make_raw_log(5)).valid
    tail.write_parquet(d / "tail.parquet")
    (d / "state.json").write_text(json.dumps({"watermark": 1004, "model_version": "2"}))
    old = load_state(tmp_path, "acme")
    assert old.watermark == 1004 and old.tail.height == 5 and old.model_version == "2"
    new = advance(tmp_path, "acme", 1010, old.tail, "2")
    meta = json.loads((d / "state.json").read_text())
    assert meta["format"] == 2 and meta["watermark"] == 1010 and new.generation == meta["generation"]
    assert (d / f"g-{new.generation:08d}" / "tail.parquet").exists() and not (d / "tail.parquet").exists()
    assert load_state(tmp_path, "acme").tail.height == 5


def test_a_night_without_a_full_window_keeps_the_pairs_seen(tmp_path: Path) -> None:
    from licanom.data.context_vector import KeyHistory

    pairs = KeyHistory(machines=pl.DataFrame({"Key": ["K1"], "MachineCode": ["M1"]}),
                       countries=pl.DataFrame({"Key": ["K1"], "country": ["SE"]}))
    start_after(tmp_path, "acme", 100)
    advance(tmp_path, "acme", 200, _tail(), "3", pairs)
    advance(tmp_path, "acme", 210, _tail(), "3", None)  # too few rows for a window: no pairs of its own
    assert load_state(tmp_path, "acme").seen.machines.rows() == [("K1", "M1")]


def test_errors_that_stay_are_not_retried() -> None:
    """One layer of retries per call: reading the log is never retried by Prefect (the HTTP
    client retries its own requests; a missing file stays missing); the MLflow tasks retry an
    error the next try may not meet, but not a vendor without a champion, nor an unreachable
    store (MLflow's client already retried its requests with back-off)."""
    from prefect.states import Failed

    from licanom.ops.tracking import TrackingUnavailableError
    from tasks import data, scoring

    assert data.extract.retries == 0 and data.read_night.retries == 0
    champion_retry = scoring.open_night.retry_condition_fn
    assert not champion_retry(None, None, Failed(data=LookupError("vendor 'x' has no champion model yet")))
    assert not champion_retry(None, None, Failed(data=TrackingUnavailableError("MLflow unreachable")))
    from licanom.data.privacy import PrivacyMismatchError  # a champion trained without the pseudonyms asked for

    assert not champion_retry(None, None, Failed(data=PrivacyMismatchError("train the vendor again")))
    assert champion_retry(None, None, Failed(data=ConnectionError("reset by peer")))


def test_vendor_lock_lets_one_run_in_at_a_time(tmp_path: Path) -> None:
    inside, overlaps = [], []

    def night(i: int) -> None:
        with vendor_lock(tmp_path, "acme", poll=0.01):
            if inside:
                overlaps.append(i)
            inside.append(i)
            time.sleep(0.05)
            inside.remove(i)

    threads = [threading.Thread(target=night, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    with vendor_lock(tmp_path, "acme"), pytest.raises(VendorBusyError, match="acme"):
        with vendor_lock(tmp_path, "acme", timeout=0.1):
            pass
    with vendor_lock(tmp_path, "other", timeout=0.1):  # vendors do not block each other
        pass


def test_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from licanom.ops.scoring_state import vendor_lock\n"
            f"with vendor_lock(Path({str(tmp_path)!r}), 'acme'):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
    with pytest.raises(VendorBusyError):
        with vendor_lock(tmp_path, "acme", timeout=0.2):
            pass
    proc.kill()
    proc.wait()
    with vendor_lock(tmp_path, "acme", timeout=5):
        pass


# --- unreachable servers ------------------------------------------------------------------

def test_unreachable_mlflow_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from licanom.ops.tracking import Tracker, TrackingConfig, TrackingUnavailableError

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    config = replace(TrackingConfig.load(), tracking_uri="http://ops:s3cret@127.0.0.1:9",
                     registry_uri="http://ops:s3cret@127.0.0.1:9")
    tracker = Tracker(config)
    for call in (lambda: tracker.load_champion("acme"), lambda: tracker.start_run("acme", "n", "nightly")):
        with pytest.raises(TrackingUnavailableError) as err:
            call()
        assert "127.0.0.1:9" in str(err.value) and "unreachable" in str(err.value)
        assert "s3cret" not in str(err.value)


def test_the_api_check_waits_for_a_server_that_is_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """tasks.api.wait_for_api: 503 twice, then an answer: urllib3's Retry asks three times; with
    two attempts it gives up naming the status."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tasks.api import wait_for_api

    answers: list[int] = []

    class Starting(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

        def do_GET(self) -> None:
            answers.append(503 if len(answers) % 3 < 2 else 200)
            self.send_response(answers[-1])
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"true")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Starting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{server.server_address[1]}/api")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        assert wait_for_api(attempts=4, first_delay=0.001) is None and answers == [503, 503, 200]
        answers.clear()
        assert "HTTP 503" in (wait_for_api(attempts=2, first_delay=0.001) or "") and answers == [503, 503]
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_prefect_api_runs_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": "http://127.0.0.1:9/api",
           "PREFECT_HOME": str(tmp_path / "prefect"), "LICANOM_CONF_DIR": str(tmp_path / "conf")}
    (tmp_path / "conf" / "vendors").mkdir(parents=True)
    (tmp_path / "conf" / "defaults.yaml").write_text((ROOT / "conf" / "defaults.yaml").read_text())
    (tmp_path / "conf" / "vendors" / "acme.yaml").write_text(
        f"output_dir: {tmp_path / 'out'}\nsource: {{kind: files, path: {tmp_path / 'log.csv'}}}\n")
    done = subprocess.run([sys.executable, "-m", "flows.run", "score", "--vendor", "acme", "--api-attempts", "2"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 4
    assert "Prefect API at http://127.0.0.1:9/api did not answer" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # no state, no night, nothing written
