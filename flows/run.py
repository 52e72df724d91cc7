"""`licanom run score|train|nightly`: run one flow now, from a terminal or cron.

With PREFECT_API_URL set, the Prefect server must answer first: the API is asked with back-off
(1, 2, 4, 8, 16 s by default) and, if it never answers, the run stops before touching any data,
with one line naming the server and exit code 4 (the same as an unreachable log source). With
no PREFECT_API_URL, Prefect's ephemeral API is used and nothing is asked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

EXIT_UNREACHABLE = 4


def wait_for_api(attempts: int = 6, first_delay: float = 1.0) -> str | None:
    """None once the configured Prefect API answers; else the reason it did not."""
    from prefect.client.orchestration import get_client

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return None
    delay, reason = first_delay, ""
    for attempt in range(attempts):
        async def check() -> Exception | None:
            async with get_client() as client:
                return await client.api_healthcheck()

        try:
            err = asyncio.run(check())
        except Exception as exc:  # noqa: BLE001 - any failure to connect counts the same
            err = exc
        if err is None:
            return None
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        if attempt + 1 < attempts:
            time.sleep(delay)
            delay *= 2
    return f"the Prefect API at {url} did not answer after {attempts} attempts ({reason})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="licanom run", description="run one licanom flow now")
    parser.add_argument("flow", choices=["score", "train", "nightly"])
    parser.add_argument("--vendor", default="demo")
    parser.add_argument("--since", type=int, default=None, help="score: re-score the rows after this Id")
    parser.add_argument("--api-attempts", type=int, default=int(os.environ.get("LICANOM_API_ATTEMPTS", "6")))
    args = parser.parse_args(argv)

    problem = wait_for_api(args.api_attempts)
    if problem:
        print(f"licanom: {problem}; nothing was run", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.flow == "score":
        from flows.score_vendor import score_vendor

        state = score_vendor(args.vendor, since=args.since, return_state=True)
    elif args.flow == "train":
        from flows.train_vendor import train_vendor

        state = train_vendor(args.vendor, return_state=True)
    else:
        from flows.nightly import nightly

        state = nightly(return_state=True)
    if state.is_completed():
        return 0
    print(f"licanom: {args.flow} flow {state.type.value.lower()}: {state.message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
