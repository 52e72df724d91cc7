"""Prefect tasks: each wraps one licanom library call."""

import licanom  # noqa: F401 - licanom's settings (licanom.settings) before Prefect reads its own
