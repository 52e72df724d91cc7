"""What the child process of a killed night runs (tests/night_harness.py::killed_night).

The fork server imports this module once, before it forks any child: importing it registers
licanom's detectors (which imports their modules, Lightning among them), so that each child
starts with them imported instead of importing them itself (seconds per kill point).
"""

from __future__ import annotations

import os
from pathlib import Path

from licanom.detectors import registry

registry.names()


def night_in_child(root: str, name: str, model_dir: str, crash_at: str) -> None:
    from tests.night_harness import NightVendor

    os.environ["LICANOM_CRASH_AT"] = crash_at
    NightVendor(root=Path(root), name=name, model_dir=Path(model_dir)).night()
