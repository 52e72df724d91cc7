"""The data path of thesis 3.1 as plain functions: extract, validate, derive+encode, chunk+split.

Each step takes and returns polars frames or small frozen dataclasses; the Prefect tasks in
``tasks/`` call these one by one, and :func:`prepare` runs them all for the CLI and tests.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from licanom.data.chunk import Chunks, make_chunks, split_chunks
from licanom.data.columns import REQUIRED_RAW
from licanom.data.codes import TextCodes
from licanom.config import ChunkConfig, Config, EncodeConfig, SourceConfig, SplitConfig, ValidateConfig
from licanom.data.derive import derive, derive_coded
from licanom.data.encode import RowsEncoder, ThesisEncoder, Vocabulary, derive_fit_encode, get_encoder
from licanom.data.privacy import pseudonymise, read_secret
from licanom.data.validate import ValidationResult, check_bad_fraction, require_columns, validate_log

if TYPE_CHECKING:
    from licanom.data.extract.files import IdsBelow


@dataclass(frozen=True)
class Encoded:
    """The derived log with its feature columns, and the vocabulary that encoded it."""

    frame: pl.DataFrame
    vocabulary: Vocabulary
    # the integer codes of the frame's key, machine code, address and country where encoding
    # found them (the rows encoder), for the windows' summary
    codes: TextCodes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Prepared:
    """Everything the data path made for one vendor."""

    validation: ValidationResult
    encoded: Encoded
    chunks: Chunks
    test_mask: np.ndarray  # bool (n_chunks,): True for test chunks

    def chunk_table(self) -> pl.DataFrame:
        """Chunk metadata with a ``split`` column ("train" / "test")."""
        return self.chunks.meta.with_columns(
            pl.Series("split", np.where(self.test_mask, "test", "train"))
        )


def extract(source: SourceConfig, after_id: int | None = None, until: datetime | None = None) -> pl.DataFrame:
    """The vendor's raw log from its configured source (rows with Id > ``after_id``).

    With ``until``, only rows before that time (rows whose time cannot be read are kept for
    validation to quarantine): training "as of" a date.
    """
    raw = _extract(source, after_id)
    if until is None or "Time" not in raw.columns or raw.height == 0:
        return raw
    from licanom.data.validate import _as_time

    t = raw.select(_as_time("Time", raw.schema["Time"]).alias("t")).to_series()
    # in UTC, as the times read are: polars compares a UTC column with a time of the same zone only
    cutoff = until.astimezone(UTC) if until.tzinfo else until.replace(tzinfo=UTC)
    return raw.filter(t.is_null() | (t < cutoff))


def extract_new(source: SourceConfig, after_id: int | None) -> tuple[pl.DataFrame, IdsBelow | None]:
    """:func:`extract`'s rows with Id > ``after_id``, and for a file source the count of the readable
    Ids of its files at or below ``after_id``, in all and per file
    (:class:`licanom.data.extract.files.IdsBelow`; None for a source that hands out only the rows
    asked for: an API's Ids are its own, and what lies below the watermark is not read)."""
    if source.kind == "files" and source.path and after_id is not None:
        from licanom.data.extract.files import read_new_rows_below

        raw, below = read_new_rows_below(source.path, after_id=after_id, encoding=source.encoding,
                                         separator=source.separator, time_format=source.time_format,
                                         timezone=source.timezone, columns=source.columns)
        return _named_if_short(raw, source.path), below
    return _extract(source, after_id), None


def _named_if_short(raw: pl.DataFrame, path: str) -> pl.DataFrame:
    """``raw`` read from ``path``; a log of one file that lacks a required column is refused naming
    the file, as a file of a folder is (validation, which knows no file, says "the log")."""
    if raw.width and not set(REQUIRED_RAW) <= set(raw.columns):  # the files listed again only then
        from licanom.data.extract.files import log_files

        files = log_files(path, warn=False)
        if len(files) == 1:
            require_columns(raw.columns, f"{files[0]}: the log")
    return raw


def _extract(source: SourceConfig, after_id: int | None) -> pl.DataFrame:
    if source.kind == "files":
        from licanom.data.extract.files import read_log

        if not source.path:  # the vendor's file named, as the configuration's check names it
            raise ValueError(source.path_missing())
        return _named_if_short(read_log(source.path, after_id=after_id, encoding=source.encoding,
                                         separator=source.separator, time_format=source.time_format,
                                         timezone=source.timezone, columns=source.columns), source.path)
    if source.kind == "cryptolens":
        from licanom.data.extract.cryptolens import CryptolensSource, fetch_web_api_log

        if source.product_id is None:
            raise ValueError("source.kind is 'cryptolens' but source.product_id is not set")
        return fetch_web_api_log(
            CryptolensSource(
                product_id=source.product_id, token_env=source.token_env, base_url=source.base_url
            ),
            after_id=after_id,
        )
    if source.kind == "simulate":
        log = simulated_log(source.profile, source.seed, source.days)
        return log if after_id is None else log.filter(pl.col("Id") > after_id)
    raise ValueError(f"unknown source kind {source.kind!r}")


@functools.lru_cache(maxsize=4)
def simulated_log(profile: str, seed: int, days: int) -> pl.DataFrame:
    """A simulated vendor's whole log, simulated once per process (the demo's training, its night
    and its cut-off read the same one; the simulation is a pure function of these three)."""
    from licanom.sim import simulate

    return simulate(profile, seed=seed, days=days).log


def validate(raw: pl.DataFrame, cfg: ValidateConfig, private: bool = False) -> ValidationResult:
    """Split into valid and quarantined rows; fail if the bad share exceeds the limit (``private``:
    the vendor pseudonymises, and the refusal's examples show none of its keys, addresses and
    machine codes)."""
    result = validate_log(raw)
    check_bad_fraction(result, cfg.max_bad_fraction, private=private)
    return result


def encode(valid: pl.DataFrame, cfg: EncodeConfig, vocabulary: Vocabulary | None = None,
           secret: bytes | None = None, codes: TextCodes | None = None) -> Encoded:
    """Derive success/action/country and encode; builds the vocabulary when none is given.

    With a pseudonym ``secret`` (licanom.data.privacy) Key, IP, MachineCode and FriendlyName are
    pseudonymised after the country is derived, so the vocabulary and the encoded frame hold pseudonyms.
    ``codes``: the texts' codes validation found (``ValidationResult.codes``), reused.
    """
    if vocabulary is None and secret is None and cfg.encoder == ThesisEncoder.name:
        frame, vocabulary = derive_fit_encode(valid, codes)  # the three steps below, sharing work
        return Encoded(frame=frame, vocabulary=vocabulary)
    if secret is None and cfg.encoder == RowsEncoder.name and (vocabulary is None or vocabulary.encoder == cfg.encoder):
        # the texts coded once (validation's codes reused) for the rows, the context and the summary
        derived, found = derive_coded(valid, codes)
        if vocabulary is None:
            frame, vocabulary = RowsEncoder().fit_encode(derived, found)  # fit and encode reading the rows once
        else:
            frame = RowsEncoder().encode(derived, vocabulary, found)
        return Encoded(frame=frame, vocabulary=vocabulary, codes=found)
    derived = derive(valid)
    if secret is not None:
        derived = pseudonymise(derived, secret)
    if vocabulary is None and cfg.encoder == RowsEncoder.name:
        frame, vocabulary = RowsEncoder().fit_encode(derived)  # fit and encode reading the rows once
        return Encoded(frame=frame, vocabulary=vocabulary)
    vocabulary = vocabulary or get_encoder(cfg.encoder).fit(derived)
    if vocabulary.encoder != cfg.encoder:
        raise ValueError(
            f"vocabulary was built for encoder {vocabulary.encoder!r}, config asks {cfg.encoder!r}"
        )
    return Encoded(frame=get_encoder(cfg.encoder).encode(derived, vocabulary), vocabulary=vocabulary)


def chunk(encoded: Encoded, cfg: ChunkConfig, split: SplitConfig) -> tuple[Chunks, np.ndarray]:
    """Windows of the encoded log and the train/test mask."""
    chunks = make_chunks(encoded.frame, size=cfg.size, stride=cfg.stride, partial=cfg.partial, codes=encoded.codes)
    mask = split_chunks(chunks.n_chunks, split.method, split.test_fraction, split.seed)
    return chunks, mask


def pseudonym_secret(cfg: Config) -> bytes | None:
    """The vendor's pseudonym secret when ``privacy.pseudonymise`` is on, else None."""
    return read_secret(cfg.vendor, cfg.privacy.secret_env) if cfg.privacy.pseudonymise else None


def encode_and_chunk(validation: ValidationResult, cfg: Config, vocabulary: Vocabulary | None = None) -> Prepared:
    """Encode the valid rows (pseudonymised when the vendor asks) and cut them into split windows."""
    encoded = encode(validation.valid, cfg.encode, vocabulary, pseudonym_secret(cfg), validation.codes)
    chunks, mask = chunk(encoded, cfg.chunk, cfg.split)
    # the texts' codes served the encoding: not kept (nor persisted) with what was prepared
    return Prepared(validation=replace(validation, codes=None), encoded=encoded, chunks=chunks, test_mask=mask)


def prepare(raw: pl.DataFrame, cfg: Config, vocabulary: Vocabulary | None = None) -> Prepared:
    """Validate, encode and chunk a raw log."""
    return encode_and_chunk(validate(raw, cfg.validate_, private=cfg.privacy.pseudonymise), cfg, vocabulary)


def write_prepared(prepared: Prepared, out_dir: Path) -> None:
    """Chunks (``chunks.npy``), chunk table, quarantine and vocabulary, side by side."""
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "chunks.npy", prepared.chunks.X)
    prepared.chunk_table().write_parquet(out_dir / "chunk_meta.parquet")
    prepared.validation.quarantine.write_parquet(out_dir / "quarantine.parquet")
    prepared.encoded.vocabulary.save(out_dir / "vocabulary.json")
