"""`licanom run score|train|nightly`: run one flow now, from a terminal or cron.

With PREFECT_API_URL set, the Prefect server must answer first: the API is asked with urllib3's
back-off (tasks.api.wait_for_api) and, if it never answers, the run stops before touching any data,
with one line naming the server and exit code 4 (the same as an unreachable log source). With
no PREFECT_API_URL, Prefect's temporary API is started at once, in a thread, while the flows are
imported (flows.early_api); if it does not start, one line and exit code 4 too.

Without --vendor, score and train take the demo vendor only where it is the only one configured, and
say so; with other vendors they are refused, listing them (a forgotten --vendor scored the demo).
An unknown vendor or a configuration error (for nightly, of conf/defaults.yaml, which every vendor's
starts from, or no vendor in conf/vendors/) is refused first, in one line, with exit code 2; a flow that fails on its input ends
with one line and the exit code `licanom prepare` gives (3: the log cannot be used, 4: it cannot be
read; 2: a missing secret, no champion to score with), one whose MLflow tracking server cannot be
reached with one line naming its URI and exit code 4, as for Prefect's API; nightly, whose vendors
fail apart, with the code their failures share (each as `licanom run score` would end for it), 1
where they differ; any other failure with one line naming its state and exit code 1. Ctrl-C, SIGTERM
or a closed terminal ends it with one line and the shell's code for the signal (130, 143, 129), the
flow run marked crashed (a training interrupted mid-epoch carries on from its checkpoint when run
again).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_UNREACHABLE = 4
# what each flow imports on its first call (clustering, MLflow's SQL store, the report's figures):
# imported while Prefect's temporary server is still starting (flows.early_api)
FIRST_CALL_IMPORTS = {
    "train": ("sklearn.mixture", "mlflow.store.tracking.sqlalchemy_store", "licanom.report.plots"),
    "score": ("mlflow.store.tracking.sqlalchemy_store", "licanom.report.plots"),
}
FIRST_CALL_IMPORTS["nightly"] = FIRST_CALL_IMPORTS["score"]


class Interrupted:
    """The handler of SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) while a command runs
    a flow: remembers which came, then raises KeyboardInterrupt as Python's own SIGINT handler does,
    so that Prefect records the run's crash and the process exits through ``atexit``, where Prefect
    stops its temporary server (in a session of its own, flows.early_api). Inside a training,
    Lightning turns the KeyboardInterrupt into ``sys.exit(1)``: ``signum`` tells that apart from a
    real exit. While a flow runs, Prefect's own SIGTERM handler stands in front of this one: it
    records the crash, puts this one back and sends SIGTERM again, which lands here.

    A second signal while the process winds down is ignored, so that it cannot cut ``atexit`` short
    and leave the server running; SIGKILL (``kill -9``) still ends the process at once, and then
    leaves the server, as it did before for a process killed alone."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.flow_started = False

    @property
    def seen(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)  # as a shell reports a command a signal ended

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        raise KeyboardInterrupt

    @classmethod
    @contextmanager
    def installed(cls) -> Iterator[Interrupted]:
        """The handler, for each signal that has its default action (not where one is ignored: nohup,
        a background job) or an earlier one of these; the previous handlers back afterwards, unless
        a signal came (the process is winding down). Outside the main thread, installed for none."""
        handler = cls()
        previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in cls.SIGNALS:
                current = signal.getsignal(signum)
                if current in (signal.default_int_handler, signal.SIG_DFL) or isinstance(current, cls):
                    previous[signum] = current
                    signal.signal(signum, handler)
        try:
            yield handler
        finally:
            if not handler.seen:
                for signum, old in previous.items():
                    signal.signal(signum, old)  # type: ignore[arg-type]


def _interrupted(flow: str, interrupt: Interrupted, state=None) -> int:  # type: ignore[no-untyped-def]
    """One line for an interrupted command: what became of the flow run."""
    assert interrupt.signum is not None
    if not interrupt.flow_started:
        what = "nothing was run"
    elif state is not None and not state.is_crashed():
        what = f"its run ended {state.type.value.lower()}"
    else:
        what = "its run is marked crashed"
    with contextlib.suppress(OSError):  # a terminal that hung up (SIGHUP) takes no more lines
        print(f"licanom: {flow} flow interrupted ({signal.Signals(interrupt.signum).name}); {what}", file=sys.stderr)
    return interrupt.exit_code


