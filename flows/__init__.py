"""Prefect flows: they only wire tasks together."""

import licanom  # noqa: F401 - licanom's settings (licanom.settings) before Prefect reads its own
