"""Prefect tasks: each wraps one licanom library call."""
