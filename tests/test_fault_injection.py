"""Fault injection: a night killed with SIGKILL at every crash point (after each step and inside
the writes, licanom.ops.scoring_state.CRASH_POINTS), then run again with new rows; after every rerun the
ledger holds: every Id of the log in exactly one published night (scored or quarantined) or in
the carried tail, none twice, one committed state generation and nothing half-written, no
RUNNING MLflow run, one FINISHED run per published night.

The killed night runs in a child process (forked from a server that imported licanom once) that
kills itself with SIGKILL at the named point: nothing of the night's own cleanup runs, as with
``kill -9``. Small here (one vendor, a few dozen rows a night); ``make bench-faults`` runs the
same at full size.
"""

from __future__ import annotations

from licanom.ops.scoring_state import CRASH_POINTS
from tests.night_harness import run_kill_points


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


def test_a_night_killed_at_any_point_loses_skips_or_doubles_no_row(tmp_path) -> None:
    """Among them the issue's probes: killed after the night's folder is written (after:stage),
    after its MLflow run starts (log:run-started), between the state's files and state.json
    (commit:generation, commit:state-half, commit:state-tmp)."""
    counts = run_kill_points(tmp_path, CRASH_POINTS)
    assert counts["killed"] == len(CRASH_POINTS) == counts["kill_points"]
