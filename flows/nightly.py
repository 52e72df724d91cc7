"""Flow: score every configured vendor, each in its own flow run; failures are reported.

``runner`` picks how the vendors fan out:

- ``sequential`` (default): one after another, each a child flow run of this one;
- ``threads``: ``workers`` vendors at a time in threads of this process (default: two per CPU, as
  a vendor's night waits on the Prefect and MLflow servers for much of its time:
  benchmarks/results/fixed-costs.md: 100 vendors on 2 CPUs in 99.8 s with 4 threads, 118.1 s
  with 2, medians of two rounds side by side);
- ``dask``: a local Dask cluster of ``workers`` processes (prefect-dask), for many vendors.

With ``threads`` and ``dask`` each vendor is a task (``score-<vendor>``) of a ``nightly-fan-out``
child flow run that holds the task runner; the task (tasks.vendors.score_one) runs the ``score-vendor`` flow, so every
vendor is still its own flow run. Either way a failing vendor does not stop the others, and the
nightly run fails at the end, naming the vendors that failed.
"""

from __future__ import annotations

import os
from typing import Literal

from prefect import flow, unmapped
from prefect.states import Failed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.naming import run_name, tagged
from flows.score_vendor import score_vendor
from flows.states import refused
from licanom.config import VendorConfigError
from tasks import vendors

Runner = Literal["sequential", "threads", "dask"]


THREADS_PER_CPU = 2  # the threads runner's default: vendors at once per CPU


def default_workers(runner: Runner) -> int:
    """Vendors at once when ``workers`` is not given: two per CPU in threads, one per CPU in Dask."""
    cpus = os.cpu_count() or 2
    return THREADS_PER_CPU * cpus if runner == "threads" else cpus


def task_runner(runner: Runner, workers: int | None = None) -> TaskRunner:  # type: ignore[type-arg]
    """Threads of this process, or a local Dask cluster of single-threaded worker processes."""
    n = workers or default_workers(runner)
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=n)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(cluster_kwargs={
            "n_workers": n, "threads_per_worker": 1, "processes": True,
            "host": "127.0.0.1", "dashboard_address": None,
        })
    raise ValueError(f"unknown runner {runner!r}: sequential, threads or dask")


@flow(name="nightly-fan-out", log_prints=True)
def fan_out(names: list[str]) -> list[tuple[str, str, str, int]]:
    return vendors.score_one.map(unmapped(score_vendor), names).result()


@flow(name="nightly", log_prints=True, flow_run_name=run_name("nightly"))
def nightly(runner: Runner = "sequential", workers: int | None = None) -> list[str]:
    """Score every vendor in conf/vendors/, each in its own score-vendor flow run (none there: the
    run fails with one line naming the folder).

    Args:
        runner: How vendors fan out: sequential (one after another), threads (in this process) or
            dask (a local Dask cluster of worker processes).
        workers: Vendors scored at once with threads or dask (empty: two per CPU with threads,
            one per CPU with dask).
    """
    # every vendor's settings start from conf/defaults.yaml: checked once, not failed by each vendor in turn
    checked = vendors.check_defaults()
    if isinstance(checked, VendorConfigError):  # one line, as score-vendor ends on its own configuration's error
        return refused(checked)  # type: ignore[return-value]
    names = vendors.list_vendors()
    if isinstance(names, VendorConfigError):  # no vendor: a scheduled run that scored nothing would succeed unnoticed
        return refused(names)  # type: ignore[return-value]
    print(f"nightly: scoring {len(names)} vendors ({', '.join(names)}) with the {runner} runner")
    if runner == "sequential":
        outcomes = []
        for vendor in names:
            with tagged(vendor):
                outcomes.append(vendors.vendor_outcome(vendor, score_vendor(vendor, return_state=True)))
    else:
        outcomes = fan_out.with_options(task_runner=task_runner(runner, workers))(names)
    report = vendors.report_nightly(outcomes)
    if report.failed:  # a failed state, not an exception: each vendor's own run holds its traceback
        return Failed(message=report.message, data=report.error)  # type: ignore[return-value]
    return list(report.lines)
