"""Cryptolens Web API Log state codes: decoding and the codes licanom knows."""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import polars as pl


class MethodGroup(IntEnum):
    """The first two digits of a state code: which kind of method was called."""

    VALIDATION = 10
    ACTIVATION = 20
    KEY_GENERATION = 30
    OPTIONAL_FIELD = 40
    NO_REQUEST = 50
    DEACTIVATION = 60
    OTHER_LICENCE_CHANGE = 70
    DATA_OBJECT = 80


METHOD_GROUPS: tuple[int, ...] = tuple(int(g) for g in MethodGroup)
SUCCESS_DIGIT = 1
FAILURE_DIGIT = 2


def make_state(group: MethodGroup | int, success: bool, detail: int = 0) -> int:
    """Compose a 4-digit state: group (2 digits), 1/2 for success/failure, a detail digit."""
    if int(group) not in METHOD_GROUPS:
        raise ValueError(f"unknown method group {group!r}")
    if not 0 <= detail <= 9:
        raise ValueError(f"detail digit must be 0..9, got {detail}")
    return int(group) * 100 + (SUCCESS_DIGIT if success else FAILURE_DIGIT) * 10 + detail


def is_valid_state(state: pl.Expr) -> pl.Expr:
    """Polars expression: True where `state` is a 4-digit code of a known group and outcome."""
    group = state // 100
    outcome = (state // 10) % 10
    return (
        state.is_between(1000, 9999)
        & group.is_in(list(METHOD_GROUPS))
        & outcome.is_in([SUCCESS_DIGIT, FAILURE_DIGIT])
    )


def success_expr(state: pl.Expr) -> pl.Expr:
    """1 where the request succeeded, 0 where it failed (the thesis's `success` column)."""
    return (((state // 10) % 10) == SUCCESS_DIGIT).cast(pl.Int8)


def action_expr(state: pl.Expr) -> pl.Expr:
    """The thesis's `action`: the state without its outcome digit (group * 10 + detail)."""
    return ((state // 100) * 10 + state % 10).cast(pl.Int32)


def decode(state: int) -> tuple[MethodGroup, bool, int]:
    """Split one state code into (group, success, detail); raises ValueError if unknown."""
    group, outcome, detail = state // 100, (state // 10) % 10, state % 10
    if not (1000 <= state <= 9999 and group in METHOD_GROUPS and outcome in (1, 2)):
        raise ValueError(f"unknown state code {state}")
    return MethodGroup(group), outcome == SUCCESS_DIGIT, detail


def decode_array(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised (success, action) for an integer array of valid states."""
    return ((states // 10) % 10 == SUCCESS_DIGIT).astype(np.int8), (states // 100) * 10 + states % 10