def main(argv: list[str] | None = None) -> int:
    """`licanom run`: its standard output and error outlive their readers
    (:class:`licanom.cli.ReaderMayGo`), set before Prefect is imported, whose console handler takes
    standard error as it finds it: a reader of the logs or the summary that goes away (`licanom run
    score ... 2>&1 | head -1`) must not end a night half way (rich, which that handler writes with,
    exits on a broken pipe)."""
    from licanom.cli import ReaderMayGo

    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = ReaderMayGo(stdout), ReaderMayGo(stderr)  # type: ignore[assignment]
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def build_parser() -> argparse.ArgumentParser:
    """`licanom run`'s parser: one sub-command per flow, each with its own options and --help.
    The options may come before the flow as well (`licanom run --vendor demo score`, as cron lines
    written for the single parser have them): the top level holds them with their defaults, a
    flow's own copies default to nothing (argparse.SUPPRESS), so that one given after the flow
    wins and one given before it is not overwritten by the flow's default."""
    from licanom.cli import NON_NEGATIVE, POSITIVE, Parser, iso_time, model_names, vendor_name
    from licanom.detectors.catalog import AUTOENCODERS

    api_attempts = int(os.environ.get("LICANOM_API_ATTEMPTS", "6"))
    api_help = "times to ask an unreachable Prefect API (PREFECT_API_URL) with back-off"
    vendor_help = ("the vendor, with a file conf/vendors/<vendor>.yaml or .yml (default: demo where it is the only "
                   "vendor; needed otherwise)")
    since_help = "re-score the rows after this log Id (default: after the watermark)"
    until_help = ("train on the rows logged before this time, an ISO 8601 date or time such as 2024-05-01 or "
                  "2024-05-01T02:00 (UTC unless it has an offset) (default: every row the source has)")
    models_help = ("the variants to train instead of the vendor's train.models: a model name, several separated by "
                   f"commas (the first is the champion), 'all' (the {len(AUTOENCODERS)} autoencoders), 'sequence' or "
                   "'auto' (default: as configured)")

    parser = Parser(prog="licanom run", description="Run one licanom flow now (Prefect), as a schedule would.")
    parser.add_argument("--vendor", type=vendor_name, default=None,
                        help="score and train: " + vendor_help + "; nightly scores every vendor and takes none")
    parser.add_argument("--since", type=NON_NEGATIVE, default=None, help="score: " + since_help)
    parser.add_argument("--until", type=iso_time, default=None, help="train: " + until_help)
    parser.add_argument("--models", type=model_names, default=None, help="train: " + models_help)
    parser.add_argument("--api-attempts", type=POSITIVE, default=api_attempts, help=api_help)
    sub = parser.add_subparsers(dest="flow", required=True, metavar="FLOW", parser_class=Parser)

    def flow(name: str, help: str, description: str, vendor: bool, since: bool, train: bool = False) -> None:
        p = sub.add_parser(name, help=help, description=description)
        p.add_argument("--vendor", type=vendor_name, default=argparse.SUPPRESS,
                       help=vendor_help if vendor else argparse.SUPPRESS)  # refused in _main, in words
        p.add_argument("--since", type=NON_NEGATIVE, default=argparse.SUPPRESS,
                       help=since_help if since else argparse.SUPPRESS)
        p.add_argument("--until", type=iso_time, default=argparse.SUPPRESS,
                       help=until_help if train else argparse.SUPPRESS)
        p.add_argument("--models", type=model_names, default=argparse.SUPPRESS,
                       help=models_help if train else argparse.SUPPRESS)
        p.add_argument("--api-attempts", type=POSITIVE, default=argparse.SUPPRESS,
                       help=f"{api_help} (default: {api_attempts})")

    flow("score", "score the vendor's new rows with its champion",
         "Score a vendor's new rows (after its watermark) with its champion model, now.", vendor=True, since=True)
    flow("train", "retrain the vendor's variants",
         "Retrain a vendor's variants (train.models, or --models) and register them, now.", vendor=True, since=False,
         train=True)
    flow("nightly", "score every vendor",
         "Score every vendor of conf/vendors/, each in its own score flow run, now.", vendor=False, since=False)
    return parser


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.flow == "nightly" and args.vendor is not None:  # it would score every vendor, not this one
        parser.error(f"nightly scores every vendor of conf/vendors/ and takes no --vendor; for {args.vendor} alone: "
                     f"licanom run score --vendor {args.vendor}")
    if args.flow != "score" and args.since is not None:
        parser.error(f"--since is for score (re-score one vendor's rows after an Id); {args.flow} takes none")
    for option, what in (("until", "train on the rows before a time"), ("models", "train other variants")):
        if args.flow != "train" and getattr(args, option) is not None:
            parser.error(f"--{option} is for train ({what}); {args.flow} takes none")
    if args.flow != "nightly" and args.vendor is None:
        args.vendor = _default_vendor(parser, args.flow)
    with Interrupted.installed() as interrupt:
        try:
            state = _run(args, interrupt)
        except (KeyboardInterrupt, SystemExit):
            if not interrupt.seen:
                raise
            return _interrupted(args.flow, interrupt)
    if isinstance(state, int):
        return state
    if interrupt.seen and not state.is_completed():  # caught inside the flow and recorded as its end
        return _interrupted(args.flow, interrupt, state)
    if state.is_completed():
        return 0
    known = _input_failure(state)
    if known is not None:  # the same exit code and line as `licanom prepare` gives for it
        code, line = known
        print(f"licanom: {args.flow} flow failed: {line}", file=sys.stderr)
        return code
    message = (state.message or "").splitlines()
    print(f"licanom: {args.flow} flow {state.type.value.lower()}: {message[0] if message else ''}", file=sys.stderr)
    return 1


