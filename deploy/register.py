"""Register licanom's deployments with a Prefect server, on a work pool (the team set-up).

Like `licanom serve` (flows/serve.py), one `score-<vendor>` (nightly cron) and one
`train-<vendor>` (weekly cron) deployment per vendor in conf/vendors/, plus `nightly/<name>` for
all vendors (no vendor there: refused in one line naming the folder, unless --only-nightly); but
here the deployments belong to a work pool, so a worker (`prefect worker start`) runs each flow
run in its own process, and no process has to stay up to serve them.
The code is taken from this project's folder (a local source: the worker's machine must see
the same path); for other infrastructure use a git source or an image (deploy/README.md).

Registering again updates the deployments in place. PREFECT_API_URL names the server.
A refusal (an unknown or unreadable vendor, no vendor, a bad option) is one line on stderr, nothing
registered, with exit code 2, as licanom's commands end wrong usage or configuration.

    python deploy/register.py --pool licanom-process
    python deploy/register.py --pool licanom-process --conf-dir /tmp/conf --only-nightly \\
        --nightly-name load --runner threads --workers 2 --no-schedules
    python deploy/register.py --delete --vendor demo
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import licanom  # noqa: E402,F401 - licanom's settings (licanom.settings) before Prefect reads its own


def refuse(line: str) -> SystemExit:
    """One line on stderr and the exit code of wrong usage or configuration that licanom's commands
    give (licanom.cli.EXIT_USAGE, 2), to raise; SystemExit(line) exited with 1, a failure's code."""
    from licanom.cli import EXIT_USAGE

    print(line, file=sys.stderr)
    return SystemExit(EXIT_USAGE)


def job_variables(conf_dir: Path | None, image: str | None, secret_env: list[str]) -> dict[str, object]:
    """The pool's job variables for these deployments: env (secrets as block references), image.

    ``NAME=block`` in ``secret_env`` becomes ``{{ prefect.blocks.secret.block }}``: the worker
    reads the Secret block when it starts a flow run, so the value is never stored in the
    deployment nor in a file.
    """
    env: dict[str, str] = {}
    if conf_dir:
        env["LICANOM_CONF_DIR"] = str(conf_dir)
    for item in secret_env:
        name, _, block = item.partition("=")
        if not name or not block:
            raise refuse(f"register: --secret-env {item!r}: expected ENV_NAME=secret-block-name")
        env[name] = "{{ prefect.blocks.secret." + block + " }}"
    out: dict[str, object] = {"env": env} if env else {}
    if image:
        out["image"] = image
    return out


def build(pool: str, vendors: list[str] | None, conf_dir: Path | None, nightly_name: str,
          only_nightly: bool, no_nightly: bool, schedules: bool, runner: str | None, workers: int | None,
          source: str = str(ROOT), variables: dict[str, object] | None = None) -> list:  # type: ignore[type-arg]
    from prefect import flow
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.utilities.annotations import freeze

    from licanom.config import (VendorConfigError, describe_error, ignored_vendor_files, require_vendors,
                                unknown_vendor_message, vendor_config)

    job_variables = variables or {}
    names = vendors or []
    if not vendors and not only_nightly:  # no vendor: only a nightly deployment that scores nothing
        try:
            names = require_vendors(conf_dir)
        except VendorConfigError as err:
            raise refuse(f"register: {err}; nothing registered") from None
    if not vendors and not only_nightly and (ignored := ignored_vendor_files(conf_dir)):
        print(f"register: {ignored}", file=sys.stderr)
    out = []
    if not only_nightly:
        score = flow.from_source(source, "flows/score_vendor.py:score_vendor")
        train = flow.from_source(source, "flows/train_vendor.py:train_vendor")
        for vendor in names:
            if unknown := unknown_vendor_message(vendor, conf_dir):  # --vendor of no file: the defaults' deployments
                raise refuse(f"register: {unknown}; nothing registered")
            try:  # a vendor that cannot be read stops the registration, in one line, before any is registered
                schedule = vendor_config(vendor, conf_dir).schedule  # a files source without its path too, as serve
                crons = {kind: CronSchedule(cron=cron, timezone=schedule.timezone)
                         for kind, cron in (("score", schedule.score_cron), ("train", schedule.train_cron))}
            except VendorConfigError as err:  # names the vendor itself
                raise refuse(f"register: {err}; nothing registered") from None
            except ValueError as err:  # the schedule's cron or time zone
                raise refuse(f"register: vendor {vendor}: {describe_error(err)}; nothing registered") from None
            for f, kind in ((score, "score"), (train, "train")):
                out.append(f.to_deployment(  # the vendor frozen: read-only in the UI's form, enforced by the API
                    name=f"{kind}-{vendor}", parameters={"vendor": freeze(vendor)}, tags=["licanom", vendor],
                    schedules=[crons[kind]] if schedules else None,
                    concurrency_limit=1, work_pool_name=pool, job_variables=job_variables,
                ))
    if no_nightly:
        return out
    nightly = flow.from_source(source, "flows/nightly.py:nightly")
    params: dict[str, object] = {}
    if runner:
        params["runner"] = runner
    if workers:
        params["workers"] = workers
    out.append(nightly.to_deployment(
        name=nightly_name, parameters=params, tags=["licanom"], description="Score every vendor.",
        work_pool_name=pool, job_variables=job_variables,
    ))
    return out


