"""Pseudonyms for the personal columns of a licensing log (thesis 3.2), keyed per vendor.

With ``privacy.pseudonymise: true`` a vendor's licence keys, IP addresses, machine codes and
machines' friendly names are replaced by keyed hashes (HMAC-SHA256 with the vendor's secret, 16
hex digits and a prefix naming the column) right after the country is looked up from the real
address and before a vocabulary is built. Everything that reaches MLflow (vocabulary, model bundle,
registered models, reports logged there) then holds pseudonyms only; equal values keep equal
pseudonyms, so the encoding, the summary vectors and the detectors work as before. Scoring
pseudonymises the new rows with the same secret. The vendor's own report on local disk is
drawn from the real rows and still shows the real values.

The secret never sits in a file: it is read from the environment variable named by
``privacy.secret_env`` (default ``LICANOM_PSEUDONYM_SECRET_<VENDOR>``, the vendor name in
upper case with ``-`` as ``_``); the Prefect tasks may fetch it from a Secret block and set it.
Rotating the secret changes every pseudonym: retrain after rotating it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from licanom.config import Config

# Columns that identify a customer or a machine, and the prefix of their pseudonyms (FriendlyName:
# the name a customer gave a machine, often a user's e-mail address or a host name).
PRIVATE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Key", "k-"), ("IP", "ip-"), ("MachineCode", "m-"), ("FriendlyName", "fn-"))


class MissingSecretError(RuntimeError):
    """Pseudonymisation is on but the vendor's secret is not in the environment."""


class PrivacyMismatchError(MissingSecretError):
    """Pseudonymisation is on but the vendor's champion was trained without it: its night would send
    real keys, addresses and machine codes to MLflow (a configuration error, as a missing secret is)."""


def check_champion_privacy(cfg: Config, pseudonym_env: str | None, version: str) -> None:
    """Refuse a night whose configuration asks for pseudonyms that its champion (``version``, trained
    with ``pseudonym_env``, None: without pseudonymisation) cannot give: one line, before anything
    is read. A champion trained with them while the configuration no longer asks still pseudonymises
    (its vocabulary holds pseudonyms)."""
    if cfg.privacy.pseudonymise and pseudonym_env is None:
        raise PrivacyMismatchError(
            f"vendor {cfg.vendor!r}: privacy.pseudonymise is on, but its champion (version {version}) was trained "
            "without it, so its nights would send real keys, addresses and machine codes to MLflow: train the "
            f"vendor again (licanom run train --vendor {cfg.vendor}) before scoring; nothing was read")


def secret_env_name(vendor: str, configured: str | None = None) -> str:
    """The environment variable that holds the vendor's pseudonym secret."""
    return configured or "LICANOM_PSEUDONYM_SECRET_" + vendor.upper().replace("-", "_")


def secrets_needed(cfg: Config) -> tuple[tuple[str, str], ...]:
    """(environment variable, what) of each secret the vendor's settings need: the Cryptolens
    token of an HTTP source, the pseudonym secret when pseudonymisation is on."""
    needed = []
    if cfg.source.kind == "cryptolens":
        needed.append((cfg.source.token_env, "cryptolens-token"))
    if cfg.privacy.pseudonymise:
        needed.append((secret_env_name(cfg.vendor, cfg.privacy.secret_env), "pseudonym-secret"))
    return tuple(needed)


def require_secrets(cfg: Config, elsewhere: Callable[[str], str] | None = None) -> None:
    """Refuse, before anything is read, a vendor whose settings need a secret that the environment
    lacks (:func:`secrets_needed`; the pseudonym secret also needs 16 characters, spaces aside): one
    line naming the variable and, with ``elsewhere`` (what -> where else it may come from, e.g. a
    Prefect Secret block's name, which fills the variable when it is unset), that place too. Raises
    :class:`MissingSecretError`."""
    for env, what in secrets_needed(cfg):
        value = os.environ.get(env, "").strip()
        short = what == "pseudonym-secret" and 0 < len(value) < 16
        if value and not short:
            continue
        setting = ("source.token_env (source.kind: cryptolens)" if what == "cryptolens-token"
                   else "privacy.pseudonymise")
        block = f" (nor the Prefect Secret block {elsewhere(what)})" if elsewhere is not None else ""
        state = "holds fewer than 16 characters" if short else f"is not set{block}"
        raise MissingSecretError(f"vendor {cfg.vendor!r} needs its {what.replace('-', ' ')} ({setting}), but the "
                                 f"environment variable {env} {state}: set it; nothing was read")


def read_secret(vendor: str, configured: str | None = None) -> bytes:
    name = secret_env_name(vendor, configured)
    value = os.environ.get(name, "")
    if len(value) < 16:
        raise MissingSecretError(
            f"privacy.pseudonymise is on for vendor {vendor!r} but the environment variable {name} "
            "is not set to a secret of at least 16 characters (set it, or a Prefect Secret block)"
        )
    return value.encode()


def pseudonym(value: str, secret: bytes, prefix: str = "") -> str:
    return prefix + hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:16]


def pseudonymise(frame: pl.DataFrame, secret: bytes) -> pl.DataFrame:
    """The frame with its private columns replaced by pseudonyms (nulls and "" kept as they are).

    Each distinct value is hashed once; 16 hex digits (64 bits) make collisions between a
    vendor's values vanishingly rare.
    """
    replaced = []
    for column, prefix in PRIVATE_COLUMNS:
        if column not in frame.columns:
            continue
        text = frame[column].cast(pl.String)
        distinct = text.unique().drop_nulls().to_list()
        mapping = {v: (pseudonym(v, secret, prefix) if v else v) for v in distinct}
        replaced.append(text.replace_strict(mapping, default=None, return_dtype=pl.String).alias(column))
    return frame.with_columns(replaced) if replaced else frame


def reveal(frame: pl.DataFrame, pseudonymous_rows: pl.DataFrame, real_rows: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the pseudonyms in its text columns put back to the real values, read from
    the same rows pseudonymised and real (matched by ``Id``): what a model that works on
    pseudonyms found, named for the vendor who owns the values. Nothing is computed from the
    secret; a pseudonym absent from the rows stays as it is."""
    pairs = []
    for column, _ in PRIVATE_COLUMNS:
        if column in pseudonymous_rows.columns and column in real_rows.columns:
            pairs.append(
                pseudonymous_rows.select("Id", pl.col(column).cast(pl.String).alias("pseudonym"))
                .join(real_rows.select("Id", pl.col(column).cast(pl.String).alias("real")), on="Id")
                .filter(pl.col("pseudonym") != pl.col("real"))
                .select("pseudonym", "real")
            )
    text = [c for c, t in frame.schema.items() if t == pl.String]
    if not pairs or not text or frame.height == 0:
        return frame
    mapping = pl.concat(pairs).unique("pseudonym")  # 16 hex digits after a prefix: none is part of another
    if mapping.height == 0:
        return frame
    return frame.with_columns(pl.col(c).str.replace_many(mapping["pseudonym"].to_list(), mapping["real"].to_list()) for c in text)