def _default_vendor(parser: argparse.ArgumentParser, flow: str) -> str:
    """The vendor of score or train without --vendor: the demo where it is the only vendor (a fresh
    checkout), said in one line; else a usage error listing the vendors. The demo was taken whatever
    else was configured: a cron line without --vendor scored the demo every night, in silence."""
    from licanom.config import list_vendors

    known = list_vendors()
    if known == ["demo"]:
        print(f"licanom run {flow}: vendor demo, the only one in conf/vendors/ (--vendor V for another)")
        return "demo"
    parser.error(f"{flow} needs --vendor V: vendors: "
                 + (", ".join(known) if known else "none yet (add conf/vendors/<vendor>.yaml)"))


def _run(args: argparse.Namespace, interrupt: Interrupted):  # type: ignore[no-untyped-def]
    """The flow's final state, or an exit code when the vendor's configuration is wrong or Prefect's
    API cannot be reached."""
    from licanom.cli import EXIT_USAGE
    from licanom.config import VendorConfigError, check_defaults, require_vendors, vendor_config

    try:  # a configuration error is one line here, not a failed flow run
        if args.flow != "nightly":
            vendor_config(args.vendor)
        else:  # every vendor's starts from conf/defaults.yaml: a slip there would fail each vendor in turn
            check_defaults()
            require_vendors()  # and no vendor at all: a night that scored nothing would end with 0
    except VendorConfigError as err:
        print(f"licanom: {err}", file=sys.stderr)
        return EXIT_USAGE

    from tasks.api import wait_for_api

    problem = wait_for_api(args.api_attempts)
    if problem:
        print(f"licanom: {problem}; nothing was run", file=sys.stderr)
        return EXIT_UNREACHABLE

    from flows.early_api import start_early

    api = start_early()  # no PREFECT_API_URL: the temporary server comes up while the flows import
    from flows.console import quiet_expected_tracebacks
    from flows.naming import tagged

    quiet_expected_tracebacks()
    from flows.nightly import nightly
    from flows.score_vendor import score_vendor
    from flows.train_vendor import train_vendor

    try:
        api.wait(FIRST_CALL_IMPORTS[args.flow])
    except Exception as err:  # noqa: BLE001 - whatever stopped Prefect's server: one line, nothing run
        from licanom.cli import one_line

        print(f"licanom: Prefect's temporary API did not start ({one_line(err)}); nothing was run", file=sys.stderr)
        return EXIT_UNREACHABLE
    interrupt.flow_started = True
    if args.flow == "score":
        with tagged(args.vendor):
            state = score_vendor(args.vendor, since=args.since, return_state=True)
    elif args.flow == "train":
        with tagged(args.vendor):
            state = train_vendor(args.vendor, **_train_arguments(args), return_state=True)
    else:
        state = nightly(return_state=True)
    return state


def _train_arguments(args: argparse.Namespace) -> dict[str, object]:
    """The training flow's ``until`` and ``models`` from `licanom run train`'s options (None: the
    flow's own, every row and the vendor's train.models)."""
    return {"until": args.until, "models": args.models.split(",") if args.models is not None else None}


def _input_failure(state) -> tuple[int, str] | None:  # type: ignore[no-untyped-def]
    """A flow that failed on its input: 3 when the log cannot be used, 4 when it cannot be read or the
    MLflow tracking server cannot be reached (as an unreachable Prefect API), 2 when a secret its
    configuration needs is missing or the vendor has no champion to score with; a nightly run whose
    vendors failed, theirs (licanom.cli.failure_exit)."""
    from licanom.cli import failure_exit

    try:
        err = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - no result to read (a crashed run): the state's message says it
        return None
    return failure_exit(err)


if __name__ == "__main__":
    sys.exit(main())
