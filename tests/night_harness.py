"""A vendor for night tests, without Prefect: a small Tail_context model, a CSV log that grows,
an MLflow store on SQLite, and the ledger check (every Id in exactly one published night or
the carried tail, none twice, the state consistent, no orphan MLflow run).

Used by tests/test_nights.py, tests/test_fault_injection.py and benchmarks/bench_faults.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from licanom.ops.bundle import ModelBundle
from licanom.config import ChunkConfig, Config, EncodeConfig, load_config
from licanom.ops.tracking import Tracker, TrackingConfig

CHUNK = 20
T0 = datetime(2025, 3, 1, tzinfo=UTC)
STATES = (1010, 1010, 1010, 1011, 1021, 2010, 2023, 6010, 8010)
IPS = ("8.8.8.8", "1.1.1.1", "81.2.69.160", "2001:4860::1", "192.168.1.10", "")


def rows(first_id: int, n: int, seed: int = 0, start: datetime | None = None, step_s: float = 30.0) -> pl.DataFrame:
    """``n`` well-formed raw rows with Ids first_id.., times after ``start`` (as text: a CSV export)."""
    rng = np.random.default_rng(seed)
    start = start or T0 + timedelta(seconds=step_s * (first_id - 1000))
    return pl.DataFrame({
        "Id": [str(first_id + i) for i in range(n)],
        "ProductId": [str(p) for p in rng.choice([3, 7], n)],
        "Key": [f"KEY{k:03d}-ABCDE" for k in rng.integers(0, 20, n)],
        "IP": [IPS[i] for i in rng.integers(0, len(IPS), n)],
        "Time": [(start + timedelta(seconds=step_s * i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)],
        "State": [str(s) for s in rng.choice(STATES, n)],
        "MachineCode": [f"mc{m:02d}" if m else "" for m in rng.integers(0, 30, n)],
    })


def make_bundle(vendor: str = "acme", n: int = 600, chunk: int = CHUNK) -> ModelBundle:
    """A Tail_context model (the fastest to fit) on ``n`` rows with Ids 1000.., chunks of ``chunk``."""
    from licanom.data.context_vector import KeyHistory, chunk_context
    from licanom.detectors.context import ContextDetector
    from licanom.data.derive import derive
    from licanom.data.encode import Vocabulary
    from licanom.data.validate import validate_log

    train = validate_log(rows(1000, n)).valid
    derived = derive(train)
    starts = np.arange(0, derived.height - chunk + 1, chunk)
    det = ContextDetector().fit(chunk_context(derived, starts, chunk))
    return ModelBundle(vendor=vendor, detector=det, vocabulary=Vocabulary.fit(derived),
                       chunk=ChunkConfig(size=chunk, stride=chunk), encode=EncodeConfig(), product_ids=(3, 7),
                       key_history=KeyHistory.from_rows(derived, levels=True))


def tracker_for(root: Path) -> Tracker:
    from tests.mlflow_store import empty_store

    empty_store(root / "mlflow.db")
    return Tracker(TrackingConfig(tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
                                  registry_uri=f"sqlite:///{root / 'mlflow.db'}",
                                  artifact_location=(root / "artifacts").as_uri()))


@dataclass
class NightVendor:
    """One vendor under test: its log file, its output folder, its MLflow store."""

    root: Path
    name: str
    model_dir: Path
    max_bad_fraction: float = 0.05
    chunk: int = CHUNK  # the model's chunks, which the vendor's configuration says too

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.csv"

    def config(self, **source: object) -> Config:
        return load_config(overrides={"vendor": self.name, "output_dir": str(self.out),
                                      "source": {"kind": "files", "path": str(self.log), **source},
                                      "validate": {"max_bad_fraction": self.max_bad_fraction},
                                      "chunk": {"size": self.chunk, "stride": self.chunk}})

    def start(self, trained_to: int = 1599) -> None:
        from licanom.ops.scoring_state import start_after

        start_after(self.out, self.name, trained_to)

    def append(self, frame: pl.DataFrame) -> None:
        """Append rows to the CSV export (a header first if the file is new)."""
        text = frame.write_csv(include_header=not self.log.exists())
        with open(self.log, "a") as f:
            f.write(text)

    def night(self, tracker: Tracker | None = None, since: int | None = None, **source: object):  # type: ignore[no-untyped-def]
        from licanom.ops.nightly import score_night

        model = ModelBundle.load(self.model_dir)
        return score_night(self.out, self.name, self.config(**source), tracker or tracker_for(self.root),
                           model, "1", since)


def new_vendor(root: Path, name: str = "acme", bundle: ModelBundle | None = None) -> NightVendor:
    from dataclasses import replace

    bundle = replace(bundle or make_bundle(name), vendor=name)
    model_dir = bundle.save(root / f"model-{name}")
    return NightVendor(root=root, name=name, model_dir=model_dir, chunk=bundle.chunk.size)


# --- the ledger --------------------------------------------------------------------------

def published(out: Path, vendor: str) -> list[Path]:
    d = out / vendor / "nights"
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.exists() else []


def check_ledger(v: NightVendor, log_ids: list[int], tracker: Tracker | None = None) -> dict[str, int]:
    """Every Id of the log accounted for exactly once; raises AssertionError naming what broke.
    Returns counts (scored, quarantined, carried, nights)."""
    from licanom.ops.nightly import LEDGER, STAGING
    from licanom.ops.scoring_state import STATE_FILE, load_state, state_dir

    st = load_state(v.out, v.name)
    assert st.exists, "no state"
    entries: Counter[int] = Counter()
    fates: Counter[str] = Counter()
    nights = published(v.out, v.name)
    for n in nights:
        ledger = pl.read_parquet(n / LEDGER).filter(pl.col("fate") != "carried")
        entries.update(ledger["Id"].to_list())
        fates.update(ledger["fate"].to_list())
        assert (n / "chunks.parquet").exists() and (n / "quarantine.parquet").exists(), n
    tail = set(st.tail["Id"].to_list())
    twice = [i for i, c in entries.items() if c > 1]
    assert not twice, f"Ids in two nights: {twice[:10]}"
    both = tail & set(entries)
    assert not both, f"Ids both carried and published: {sorted(both)[:10]}"
    w = st.watermark
    assert w is not None
    for i in log_ids:
        if i <= w:
            assert (i in entries) != (i in tail), f"Id {i} (<= watermark {w}) in no night and not carried"
        elif i in st.ahead:
            assert entries[i] == 1, f"far-beyond Id {i} not quarantined once"
        else:
            assert i not in entries and i not in tail, f"Id {i} beyond the watermark {w} already taken"
    # the state: one committed generation, nothing half-written, no staged night left
    d = state_dir(v.out, v.name)
    assert not (d / f"{STATE_FILE}.tmp").exists(), "a stray state.json.tmp"
    gens = [p.name for p in d.iterdir() if p.name.startswith("g-")]
    assert gens == [f"g-{st.generation:08d}"], gens
    staging = v.out / v.name / "nights" / STAGING
    assert not staging.exists() or not any(staging.iterdir()), list(staging.iterdir())
    # MLflow: no RUNNING nightly run; one FINISHED run per published night
    if tracker is not None:
        exp = tracker.client.get_experiment_by_name(tracker.nightly_experiment_name(v.name))
        runs = tracker.client.search_runs([exp.experiment_id], filter_string="tags.`licanom.kind` = 'nightly'") \
            if exp else []
        running = [r.info.run_id for r in runs if r.info.status == "RUNNING"]
        assert not running, f"orphan RUNNING runs {running}"
        finished = Counter(r.data.tags.get("licanom.night") for r in runs if r.info.status == "FINISHED")
        finished.pop("", None)
        assert finished == Counter(n.name for n in nights), (finished, [n.name for n in nights])
    return {"scored": fates["scored"], "quarantined": fates["quarantined"], "carried": len(tail),
            "nights": len(nights)}


# --- kill a night -----------------------------------------------------------------------

_CONTEXT = None


def context() -> multiprocessing.context.BaseContext:
    """Processes forked from a server that has imported licanom and registered its detectors once
    (tests/night_child.py: fast, and fork-safe: the server never ran polars or torch threads)."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tests.night_child", "licanom.ops.nightly", "licanom.ops.bundle", "licanom.detectors.context",
                                    "licanom.data.pipeline", "mlflow", "sqlalchemy",
                                    # what a night imports on its way (seconds each, per child):
                                    # the configuration's model names (torch), the report's plots
                                    "licanom.config", "licanom.detectors.autoencoders.nets", "licanom.report.plots"])
        _CONTEXT = ctx
    return _CONTEXT


