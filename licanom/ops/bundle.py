"""A trained model with everything needed to score raw log rows: detector, vocabulary, settings.

Scoring a night's rows (:func:`score_log`) validates them, encodes them with the training
vocabulary, prepends the previous night's unfinished tail (so that windows span midnight),
cuts windows and scores them. The MLflow pyfunc model and the nightly flow both call it, so
they return the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from licanom.data.chunk import Chunks, make_chunks
from licanom.data.columns import ERROR_COLUMNS, RAW, SUMMARY_COLUMNS
from licanom.config import ChunkConfig, EncodeConfig
from licanom.data.context_vector import KeyHistory
from licanom.ops.detect import CHUNK_COLUMNS, chunk_decision, scored_chunks
from licanom.data.encode import RowsEncoder, RowsState, Vocabulary, get_encoder
from licanom.data.derive import derive, derive_coded
from licanom.detectors import inputs_of, load
from licanom.data.privacy import pseudonymise, read_secret
from licanom.data.validate import UNKNOWN_PRODUCT, ValidationResult, move_to_quarantine, validate_log

BUNDLE_FORMAT = 1
ENTITY_FILE = "entities.pkl"
# The fields a vendor's platform may not log at all (every row's empty): a model trained on such rows
# never saw an address (a machine code) and judges a night's as it was trained, without them
# (:func:`absent_fields`, :func:`as_trained`); counted from nothing, each address of a night would be
# news to every address signal (205 of 451 ordinary night chunks flagged on a floating vendor).
ABSENT_CHECKED: tuple[str, ...] = ("IP", "MachineCode")
FIELD_WORDS: dict[str, str] = {"IP": "addresses (IP)", "MachineCode": "machine codes (MachineCode)"}


def absent_fields(rows: pl.DataFrame) -> tuple[str, ...]:
    """Of :data:`ABSENT_CHECKED`, the fields empty (null or "", validation's empty value) in every one
    of ``rows`` (validated rows; none of an empty frame). A machine code of spaces is a value, not an
    empty field: validation keeps it as written, and the model reads it so."""
    if rows.height == 0:
        return ()
    return tuple(c for c in ABSENT_CHECKED if c in rows.columns
                 and not rows.select(pl.col(c).cast(pl.String).fill_null("").ne("").any()).item())


def present_fields(fields: tuple[str, ...], rows: pl.DataFrame) -> tuple[str, ...]:
    """Those of ``fields`` that some of ``rows`` hold (not empty)."""
    if not fields or rows.height == 0:
        return ()
    absent = set(absent_fields(rows))
    return tuple(f for f in fields if f in rows.columns and f not in absent)


def as_trained(derived: pl.DataFrame, fields: tuple[str, ...]) -> pl.DataFrame:
    """Derived rows with ``fields`` (a model's :attr:`ModelBundle.absent_fields`) emptied as the
    model's validated training rows held them: "" (validation's empty value, which pseudonyms keep,
    and which the autoencoders' encoders read otherwise than a null), an address's country unknown."""
    from licanom.data.columns import UNKNOWN_COUNTRY

    if not fields:
        return derived
    out = derived.with_columns(pl.lit("", dtype=pl.String).cast(derived.schema[f]).alias(f) for f in fields if f in derived.columns)
    if "IP" in fields and "country" in out.columns:
        out = out.with_columns(pl.lit(UNKNOWN_COUNTRY, dtype=out.schema["country"]).alias("country"))
    return out


def _load_entities(path: Path) -> Any:
    if not path.exists():
        return None
    from licanom.detectors.entities import EntityModel

    return EntityModel.load(path)


def fit_entities(derived: pl.DataFrame) -> Any:
    """The per-entity results' model fitted on a vendor's derived training rows (pseudonymised
    where the bundle's are)."""
    from licanom.detectors.entities import EntityModel

    return EntityModel().fit(derived)


class VendorMismatchError(ValueError):
    """Rows of one vendor were given to another vendor's model."""


@dataclass(frozen=True)
class ModelBundle:
    """A fitted detector, the vocabulary it was trained with and the data settings."""

    vendor: str
    detector: Any  # a licanom.detectors.BaseDetector (a sequence model on chunks)
    vocabulary: Vocabulary
    chunk: ChunkConfig
    encode: EncodeConfig
    product_ids: tuple[int, ...]
    # the name of the environment variable holding the pseudonym secret, when the model was
    # trained on pseudonymised rows (licanom.data.privacy); never the secret itself
    pseudonym_env: str | None = None
    # a context model's keys' past: the (key, machine code) and (key, country) pairs of the
    # training rows (pseudonymised where the rows were), so that scoring knows what is new to a key
    key_history: KeyHistory | None = None
    # the per-entity results' model (licanom.detectors.entities), fitted on the training rows
    entity_model: Any = None
    # the last Id of the log's chunks its training read (where the vendor's first night starts), so that
    # a night scored again from before it (--since) says it scores training rows; None: not known (a
    # model saved before it was kept, or not trained on a vendor's log)
    train_last_id: int | None = None
    # the fields empty in every training row (absent_fields): emptied in a night's rows before the model
    # reads them (as_trained); () where the training rows held them all, or in a model saved before
    absent_fields: tuple[str, ...] = ()

    def pseudonym_secret(self) -> bytes | None:
        """The vendor's pseudonym secret (from the environment) when the model was trained on
        pseudonymised rows, else None."""
        return read_secret(self.vendor, self.pseudonym_env) if self.pseudonym_env else None

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.detector.save(directory / "detector.pt")
        self.vocabulary.save(directory / "vocabulary.json")
        if self.key_history is not None:
            self.key_history.save(directory)
        if self.entity_model is not None:
            self.entity_model.save(directory / ENTITY_FILE)
        (directory / "bundle.json").write_text(json.dumps({
            "format": BUNDLE_FORMAT,
            "vendor": self.vendor,
            "model": self.detector.model,
            "detector": self.detector.family,
            "vocabulary_digest": self.vocabulary.digest(),
            "chunk": self.chunk.model_dump(),
            "encode": self.encode.model_dump(),
            "product_ids": list(self.product_ids),
            "pseudonym_env": self.pseudonym_env,
            "train_last_id": self.train_last_id,
            "absent_fields": list(self.absent_fields),
        }, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelBundle:
        meta = json.loads((directory / "bundle.json").read_text())
        if meta.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"{directory}: unsupported model bundle format {meta.get('format')!r}")
        vocabulary = Vocabulary.load(directory / "vocabulary.json")
        if vocabulary.digest() != meta["vocabulary_digest"]:
            raise ValueError(f"{directory}: vocabulary does not match the one the model was trained with")
        detector = load(meta["model"], directory / "detector.pt")
        key_history = KeyHistory.load(directory)
        if (key_history is not None and key_history.levels is None and detector.reads == "context"
                and detector.context_version_ >= 3):
            # without them the nights would count plainly what training counted above each entity's level
            raise ValueError(f"{directory}: the context model reads context version {detector.context_version_} but "
                             f"{KeyHistory.LEVELS_FILE} (its entities' own levels) is missing; train it again")
        return cls(
            vendor=meta["vendor"],
            detector=detector,
            vocabulary=vocabulary,
            chunk=ChunkConfig(**meta["chunk"]),
            encode=EncodeConfig(**meta["encode"]),
            product_ids=tuple(meta["product_ids"]),
            pseudonym_env=meta.get("pseudonym_env"),
            key_history=key_history,
            entity_model=_load_entities(directory / ENTITY_FILE),
            train_last_id=meta.get("train_last_id"),
            absent_fields=tuple(meta.get("absent_fields", ())),
        )


@dataclass(frozen=True)
class ScoredRows:
    """A scoring pass: per-chunk results, the validation split and the rows left for next time."""

    chunks: pl.DataFrame       # CHUNK_COLUMNS, split = "score"
    validation: ValidationResult
    tail: pl.DataFrame         # valid raw rows after the last full window (RAW columns)

    @property
    def n_anomalies(self) -> int:
        return int(self.chunks["is_anomaly"].sum()) if self.chunks.height else 0


@dataclass(frozen=True)
class Windows:
    """Encoded windows ready to score, and the rows held back for the next run.

    Each frame is computed once (:func:`make_windows`) and read by every later step of a night:
    the scores, the entity results, the incidents and the report."""

    chunks: Chunks | None  # None when fewer rows than one window are available
    tail: pl.DataFrame     # valid raw rows after the last full window (RAW columns)
    rows: pl.DataFrame | None = None  # the valid rows the windows were cut from (carried ones first)
    # those rows derived, in the windows' order, and encoded for a model that reads the encoder's
    # features (an autoencoder or a sequence model; a context or summary model reads none)
    encoded: pl.DataFrame | None = None
    derived: pl.DataFrame | None = None  # ``rows`` with success, action and country (real values)
    # ``derived`` as the model reads it: pseudonymised where it was trained so, the fields its training rows
    # never held emptied (ModelBundle.absent_fields)
    model_rows: pl.DataFrame | None = None


def validate_rows(bundle: ModelBundle, raw: pl.DataFrame, vendor: str | None = None) -> ValidationResult:
    """Validate rows to be scored and refuse rows of another vendor (``vendor`` given and not
    the model's). Rows of a product the model was not trained on are quarantined with that
    reason (:data:`UNKNOWN_PRODUCT`): the other rows are still scored."""
    if vendor is not None and vendor != bundle.vendor:
        raise VendorMismatchError(f"rows of vendor {vendor!r} given to vendor {bundle.vendor!r}'s model")
    validation = validate_log(raw)
    valid = validation.valid
    if bundle.product_ids and valid.height:
        foreign = ~valid["ProductId"].is_in(list(bundle.product_ids))
        if foreign.any():
            known = ", ".join(map(str, bundle.product_ids))
            reason = valid.select(pl.format(f"{UNKNOWN_PRODUCT} ({{}}; it knows {known})", "ProductId")).to_series()
            validation = move_to_quarantine(validation, raw, foreign, reason)
    return validation


def make_windows(bundle: ModelBundle, valid: pl.DataFrame, carry: pl.DataFrame | None = None) -> Windows:
    """Prepend the carried rows, derive them once (success, action, country), pseudonymise
    them where the model was trained so, encode with the training vocabulary and cut full
    windows. The encoder's features and the feature array of the windows are built only for a
    detector that reads them (``reads`` "chunks" or "flat"): a context or summary model reads the
    rows and the windows' summary, never the features."""
    if carry is not None and carry.height:
        valid = pl.concat([carry.select(RAW), valid.select(RAW)]).unique("Id", keep="first").sort(["Time", "Id"])
    rows = valid.select(RAW)
    derived, codes = derive_coded(rows)
    secret = bundle.pseudonym_secret()
    model_rows = pseudonymise(derived, secret) if secret is not None else derived
    if secret is not None:
        codes = None  # the model reads the pseudonyms, which have codes of their own
    if bundle.absent_fields:  # the fields its training rows never held: emptied, as it was trained
        model_rows, codes = as_trained(model_rows, bundle.absent_fields), None
    size, stride = bundle.chunk.size, bundle.chunk.stride
    if valid.height < size:
        return Windows(chunks=None, tail=rows, rows=rows, derived=derived, model_rows=model_rows)
    reads_features = bundle.detector.reads in ("chunks", "flat")
    # the encoder's features are read by a model of the windows' rows only: a context or summary
    # model reads the rows' entities and the windows' summary, which encoding leaves as they are
    encoded = get_encoder(bundle.encode.encoder).encode(model_rows, bundle.vocabulary) if reads_features else model_rows
    chunks = make_chunks(encoded, size=size, stride=stride, partial="drop", windows=reads_features, codes=codes)
    last_row = int(chunks.meta["start_row"][-1]) + size
    return Windows(chunks=chunks, tail=valid.slice(last_row).select(RAW), rows=rows, encoded=encoded,
                   derived=derived, model_rows=model_rows)


def window_inputs(bundle: ModelBundle, windows: Windows) -> Any:
    """The detector's inputs for every window (for a context model: the context vectors, which
    the night's report shows too); None when there is no window."""
    if windows.chunks is None:
        return None
    det = bundle.detector
    if det.reads == "context":
        assert windows.encoded is not None, "the context model needs the encoded rows of the windows"
    return inputs_of(det.reads, windows.chunks, windows.encoded, bundle.key_history, det.context_version_)


def score_windows(bundle: ModelBundle, windows: Windows, inputs: Any = None) -> pl.DataFrame:
    """Per-chunk results (the ``licanom detect`` contract, ``split`` = "score") with severity.
    ``inputs``: :func:`window_inputs`, when the caller has them already."""
    if windows.chunks is None:
        return _empty_chunks()
    chunks = windows.chunks
    meta = chunks.meta.with_columns(pl.lit("score").alias("split"))
    det = bundle.detector
    if inputs is None:
        inputs = window_inputs(bundle, windows)
    if det.family == "autoencoder":
        errors = det.errors(inputs)  # one forward pass for the score and the explanation
        if len(det.explain_columns()) == len(ERROR_COLUMNS):
            # the thesis's 8 columns: their errors go to the error_* columns
            return scored_chunks(meta, det.model, errors.columns, float(det.threshold_), errors.score, None,
                                 *chunk_decision(det, meta, errors.score))
        top = np.asarray(det.explain_columns())[errors.top_columns.argmax(axis=1)]  # = top_columns(inputs)
        return scored_chunks(meta, det.model, None, float(det.threshold_), errors.score, top,
                             *chunk_decision(det, meta, errors.score))
    scores = det.decision_function(inputs)
    return scored_chunks(meta, det.model, None, float(det.threshold_), scores, det.top_columns(inputs),
                         *chunk_decision(det, meta, scores))


def score_entities(bundle: ModelBundle, valid: pl.DataFrame, windows: Windows | None = None) -> pl.DataFrame | None:
    """The night's entity results (licanom.detectors.entities.ENTITY_COLUMNS) for its own valid
    rows (not the carried ones, which the last night counted), derived and pseudonymised as the
    model's (taken from ``windows`` when given: they hold them derived already); None for a
    bundle without an entity model or a night without rows."""
    if bundle.entity_model is None or valid.height == 0:
        return None
    if windows is not None and windows.model_rows is not None:
        derived = windows.model_rows.filter(pl.col("Id").is_in(valid["Id"].implode()))
    else:
        derived = derive(valid)
        secret = bundle.pseudonym_secret()
        if secret is not None:
            derived = pseudonymise(derived, secret)
        derived = as_trained(derived, bundle.absent_fields)
    return bundle.entity_model.score(derived, seen=bundle.key_history)


def with_seen(bundle: ModelBundle, seen: KeyHistory | None) -> ModelBundle:
    """The bundle with ``seen`` (the key pairs of the nights scored since it was trained, from
    the vendor's state) added to its key history; unchanged for a model that keeps none."""
    if bundle.key_history is None or seen is None:
        return bundle
    return replace(bundle, key_history=bundle.key_history.union(seen))


def pairs_seen(bundle: ModelBundle, windows: Windows, after: int | None = None) -> KeyHistory | None:
    """The key pairs of the rows just scored, for the vendor's state, each with the Id where it was
    first seen (:meth:`KeyHistory.of_night`; ``after``: the Id the night read after); None for a
    model that keeps no key history or when nothing was scored."""
    if bundle.key_history is None or windows.encoded is None:
        return None
    return KeyHistory.of_night(windows.encoded, after)


def reads_rows(bundle: ModelBundle) -> bool:
    """Whether the model's inputs are the rows encoder's features (an autoencoder in the rows
    mode): they depend on the :class:`licanom.data.encode.RowsState` the rows are judged against."""
    return (bundle.encode.encoder == RowsEncoder.name and bundle.vocabulary.rows is not None
            and bundle.detector.reads in ("chunks", "flat"))


def with_rows_state(bundle: ModelBundle, seen: RowsState | None) -> ModelBundle:
    """The bundle with its rows encoder's state advanced by ``seen`` (the state of the rows
    scored since it was trained, from the vendor's state: :meth:`RowsState.advanced`), so that a
    key, machine code, address or country first seen on an earlier night is not new again and a
    key's gap counts from its last scored request; unchanged for a model that does not read the
    rows mode or without ``seen``."""
    if seen is None or not reads_rows(bundle):
        return bundle
    rows = bundle.vocabulary.rows
    assert rows is not None
    return replace(bundle, vocabulary=replace(bundle.vocabulary, rows=rows.advanced(seen)))


def rows_seen(bundle: ModelBundle, windows: Windows) -> RowsState | None:
    """The rows encoder's state of the rows the windows scored (the carried rows first; not the
    new tail, which the next night scores and counts), as the model reads them (pseudonymised
    where it was trained so), for the vendor's state; None for a model that does not read the
    rows mode or when no window was scored."""
    if not reads_rows(bundle) or windows.chunks is None or windows.model_rows is None:
        return None
    scored = windows.model_rows.head(windows.model_rows.height - windows.tail.height)
    return RowsEncoder().state(scored) if scored.height else None


def score_log(bundle: ModelBundle, raw: pl.DataFrame, carry: pl.DataFrame | None = None) -> ScoredRows:
    """Score raw log rows (plus the rows carried from the last run) with a trained bundle.

    Windows are cut with the bundle's chunk settings; rows after the last full window are
    returned as ``tail`` to be carried into the next run instead of being scored now.
    """
    validation = validate_rows(bundle, raw)
    _refuse_foreign(bundle, validation)
    windows = make_windows(bundle, validation.valid, carry)
    return ScoredRows(chunks=score_windows(bundle, windows), validation=validation, tail=windows.tail)


def _refuse_foreign(bundle: ModelBundle, validation: ValidationResult) -> None:
    """Rows none of which is of a product the model was trained on are another vendor's (or a
    wrong export): refused with :class:`VendorMismatchError`, not answered with no chunks. A few
    such rows among the vendor's own are quarantined as :func:`validate_rows` says."""
    q = validation.quarantine
    if validation.valid.height or q.height == 0 or "reason" not in q.columns:
        return
    if not q["reason"].str.starts_with(UNKNOWN_PRODUCT).all():
        return
    products = sorted({str(p) for p in q["ProductId"].unique().to_list()}) if "ProductId" in q.columns else []
    raise VendorMismatchError(
        f"none of the {q.height:,} rows is of a product vendor {bundle.vendor!r}'s model was trained on "
        f"(it knows {', '.join(map(str, bundle.product_ids))}; the rows have {', '.join(products[:10])}): "
        "rows of another vendor or product")


def _empty_chunks() -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {
        "chunk": pl.Int64(), "first_id": pl.Int64(), "last_id": pl.Int64(),
        "start_time": pl.Datetime("us", "UTC"), "end_time": pl.Datetime("us", "UTC"),
        "split": pl.String(), "model": pl.String(), "score": pl.Float64(), "threshold": pl.Float64(),
        "is_anomaly": pl.Boolean(), "top_feature": pl.String(),
        **{c: pl.Int32() for c in SUMMARY_COLUMNS},
        **{c: pl.Float64() for c in ERROR_COLUMNS}, "severity": pl.Float64(), "flagged_by": pl.String(),
    }
    return pl.DataFrame(schema=schema).select(CHUNK_COLUMNS)
