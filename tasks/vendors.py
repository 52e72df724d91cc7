"""Tasks about the set of vendors (library: licanom.config)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

from licanom import config
from licanom.data import privacy
from licanom.data.privacy import secrets_needed


P = ParamSpec("P")
R = TypeVar("R")


def secret_block_name(vendor: str, what: str) -> str:
    return f"licanom-{vendor}-{what}".replace("_", "-")


@task(cache_policy=NO_CACHE)
def secrets_from_blocks(cfg: config.Config) -> list[str]:
    """Fill in the secrets a vendor needs that the environment lacks from Prefect Secret blocks
    (``licanom-<vendor>-cryptolens-token``, ``licanom-<vendor>-pseudonym-secret``).

    The values go to this process's environment only; they are never returned or logged.
    Returns the names of the variables that were set.
    """
    import os

    from prefect.blocks.system import Secret

    filled = []
    for env, what in secrets_needed(cfg):
        if os.environ.get(env):
            continue
        try:
            value = Secret.load(secret_block_name(cfg.vendor, what)).get()
        except Exception:  # noqa: BLE001 - no such block (Prefect's error types vary by version)
            continue  # the library then says which variable is missing
        os.environ[env] = str(value)
        filled.append(env)
    return filled


@task(cache_policy=NO_CACHE)
def require_secrets(cfg: config.Config) -> None:
    """Refuse a vendor whose settings need a secret that neither the environment nor its Prefect
    Secret block holds, in one line naming both, before anything is read."""
    privacy.require_secrets(cfg, lambda what: secret_block_name(cfg.vendor, what))


def refusing(fn: Callable[P, R]) -> Callable[P, R | config.VendorConfigError]:
    """A task's configuration error (:class:`licanom.config.VendorConfigError`, exit code 2) as its
    value, returned rather than raised: the flow ends with it in one line (flows.states.refused).
    Raised, or returned as a failed state, it was logged by the task run twice at ERROR (the state's
    whole repr, then "Finished in state Failed") before the flow's end said it again. Any other
    error is raised, its traceback logged, and ends the flow as a bug does."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | config.VendorConfigError:
        try:
            return fn(*args, **kwargs)
        except config.VendorConfigError as err:
            return err
    return wrapper


@task(cache_policy=NO_CACHE)
@refusing
def vendor_config(vendor: str, overrides: dict[str, Any] | None = None) -> config.Config:
    """A vendor's settings for its flow run (licanom.config.vendor_config; ``overrides`` as a flow's
    parameters set them); unreadable or invalid, its error returned (:func:`refusing`), which a
    nightly run lists for the vendor."""
    return config.vendor_config(vendor, overrides=overrides)


@task(cache_policy=NO_CACHE)
@refusing
def check_defaults() -> None:
    """conf/defaults.yaml, which every vendor's settings start from, checked once before any vendor's
    run (licanom.config.check_defaults); missing or unreadable, its error returned (:func:`refusing`)."""
    config.check_defaults()


@task(cache_policy=NO_CACHE)
@refusing
def list_vendors() -> list[str]:
    """The vendors of conf/vendors/; a file there whose name is no vendor's, one warning naming it;
    none there (the folder empty or missing), its error returned, naming the folder
    (licanom.config.require_vendors, :func:`refusing`): a nightly run of no vendor would score
    nothing and succeed."""
    return config.require_vendors(warn=True)


@task(cache_policy=NO_CACHE)
def report_nightly(outcomes: list[tuple[str, str, str, int]]) -> config.NightlyOutcome:
    return config.report_outcomes(outcomes)


def vendor_outcome(vendor: str, state: Any) -> tuple[str, str, str, int]:
    """A vendor's score-vendor run as the nightly reports it: name, final state, message and exit
    code (0; that of an input, source or configuration failure, licanom.cli.failure_exit; else 1),
    so that `licanom run nightly` ends as `licanom run score` would for the vendor."""
    from licanom.cli import failure_exit

    if state.is_completed():
        return vendor, state.type.value, state.message or "", 0
    try:
        known = failure_exit(state.result(raise_on_failure=False))
    except Exception:  # noqa: BLE001 - no result to read (a crashed run): its message says what happened
        known = None
    return vendor, state.type.value, state.message or "", known[0] if known else config.OTHER_FAILURE


@task(cache_policy=NO_CACHE, task_run_name="score-{vendor}")
def score_one(score: Callable[..., Any], vendor: str) -> tuple[str, str, str, int]:
    """The per-vendor flow ``score`` (score-vendor) for one vendor, as a child flow run tagged
    with the vendor, so that a fan-out can run vendors side by side; its outcome (name, final
    state, message, exit code: :func:`vendor_outcome`), never raising: one vendor's failure does
    not stop the others."""
    from flows.naming import tagged

    with tagged(vendor):
        state = score(vendor, return_state=True)
    return vendor_outcome(vendor, state)