def killed_night(v: NightVendor, crash_at: str, timeout: float = 300) -> int | None:
    """Run a night in a child process that SIGKILLs itself at ``crash_at``; its exit code
    (-9 when killed there, 0 when the night never reached that point)."""
    from tests.night_child import night_in_child

    p = context().Process(target=night_in_child, args=(str(v.root), v.name, str(v.model_dir), crash_at))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        raise AssertionError(f"night did not end within {timeout} s (crash point {crash_at})")
    return p.exitcode


def state_json(v: NightVendor) -> dict[str, object]:
    from licanom.ops.scoring_state import STATE_FILE, state_dir

    return json.loads((state_dir(v.out, v.name) / STATE_FILE).read_text())


# --- the fault-injection loop --------------------------------------------------------------

def _batch(first: int, n: int, seed: int) -> pl.DataFrame:
    """n rows from Id ``first``: one of them quarantined (an unknown state code)."""
    frame = rows(first, n, seed=seed)
    return frame.with_columns(pl.when(pl.int_range(pl.len()) == n // 2).then(pl.lit("5555"))
                              .otherwise(pl.col("State")).alias("State"))


def run_kill_points(root: Path, points: tuple[str, ...] | list[str], per_night: int = 33,
                    bundle: ModelBundle | None = None, trained_to: int = 1599) -> dict[str, int]:
    """For each crash point: new rows, a night killed there, new rows, a night run through; the
    ledger checked after each. One vendor throughout, so the crashes pile up on one history.
    Returns counts: kill points tried, nights killed, rows in the log, nights published."""
    v = new_vendor(root, "acme", bundle)
    v.start(trained_to)
    tracker = tracker_for(root)
    next_id, ids, killed = trained_to + 1, [], 0
    far = 2**40  # a far-beyond Id in the first night: quarantined once, through every crash
    for i, point in enumerate(points):
        batch = _batch(next_id, per_night, seed=i)
        if i == 0:  # its one bad row is the far Id: 1 of 34 is under max_bad_fraction, killed early or late
            batch = pl.concat([rows(next_id, per_night, seed=i), rows(far, 1, start=T0)])
            ids.append(far)
        v.append(batch)
        ids += range(next_id, next_id + per_night)
        next_id += per_night
        before = {r.info.run_id for r in _runs(tracker)}
        code = killed_night(v, point)
        assert code == -signal.SIGKILL, f"the night did not reach crash point {point} (exit {code})"
        killed += 1
        v.append(_batch(next_id, per_night, seed=1000 + i))
        ids += range(next_id, next_id + per_night)
        next_id += per_night
        night = v.night(tracker)
        assert night.rows_read > 0, point
        try:
            check_ledger(v, ids, tracker)
            new = [r for r in _runs(tracker) if r.info.run_id not in before]
            assert sorted(r.info.status for r in new) == expected_runs(point), [r.info.status for r in new]
            for r in new:
                if r.info.status == "FAILED":
                    assert "killed" in r.data.tags["licanom.outcome"]
        except AssertionError as err:
            raise AssertionError(f"after a kill at {point}: {err}") from err
    # a last, quiet night: everything read is accounted for
    night = v.night(tracker)
    counts = check_ledger(v, ids, tracker)
    assert night.rows_read == 0 and counts["scored"] + counts["carried"] + counts["quarantined"] == len(ids)
    return {"kill_points": len(points), "killed": killed, "rows": len(ids), "nights": len(published(v.out, "acme"))}


def _runs(tracker: Tracker) -> list:  # type: ignore[type-arg]
    exp = tracker.client.get_experiment_by_name("licanom/acme/nightly")
    return tracker.client.search_runs([exp.experiment_id]) if exp else []


def expected_runs(point: str) -> list[str]:
    """The MLflow runs of a killed night and its rerun: none for the killed one before its run
    started; FAILED (marked by the rerun) until the commit; FINISHED (by the rerun) after it."""
    from licanom.ops.scoring_state import CRASH_POINTS

    at = CRASH_POINTS.index(point)
    if at < CRASH_POINTS.index("log:run-started"):
        return ["FINISHED"]
    if at < CRASH_POINTS.index("after:commit"):
        return ["FAILED", "FINISHED"]
    return ["FINISHED", "FINISHED"]
