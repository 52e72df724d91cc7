"""`make demo`: the main job on the demo vendor's generated log, with embedded defaults."""

from __future__ import annotations

import time

from flows.prepare_vendor import prepare_vendor
from licanom.cli import print_prepared


def main() -> None:
    t0 = time.perf_counter()
    prepared = prepare_vendor("demo", out_dir="out")
    print()
    print("demo vendor: simulated floating-licence log -> out/demo/prepared/")
    print_prepared(prepared, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