def delete(names: list[str]) -> int:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    n = 0
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.delete_deployment(client.read_deployment_by_name(name).id)
                n += 1
            except ObjectNotFound:
                pass
    return n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="register licanom's deployments on a work pool")
    parser.add_argument("--pool", default=os.environ.get("LICANOM_POOL", "licanom-process"))
    parser.add_argument("--vendor", action="append", help="only these vendors (default: all in conf/vendors)")
    parser.add_argument("--conf-dir", type=Path, help="vendor configuration folder, passed to the flow runs "
                        "as LICANOM_CONF_DIR (default: the worker's)")
    parser.add_argument("--nightly-name", default="all-vendors")
    parser.add_argument("--only-nightly", action="store_true", help="register only nightly/<nightly-name>")
    parser.add_argument("--no-nightly", action="store_true", help="leave nightly/<nightly-name> out")
    parser.add_argument("--no-schedules", action="store_true", help="no cron schedules (runs by hand only)")
    parser.add_argument("--runner", choices=("sequential", "threads", "dask"), help="nightly's default runner")
    parser.add_argument("--workers", type=int, help="nightly's default number of parallel vendors")
    parser.add_argument("--source", default=str(ROOT), help="where the worker gets the code: this folder "
                        "(default) or a git URL (cloned by each flow run)")
    parser.add_argument("--image", help="container image for the flow runs (docker or kubernetes pools)")
    parser.add_argument("--secret-env", action="append", default=[], metavar="NAME=BLOCK",
                        help="environment variable NAME from the Prefect Secret block BLOCK, read by the worker")
    parser.add_argument("--delete", action="store_true", help="delete the vendors' (and the nightly) deployments")
    args = parser.parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        parser.error("PREFECT_API_URL is not set: it names the Prefect server (e.g. http://127.0.0.1:4300/api)")
    if args.conf_dir:
        args.conf_dir = args.conf_dir.resolve()

    if args.delete:
        from licanom.config import list_vendors

        vendors = [] if args.only_nightly else (args.vendor or list_vendors(args.conf_dir))
        names = [f"{flow}/{kind}-{v}" for v in vendors for flow, kind in
                 (("score-vendor", "score"), ("train-vendor", "train"))]
        if not args.no_nightly:
            names.append(f"nightly/{args.nightly_name}")
        print(f"deleted {delete(names)} deployments")
        return

    from prefect import deploy

    deployments = build(args.pool, args.vendor, args.conf_dir, args.nightly_name, args.only_nightly,
                        args.no_nightly, not args.no_schedules, args.runner, args.workers, args.source,
                        job_variables(args.conf_dir, args.image, args.secret_env))
    ids = deploy(*deployments, work_pool_name=args.pool, build=False, push=False,
                 print_next_steps_message=False, ignore_warnings=True)
    print(f"registered {len(ids)} deployments on work pool {args.pool}: "
          + ", ".join(f"{d.flow_name}/{d.name}" for d in deployments))


if __name__ == "__main__":
    main()
