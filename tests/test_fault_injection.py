"""Fault injection: a night killed with SIGKILL at a crash point (after a step or inside the
writes, licanom.ops.scoring_state.CRASH_POINTS), then run again with new rows; after every rerun the
ledger holds: every Id of the log in exactly one published night (scored or quarantined) or in
the carried tail, none twice, one committed state generation and nothing half-written, no
RUNNING MLflow run, one FINISHED run per published night.

The killed night runs in a child process (forked from a server that imported licanom once) that
kills itself with SIGKILL at the named point: nothing of the night's own cleanup runs, as with
``kill -9``. Here a sample of the points on a small vendor (a few dozen rows a night): one point
of each kind, covering the three outcomes for the night's MLflow runs. ``make bench-faults`` kills
a larger vendor at every point, twice over (docs/testing.md).
"""

from __future__ import annotations

from licanom.ops.scoring_state import CRASH_POINTS
from tests.night_harness import expected_runs, run_kill_points

# One point of each kind, and between them each of the three outcomes for the night's MLflow
# runs; three of them are the probes: killed after the night's folder is written
# (after:stage), after its MLflow run starts (log:run-started), between the state's files and
# state.json (commit:state-half). test_flow_faults.py kills the flow itself at commit:state-tmp;
# `make bench-faults` kills at every point.
SAMPLE = ("after:stage", "stage:ledger", "log:run-started", "commit:state-half", "publish:renamed")


def test_every_crash_point_is_reached_by_a_night() -> None:
    """The flow's tasks and the library's night pass the same points (CRASH_POINTS)."""
    import inspect

    import flows.score_vendor
    import licanom.ops.nightly
    import licanom.ops.scoring_state
    import tasks.data
    import tasks.scoring

    source = "".join(inspect.getsource(m) for m in (licanom.ops.nightly, licanom.ops.scoring_state, tasks.scoring, tasks.data))
    for point in CRASH_POINTS:
        assert f'crash_point("{point}")' in source, point
    assert "crash_point" not in inspect.getsource(flows.score_vendor)  # the flow only wires tasks


def test_the_sample_covers_every_kind_of_point_and_every_outcome() -> None:
    assert set(SAMPLE) <= set(CRASH_POINTS)
    assert {p.split(":")[0] for p in SAMPLE} == {p.split(":")[0] for p in CRASH_POINTS}
    assert {tuple(expected_runs(p)) for p in SAMPLE} == {tuple(expected_runs(p)) for p in CRASH_POINTS}


def test_a_night_killed_at_each_sampled_point_loses_skips_or_doubles_no_row(tmp_path) -> None:
    counts = run_kill_points(tmp_path, SAMPLE)
    assert counts["killed"] == len(SAMPLE) == counts["kill_points"]
