"""Typed configuration: conf/defaults.yaml overlaid with conf/vendors/<vendor>.yaml (or .yml)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, Strict, ValidationInfo, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from licanom.detectors.decision import DecisionName, check_decision
from licanom.settings import is_checkout
from licanom.spelling import did_you_mean

DEFAULT_CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
log = logging.getLogger(__name__)


def default_conf_dir() -> Path:
    """conf/ of the project, or the folder named by LICANOM_CONF_DIR."""
    env = os.environ.get("LICANOM_CONF_DIR")
    return Path(env) if env else DEFAULT_CONF_DIR
VENDOR_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # the whole name: fullmatch


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# A numeric setting takes a number as written, not a text: pydantic's lax mode read a quoted "70" as 70
# where the decisions' threshold_params refuse it (licanom.detectors.decision), and YAML's true as 1;
# one rule for every number of the configuration. A float setting takes a whole number too (24 hours).
Whole = Annotated[int, Strict()]
Real = Annotated[float, Strict()]
# A true/false setting takes YAML's true or false (yes, no, on, off) as written: lax mode read a quoted
# "yes" or "false" as a boolean, and 1 or 0 as one, where a quoted number is refused.
Flag = Annotated[bool, Strict()]


def known_zone(name: str) -> str:
    """``name`` if it is an IANA time zone, else a ValueError saying what to write."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or America/New_York") from None
    return name


# a tab as it is typed: --separator '\t' in a shell, or '\t' in single quotes (or unquoted) in YAML, is
# the two characters backslash and t ('\\t' three); a tab itself is one character already
TAB_ESCAPES: tuple[str, ...] = ("\\t", "\\\\t")


def check_separator(text: str) -> str:
    """A CSV separator as written on the command line (``--separator``) or in a vendor's YAML
    (``source.separator``), both checked here: the one character, a tab for ``\\t`` (TAB_ESCAPES);
    else a ValueError of one line. A letter or digit separates no CSV: an unquoted ``\\t`` in a
    shell reaches licanom as ``t``, and was taken: each line was split at its t's."""
    if text in TAB_ESCAPES:
        return "\t"
    if len(text) != 1:
        raise ValueError("must be one character: ',' ';' '|' or a tab, written \\t")
    if text.isalnum():
        slip = " (a shell reads an unquoted \\t as t)" if text == "t" else ""
        raise ValueError(f"{text!r} is a {'digit' if text.isdigit() else 'letter'}, which separates no CSV{slip}: "
                         "write a tab as '\\t' in quotes (--separator '\\t'), or give ',' ';' or '|'")
    return text


# the validation context's key of the vendor's file (load_config), which a source keeps (SourceConfig._file)
VENDOR_FILE = "vendor_file"
# the licensing models a simulated vendor can have: licanom.sim.PROFILES, without importing the simulator
SimProfile = Literal["node-locked", "usage-based", "floating", "mixed"]


class SourceConfig(_Model):
    kind: Literal["files", "cryptolens", "simulate"] = "files"
    path: str | None = None
    product_id: Whole | None = None
    token_env: str = "CRYPTOLENS_TOKEN"
    base_url: str = "https://api.cryptolens.io"
    profile: SimProfile = "floating"  # simulate: checked here, not once the night has started
    seed: Whole = 0
    days: Whole = Field(30, gt=0)
    # files: the text encoding of CSV/NDJSON exports; null reads strict UTF-8 and names the
    # file where it is not (never replaces bytes); e.g. cp1252 for a Windows export
    encoding: str | None = None
    # files: the CSV separator, a tab written '\t' too; null detects ",", ";", tab or "|" from the header line
    separator: str | None = None
    # files: how Time and FloatingExpires are written when not ISO 8601 or Unix seconds, in strftime
    # codes, e.g. "%d.%m.%Y %H:%M:%S" or "%m/%d/%Y %I:%M:%S %p"; null: ISO 8601 or Unix seconds only
    time_format: str | None = None
    # files: the time zone (IANA name, e.g. "Europe/Berlin") of times written without an offset;
    # null: UTC. Times with an offset or Z, and Unix seconds, are read as written.
    timezone: str | None = None
    # files: the export's own names of Web API Log columns, each to the log's name, e.g.
    # {"Machine Code": MachineCode, "LogId": Id}, or to null to leave a column out (a "Time" of local
    # times beside the "TimeUTC" mapped to Time); {} where the files name them as the log does (case
    # and spaces around a name aside)
    columns: dict[str, str | None] = Field(default_factory=dict)
    # the vendor's file these settings were read with (load_config; None for a source built in code):
    # where a message about them says to set one. No setting: not in a dump, nor read from a file
    _file: Path | None = PrivateAttr(default=None)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        return v if v is None else known_zone(v)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        import codecs

        if v is not None:
            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"unknown encoding {v!r}: use a Python codec name such as utf-8 or cp1252") from None
        return v

    @field_validator("time_format")
    @classmethod
    def _strftime_codes(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if "%" not in v:
            raise ValueError('must be strftime codes such as "%d.%m.%Y %H:%M:%S"')
        if "%Z" in v:  # the parser skips a zone's name without reading it: every time would be off
            raise ValueError("%Z (a zone's name) cannot be read; write the offset with %z (+02:00, -0500, Z)")
        if "%f" in v:  # it reads the digits as nanoseconds: ".447536" would be read as 447 microseconds
            raise ValueError('%f reads nanoseconds; a fraction after the seconds is "%S%.f" (or %3f, %6f for that many digits)')
        return v

    @field_validator("separator")
    @classmethod
    def _one_character(cls, v: str | None) -> str | None:
        return v if v is None else check_separator(v)

    @field_validator("columns")
    @classmethod
    def _log_columns(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        from licanom.data.columns import RAW

        for written, column in v.items():
            if not written.strip():
                raise ValueError(f"an empty name is mapped to {column!r}: name the export's column as its header writes it")
            if column is not None and column not in RAW:
                raise ValueError(f"{written!r} is mapped to {column!r}, which is no Web API Log column: "
                                 f"one of {list(RAW)}, or null to leave the column out")
        twice = sorted({c for c in v.values() if c is not None and list(v.values()).count(c) > 1})
        if twice:
            names = [w for w, c in v.items() if c == twice[0]]
            raise ValueError(f"{' and '.join(repr(n) for n in names)} are both mapped to {twice[0]!r}: map one of them")
        return v

    @model_validator(mode="after")
    def _a_product(self) -> SourceConfig:
        if self.kind == "cryptolens" and self.product_id is None:  # else found only once the flow has started
            raise ValueError("product_id is not set: a cryptolens source reads one product's log; set product_id "
                             "to the product's id, a whole number (its ProductId in Cryptolens)")
        return self

    @model_validator(mode="after")
    def _read_from(self, info: ValidationInfo) -> SourceConfig:
        if info.context and info.context.get(VENDOR_FILE) is not None:
            self._file = info.context[VENDOR_FILE]
        return self

    def path_missing(self) -> str | None:
        """None where the source has its log; for a files source without ``path``, one line saying
        so and, where the settings were read from a vendor's configuration, which file to set it in."""
        if self.kind != "files" or self.path:
            return None
        where = f": set it in {self._file}" if self._file is not None else ""
        return f"source.path: the log's file or folder is not set (source.kind is 'files'){where}"


class ValidateConfig(_Model):
    max_bad_fraction: Real = Field(0.05, ge=0.0, le=1.0)


class EncodeConfig(_Model):
    # conf/defaults.yaml (what a vendor's configuration starts from) chooses rows; the class keeps
    # the thesis's encoder so a model bundle or evaluation built in code reads as before
    encoder: Literal["thesis", "frequency", "rows"] = "thesis"
    unknown: Literal["zero"] = "zero"


class ChunkConfig(_Model):
    size: Whole = Field(100, ge=2)
    stride: Whole = Field(100, ge=1)
    partial: Literal["drop", "overlap"] = "drop"

    @model_validator(mode="after")
    def _no_gaps(self) -> ChunkConfig:
        if self.stride > self.size:  # the rows between two chunks would be read, counted and never scored
            raise ValueError(f"stride ({self.stride}) must not exceed size ({self.size}): the "
                             "requests between two chunks would never be scored")
        return self


class SplitConfig(_Model):
    method: Literal["shuffle", "time"] = "shuffle"
    test_fraction: Real = Field(0.2, ge=0.0, lt=1.0)
    seed: Whole = 0


AUTO = "auto"


def known_models() -> tuple[str, ...]:
    """The detectors a vendor can train and register (the scikit-learn baselines are for the
    evaluation only)."""
    from licanom.detectors import names

    return tuple(n for family in ("autoencoder", "sequence", "context") for n in names(family))


def sequence_models() -> tuple[str, ...]:
    """What ``train.models: sequence`` trains: the Ergen models and DeepLog (the catalog's names:
    no torch imported)."""
    from licanom.detectors.catalog import ERGEN_MODELS, NEXT_EVENT_MODELS

    return (*ERGEN_MODELS, *NEXT_EVENT_MODELS)


def _check_names(v: Any, key: str = "models") -> tuple[str, ...]:
    if isinstance(v, str) and "," in v:  # `models: a, b` is one text: said with the list it was meant as
        names = ", ".join(n.strip() for n in v.split(",") if n.strip())
        raise ValueError(f"{v!r} is one text, not a list of names: write the list in brackets, {key}: [{names}]")
    if isinstance(v, str):
        v = (v,)
    if not isinstance(v, (list, tuple)):  # a ValueError, which names the setting: not iter()'s TypeError
        raise ValueError("must be a model's name or a list of names")
    known = known_models()
    unknown = [m for m in v if m not in known]
    if unknown:
        from licanom.detectors.catalog import AUTOENCODERS

        sequence = sequence_models()
        raise ValueError(
            f"unknown model(s) {unknown}; valid: {', '.join(known)}, 'all' (the {len(AUTOENCODERS)} autoencoders), "
            f"'sequence' (the {len(sequence)} sequence models: {', '.join(sequence)}) or 'auto' (by vendor size: train.auto)"
        )
    if not v:
        raise ValueError("at least one model is needed")
    return tuple(v)


class AutoModels(_Model):
    """What ``train.models: auto`` trains, by the vendor's size: the rule of the labelled
    evaluation (README, "Choosing the defaults"). A vendor whose training chunks number at most
    ``small_max_train_chunks`` is small."""

    small: tuple[str, ...] = ("Tail_context", "TCN_AE")
    large: tuple[str, ...] = ("Tail_context", "TCN_AE")
    small_max_train_chunks: Whole = Field(500, ge=0)

    @field_validator("small", "large", mode="before")
    @classmethod
    def _names(cls, v: Any, info: ValidationInfo) -> Any:
        return _check_names(v, info.field_name or "models")


class TrainConfig(_Model):
    models: tuple[str, ...] = ("LSTM_AE_Deep2",)
    auto: AutoModels = AutoModels()
    epochs: Whole = Field(10, ge=1)
    batch_size: Whole = Field(128, ge=1)
    lr: Real = Field(1e-3, gt=0)
    val_fraction: Real = Field(0.1, ge=0.0, lt=1.0)
    patience: Whole | None = Field(None, ge=1)
    seed: Whole = 0
    # torch threads per training (None: torch's default, one per core); 1 by default, measured
    # fastest on a shared machine (docs/training.md)
    threads: Whole | None = Field(1, ge=1)
    # variants trained side by side, one process each on one torch thread (1: one after another)
    parallel: Whole = Field(1, ge=1)

    @field_validator("models", mode="before")
    @classmethod
    def _expand_all(cls, v: Any, info: ValidationInfo) -> Any:
        # the catalog's names, not the families' modules: reading a configuration imports no torch
        from licanom.detectors.catalog import AUTOENCODERS

        if v == "all" or v == ["all"] or v == ("all",):
            return AUTOENCODERS
        if v in ("sequence", ["sequence"], ("sequence",)):
            return sequence_models()
        if v in (AUTO, [AUTO], (AUTO,)):
            return (AUTO,)
        return _check_names(v, info.field_name or "models")

    def is_small(self, n_train_chunks: int) -> bool:
        """Whether a vendor with ``n_train_chunks`` training chunks is small (``auto``'s rule)."""
        return n_train_chunks <= self.auto.small_max_train_chunks

    def resolved(self, n_train_chunks: int) -> TrainConfig:
        """This configuration with ``models: auto`` replaced by the models for a vendor with
        ``n_train_chunks`` training chunks (``auto.small`` or ``auto.large``); else itself."""
        if self.models != (AUTO,):
            return self
        small = self.is_small(n_train_chunks)
        return self.model_copy(update={"models": self.auto.small if small else self.auto.large})


class SequenceConfig(_Model):
    """The sequence models (LSTM/GRU + OC-SVM/SVDD, DeepLog) and what they read."""

    # chunks: the thesis's windows; key / key-machine: each licence key's (and machine's)
    # requests within one period, of any length
    mode: Literal["chunks", "key", "key-machine"] = "chunks"
    period_hours: Real = Field(24.0, gt=0)
    max_length: Whole = Field(1000, ge=1)   # longer sequences are cut into consecutive parts
    solver: Literal["gradient", "qp"] = "gradient"
    hidden: Whole = Field(16, ge=1)
    # how the Ergen models pool a sequence's hidden states (docs/sequence-models.md); null: max per
    # key (a long gap, a new machine code or country is one step's spike), mean-max on chunks
    pooling: Literal["mean-max", "max", "mean", "last", "max-min"] | None = None
    lam: Real = Field(0.05, gt=0.0, le=1.0)
    tau: Real = Field(100.0, gt=0.0)
    lr: Real = Field(0.02, gt=0.0)
    labeled_weight: Real | None = Field(None, gt=0.0)
    # the share of training items above the decision threshold; null: the model's own boundary
    # (about lam of them). 0.01 from the labelled evaluation (README, "Choosing the defaults")
    contamination: Real | None = Field(0.01, gt=0.0, lt=1.0)
    # DeepLog (the next-event model): predict a key's next request from its last `window`
    # requests; a request outside the `top_g` most likely is a miss
    window: Whole = Field(10, ge=1)
    top_g: Whole = Field(9, ge=1)
    next_event_hidden: Whole = Field(64, ge=1)
    # the candidates of a sequence's end (null: top_g); with next_event_validation > 0 that share
    # of the training sequences is held out and top_g / the end's are chosen on it: the smallest
    # flagging at most next_event_validation_fpr of them (licanom.detectors.sequence.deeplog)
    top_g_end: Whole | None = Field(None, ge=1)
    next_event_validation: Real = Field(0.0, ge=0.0, lt=1.0)
    next_event_validation_fpr: Real = Field(0.002, ge=0.0, lt=1.0)


def _threshold_params(value: object) -> object:
    """A decision's params as written: numbers or texts, no booleans (YAML's true is no level);
    null only for ``stand_out_gap`` (the severity decision's night rule off); no list or mapping,
    refused as one error naming the setting (``detect.threshold_params.min_severity``), where
    pydantic gave one for each type a param may be, each naming it."""
    if isinstance(value, dict):
        for name, v in value.items():
            if isinstance(v, bool):
                raise _at_param(name, v, f"must be a number, got {v!r}")
            if v is None and name != "stand_out_gap":
                raise _at_param(name, v, "must not be null (only stand_out_gap may be: the night rule off)")
            if v is not None and not isinstance(v, (int, float, str)):
                takes = "a number or null (the night rule off)" if name == "stand_out_gap" else "a number"
                raise _at_param(name, v, f"must be {takes}, got {v!r}")
    return value


def _at_param(name: str, value: object, message: str) -> PydanticValidationError:
    """An error placed at one decision setting, so that it reads ``detect.threshold_params.<name>:
    <message>`` like every other setting's (pydantic has no public way for a field's check to name
    a key of its mapping: the error is built at that key)."""
    return PydanticValidationError.from_exception_data("threshold_params", [{
        "type": "value_error", "loc": (name,), "input": value, "ctx": {"error": ValueError(message)}}])


def _params_fit(threshold: object, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` if the decision ``threshold`` takes them (here, not after a training); else its
    check's ValueError, which names each setting it refuses and what the decision takes. A field's
    check, so that the error names ``threshold_params``, not its section; ``threshold`` is None
    where it was refused itself (its own error says so)."""
    if threshold is not None:
        try:
            check_decision(str(threshold), params)
        except ValueError as err:  # its "threshold_params.x must be ...": placed at the setting x
            text = str(err)
            one = re.fullmatch(r"threshold_params\.(\w+) (.*)", text, flags=re.DOTALL)
            if one is not None and one[1] in params:
                raise _at_param(one[1], params[one[1]], one[2]) from None
            raise ValueError(text) from None
    return params


class DetectConfig(_Model):
    threshold: DecisionName = "severity"
    threshold_params: dict[str, float | int | str | None] = Field(default_factory=dict)

    _params = field_validator("threshold_params", mode="before")(_threshold_params)

    @field_validator("threshold_params")
    @classmethod
    def _params_fit_the_decision(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _params_fit(info.data.get("threshold"), v)  # threshold is read before it
    m1: Flag = True
    m1_max_rounds: Whole = Field(5, ge=1)
    clustering_seed: Whole = 0


class AutoThresholds(_Model):
    """What ``context.threshold: auto`` is, by the vendor's size (``train.auto.small_max_train_chunks``):
    the rule of the labelled evaluation (README, "Choosing the defaults")."""

    small: DecisionName = "severity"
    large: DecisionName = "severity"


class ContextConfig(_Model):
    """The context models (Tail_context, IForest_context, LOF_context: licanom.detectors.context)."""

    # their decision, from their training scores: a threshold's name, or auto (``auto.small`` or
    # ``auto.large`` by the vendor's size, :meth:`Config.for_size`)
    threshold: Literal[DecisionName, "auto"] = AUTO  # one Literal: a slip is one error listing every name
    auto: AutoThresholds = AutoThresholds()
    threshold_params: dict[str, float | int | str | None] = Field(default_factory=dict)
    n_estimators: Whole = Field(200, ge=1)   # IForest_context
    n_neighbors: Whole = Field(20, ge=1)     # LOF_context
    tail_quantile: Real = Field(0.9, gt=0, lt=1)  # Tail_context: where each signal's exponential tail starts

    _params = field_validator("threshold_params", mode="before")(_threshold_params)

    @field_validator("threshold_params")
    @classmethod
    def _params_fit_the_decision(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # a field's check (threshold is read before it), so that an error names threshold_params
        threshold = info.data.get("threshold")
        if threshold == AUTO:
            if v:
                raise ValueError(f"need a named context.threshold (not auto): got {v}")
            return v
        return _params_fit(threshold, v)

    def resolved(self, small: bool) -> ContextConfig:
        """This configuration with ``threshold: auto`` replaced by ``auto.small`` or ``auto.large``."""
        if self.threshold != AUTO:
            return self
        return self.model_copy(update={"threshold": self.auto.small if small else self.auto.large})


class PrivacyConfig(_Model):
    # replace Key, IP, MachineCode and FriendlyName by keyed pseudonyms before anything reaches MLflow
    pseudonymise: Flag = False
    # environment variable holding the secret; null: LICANOM_PSEUDONYM_SECRET_<VENDOR>
    secret_env: str | None = None


class ScheduleConfig(_Model):
    score_cron: str = "0 2 * * *"    # nightly scoring
    train_cron: str = "0 3 * * 0"    # weekly retraining
    timezone: str = "UTC"

    @field_validator("score_cron", "train_cron")
    @classmethod
    def _cron_fields(cls, v: str) -> str:
        # the shape only (the scheduler's own parser checks the values when `licanom serve` starts):
        # five fields, as cron writes them (six: seconds last, as the scheduler reads them too), or a
        # nickname; a field lost is the usual slip
        if not (len(v.split()) in (5, 6) or v.strip() in CRON_NICKNAMES):
            raise ValueError(f"{v!r} is not a cron schedule: five fields (minute hour day-of-month month "
                             f"day-of-week, e.g. '0 2 * * *') or one of {', '.join(CRON_NICKNAMES)}")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        return known_zone(v)


# the cron nicknames the scheduler reads besides five fields
CRON_NICKNAMES: tuple[str, ...] = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class Config(_Model):
    vendor: str = "default"
    output_dir: str = "out"
    source: SourceConfig = SourceConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    encode: EncodeConfig = EncodeConfig()
    chunk: ChunkConfig = ChunkConfig()
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    detect: DetectConfig = DetectConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    sequence: SequenceConfig = SequenceConfig()
    context: ContextConfig = ContextConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("vendor")
    @classmethod
    def _vendor_name(cls, v: str) -> str:
        return validate_vendor_name(v)

    def for_size(self, n_train_chunks: int) -> Config:
        """This configuration with ``train.models: auto`` and ``context.threshold: auto`` resolved
        for a vendor with ``n_train_chunks`` training chunks (:meth:`TrainConfig.resolved`)."""
        train = self.train.resolved(n_train_chunks)
        context = self.context.resolved(self.train.is_small(n_train_chunks))
        if train is self.train and context is self.context:
            return self
        return self.model_copy(update={"train": train, "context": context})


def validate_vendor_name(name: str) -> str:
    """A vendor name is lower-case letters, digits, '-' and '_': safe in paths and run names."""
    if not isinstance(name, str) or not VENDOR_NAME.fullmatch(name):
        raise ValueError(
            f"invalid vendor name {name!r}: use 1-63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class ConfigFileError(ValueError):
    """A configuration file that cannot be read as YAML settings: one line naming the file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key set twice in one mapping: the later one silently won (a
    block appended to a vendor's file as ``train: {batch_size: 64}`` dropped an earlier ``train:``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is set twice (lines {seen[key]} and {line}): keep one", key_node.start_mark)
            seen[key] = line
        if node.flow_style:
            _refuse_split_list(node)
        return super().construct_mapping(node, deep=deep)


def _refuse_split_list(node: yaml.MappingNode) -> None:
    """Inside braces a list written without its brackets, ``{models: a, b}``, is read as ``models: a``
    and a setting ``b`` of no value, refused (if at all) as an unknown setting ``b``: refused here as
    the list it was meant as, naming the key and showing the list's form. A key written without a
    colon after a plain value is taken for such a name; ``b:`` and ``b: null`` are settings."""
    entries = node.value

    def split(i: int) -> bool:  # a plain key written with no colon and no value
        key, value = entries[i]
        if not (isinstance(key, yaml.ScalarNode) and key.style is None and isinstance(value, yaml.ScalarNode)
                and value.tag == "tag:yaml.org,2002:null" and value.value == "" and key.end_mark.buffer is not None):
            return False
        return ":" not in key.end_mark.buffer[key.end_mark.pointer:value.start_mark.pointer]

    for i in range(1, len(entries)):
        if not split(i):
            continue
        head = i - 1
        while head > 0 and split(head):
            head -= 1
        key, value = entries[head]
        if not (isinstance(value, yaml.ScalarNode) and value.style is None and value.value):
            continue
        end = i
        while end + 1 < len(entries) and split(end + 1):
            end += 1
        names = ", ".join([value.value, *(str(entries[j][0].value) for j in range(head + 1, end + 1))])
        raise yaml.constructor.ConstructorError(
            None, None, f"{{{key.value}: {names}}} reads as {key.value}: {value.value} and a setting "
            f"{entries[i][0].value!r} of no value: a list is written in brackets, {key.value}: [{names}]",
            entries[i][0].start_mark)


# YAML 1.2's floats: PyYAML follows YAML 1.1, whose floats need a dot, so that an unquoted 1e-3 or 7e1
# was read as the text "1e-3" (and refused as a setting written in quotes); this pattern, the one of
# YAML 1.2's core schema with YAML 1.1's underscores and sexagesimals kept, also takes an exponent
# without a dot. It replaces the float pattern in this loader's own copy of the resolvers, in place,
# so that the order of the patterns (and so every other value's reading) stays as it was.
_FLOAT_1_2 = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, _FLOAT_1_2 if tag == "tag:yaml.org,2002:float" else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml(path: Path) -> dict[str, Any]:
    """A settings file's mapping (conf/defaults.yaml, a vendor's, mlflow.yaml), each read alike: a
    number with an exponent and no dot is a number (YAML 1.2's floats), a key set twice is refused;
    a syntax error is a :class:`ConfigFileError` of one line naming the file, line and column, as is
    a file that is not UTF-8 text or cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigFileError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at position {err.start}): "
                              "save it as UTF-8") from None
    except OSError as err:
        raise ConfigFileError(f"{path}: cannot be read: {err.strerror or err}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as err:  # one line: the file, where, and what
        mark = err.problem_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(x) for x in (err.context, err.problem) if x)
        raise ConfigFileError(f"{path}{where}: YAML syntax error: {what}") from None
    except yaml.YAMLError as err:
        raise ConfigFileError(f"{path}: YAML syntax error: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping of settings at the top level")
    return data


def defaults_file(conf_dir: Path) -> Path | None:
    """``conf_dir``'s defaults.yaml, which every configuration starts from; a folder without it is a
    :class:`ConfigFileError`: the code's own defaults differ from the shipped file's (encode.encoder
    thesis, not rows), and a command ran on them without a word. None only for licanom installed
    outside a checkout, whose conf/ (never packaged) is not there and no other folder was named."""
    path = conf_dir / "defaults.yaml"
    if path.is_file():
        return path
    if conf_dir.resolve() == DEFAULT_CONF_DIR:
        if not conf_dir.exists() and not is_checkout(DEFAULT_CONF_DIR.parent):
            return None
        raise ConfigFileError(f"conf/defaults.yaml not found: {path} (restore it from the repository)")
    raise ConfigFileError(f"{path} not found: a configuration folder needs its defaults.yaml "
                          "(copy the repository's conf/defaults.yaml there)")


def load_config(
    vendor: str | None = None,
    conf_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Read defaults, then the vendor's overrides, then `overrides`; validate once. The source keeps
    the vendor's file, which :meth:`SourceConfig.path_missing` names."""
    conf_dir = conf_dir or default_conf_dir()
    defaults = defaults_file(conf_dir)
    data = read_yaml(defaults) if defaults is not None else {}
    path = None
    if vendor is not None:
        validate_vendor_name(vendor)
        path = vendor_file(vendor, conf_dir)
        if path.exists():
            data = _merge(data, read_yaml(path))
        data["vendor"] = vendor
        data.setdefault("source", {})  # read here, not the class's default: it keeps the vendor's file
    if overrides:
        data = _merge(data, overrides)
    # a relative output_dir is the project's (the folder above conf/), not the current folder's
    out = data.get("output_dir", Config.model_fields["output_dir"].default)
    if isinstance(out, str) and not Path(out).is_absolute():
        data["output_dir"] = str((conf_dir.resolve().parent / out).resolve())
    return Config.model_validate(data, context={VENDOR_FILE: path})


# a vendor's file in conf/vendors/: <vendor>.yaml, or <vendor>.yml (the one it has; both are refused)
VENDOR_SUFFIXES: tuple[str, ...] = (".yaml", ".yml")


def vendor_file(vendor: str, conf_dir: Path | None = None) -> Path:
    """The vendor's file, conf/vendors/<vendor>.yaml or <vendor>.yml (the .yaml one where it has
    neither); a vendor with both is a :class:`ConfigFileError` naming both (one would be ignored)."""
    folder = (conf_dir or default_conf_dir()) / "vendors"
    found = [path for path in (folder / f"{vendor}{suffix}" for suffix in VENDOR_SUFFIXES) if path.exists()]
    if len(found) > 1:
        raise ConfigFileError(f"vendor {vendor!r} has two files, {found[0]} and {found[1]}: keep one")
    return found[0] if found else folder / f"{vendor}{VENDOR_SUFFIXES[0]}"


def unknown_vendor_message(vendor: str, conf_dir: Path | None = None) -> str | None:
    """None when ``vendor`` has a file in conf/vendors/; else one line naming the vendors that do
    (or the two files of a vendor that has both)."""
    conf_dir = conf_dir or default_conf_dir()
    try:
        path = vendor_file(vendor, conf_dir)
    except ConfigFileError as err:
        return str(err)
    if path.exists():
        return None
    known = list_vendors(conf_dir)
    ignored = ignored_vendor_files(conf_dir)
    return (f"unknown vendor {vendor!r}: no {path} or {path.with_suffix('.yml').name}; vendors: "
            + (", ".join(known) if known else "none yet (add conf/vendors/<vendor>.yaml)")
            + (f"; {ignored}" if ignored else ""))


class VendorConfigError(ValueError):
    """A vendor's configuration, or the defaults every vendor's starts from, that cannot be used, in
    one sentence (:func:`vendor_config`, :func:`check_defaults`)."""


def vendor_config(vendor: str, conf_dir: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """:func:`load_config` for a vendor's flow: any error is one :class:`VendorConfigError` naming
    the vendor and each setting (:func:`describe_error`), not pydantic's text over many lines; a
    file source without its path is one too, naming the vendor's file to set it in."""
    try:
        cfg = load_config(vendor, conf_dir, overrides)
    except Exception as err:  # noqa: BLE001 - pydantic's, YAML's or ours: all the configuration's
        where = _setting_files(vendor, conf_dir or default_conf_dir())
        raise VendorConfigError(f"configuration error for vendor {vendor!r}: {describe_error(err, where)}") from None
    if missing := cfg.source.path_missing():  # set in no file: the vendor's is where it goes
        raise VendorConfigError(f"configuration error for vendor {vendor!r}: {missing}")
    return cfg


def check_defaults(conf_dir: Path | None = None) -> None:
    """conf/defaults.yaml, which every vendor's configuration starts from, checked once before a run of
    every vendor (the nightly flow): missing, or not readable as settings (YAML's syntax, a key set
    twice, a list without its brackets), it failed each vendor in turn with the same error. Only the
    file is judged: its settings are validated with each vendor's own (a setting the defaults leave to
    the vendors' files, as a Cryptolens product_id, is not an error of the defaults alone). Any error is
    one :class:`VendorConfigError` naming the file, as :func:`vendor_config`'s do."""
    conf_dir = conf_dir or default_conf_dir()
    try:
        path = defaults_file(conf_dir)
        if path is not None:
            read_yaml(path)
    except ConfigFileError as err:
        raise VendorConfigError(f"configuration error: {err}") from None


# what pydantic adds to a setting's ``loc``: a validator's or a union member's name ("function-after[...]",
# "literal[...]", "float", "tuple[str, ...]"), whole: a setting named like one (stride) is kept
_SCHEMA_TAG = re.compile(r"(?:function-[a-z-]+|literal|str|int|float|bool|tuple|list|dict)(?:\[.*\])?", re.S)


def _setting_keys(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """A setting's keys as its files write them, from pydantic's ``loc`` (its validators' and union
    members' names left out; ``validate_`` is ``validate``)."""
    return tuple("validate" if str(p) == "validate_" else str(p) for p in loc if not _SCHEMA_TAG.fullmatch(str(p)))


def _setting_files(vendor: str | None, conf_dir: Path) -> Callable[[tuple[str, ...]], str]:
    """For a setting's keys (:func:`_setting_keys`), `` (in FILE)``: the file that sets it, the
    vendor's (none for None) or conf/defaults.yaml (a slip in the defaults was read as the
    vendor's); empty where neither does (a setting missing, an override)."""
    files = []
    try:
        own = [vendor_file(vendor, conf_dir)] if vendor is not None else []
    except ConfigFileError:  # both files: the error being described says so
        own = []
    for path in (*own, conf_dir / "defaults.yaml"):
        try:
            files.append((path, read_yaml(path) if path.exists() else {}))
        except ConfigFileError:
            continue

    def where(keys: tuple[str, ...]) -> str:
        for path, node in files:
            for key in keys:
                if not isinstance(node, dict) or key not in node:
                    break
                node = node[key]
            else:
                if keys:
                    return f" (in {path})"
        return ""
    return where


def _section_keys(model_name: str, section: tuple[str, ...]) -> tuple[str, ...]:
    """The keys a file may write in ``section`` (``("detect",)``; ``()``: the top level) of the
    configuration model called ``model_name`` (a validation error's title: ``Config``), as the files
    write them (``validate``, not ``validate_``); none where that is no section of such a model."""
    model: type[BaseModel] | None = next((m for m in _Model.__subclasses__() if m.__name__ == model_name), None)
    for key in section:
        field = next((f for name, f in model.model_fields.items() if key in (name, f.alias)), None) if model else None
        inner = field.annotation if field else None
        model = inner if isinstance(inner, type) and issubclass(inner, _Model) else None
    return tuple(f.alias or name for name, f in model.model_fields.items()) if model else ()


def describe_error(err: Exception, where: Callable[[tuple[str, ...]], str] | None = None) -> str:
    """A configuration error as one sentence naming each setting: ``train.epochs must be greater
    than or equal to 1 (got 0)`` rather than pydantic's multi-line text with a documentation URL;
    ``where`` (a setting's place -> `` (in FILE)``) names the file that sets each. A key that no
    setting has is said with the one of its section it lies closest to (``detect.thresold: ...
    (did you mean 'threshold'?)``): a misspelt key is refused, and the file's line does not say which."""
    if not isinstance(err, PydanticValidationError):
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    parts = []
    for e in err.errors(include_url=False):
        keys = _setting_keys(tuple(e.get("loc", ())))
        loc = ".".join(keys)
        msg = str(e.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        msg = msg[:1].lower() + msg[1:]
        got = e.get("input")
        # the value once: not after a message that quotes it already ("unknown time zone 'X': ...")
        shown = ("" if isinstance(got, (dict, list, tuple)) or got is None or repr(got) in msg
                 else f" (got {got!r})")
        if (e.get("type") in ("int_type", "float_type") and _quoted_number(got)  # said as the decisions' check says it
                or e.get("type") == "bool_type" and _quoted_boolean(got)):
            shown = f", got {got!r} (quoted in the file: write it without quotes)"
        if e.get("type") == "extra_forbidden" and keys:
            shown += did_you_mean(keys[-1:], _section_keys(err.title, keys[:-1]))
        parts.append(f"{loc or 'the configuration'}: {msg}{shown}{where(keys) if where else ''}")
    return "; ".join(dict.fromkeys(parts))


def _quoted_number(value: object) -> bool:
    """Whether ``value`` is a text that reads as a number: a number written in quotes."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _quoted_boolean(value: object) -> bool:
    """Whether ``value`` is a text that the settings' YAML reads as true or false where it is not
    quoted (``"yes"``, ``'false'``, ``"On"``): a boolean written in quotes."""
    if not isinstance(value, str):
        return False
    try:
        return isinstance(yaml.load(value, Loader=_UniqueKeyLoader), bool)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError:
        return False


def _vendor_files(conf_dir: Path | None) -> list[Path]:
    """The .yaml and .yml files of conf/vendors/, sorted."""
    folder = (conf_dir or default_conf_dir()) / "vendors"
    return sorted(p for suffix in VENDOR_SUFFIXES for p in folder.glob(f"*{suffix}"))


def list_vendors(conf_dir: Path | None = None, warn: bool = False) -> list[str]:
    """Vendors with a file in conf/vendors/ (.yaml or .yml), sorted; a vendor with both is listed
    once, and refused when its configuration is read (:func:`vendor_file`). A file whose name is no
    vendor's name (``Acme.yaml``, ``acme.old.yaml``) is no vendor: left out, and with ``warn`` named
    in one warning (:func:`ignored_vendor_files`)."""
    if warn and (ignored := ignored_vendor_files(conf_dir)):
        log.warning("%s", ignored)
    return sorted({p.stem for p in _vendor_files(conf_dir) if VENDOR_NAME.fullmatch(p.stem)})


def require_vendors(conf_dir: Path | None = None, warn: bool = False) -> list[str]:
    """:func:`list_vendors` for a run of every vendor (the nightly flow, `licanom serve`, the
    deployments): none there (conf/vendors/ empty or missing) is a :class:`VendorConfigError`
    naming the folder looked in, as such a run would otherwise score nothing and succeed."""
    conf_dir = conf_dir or default_conf_dir()
    names = list_vendors(conf_dir)
    ignored = ignored_vendor_files(conf_dir) if warn or not names else None
    if not names:
        folder = conf_dir / "vendors"
        where = (f"no <vendor>.yaml or .yml in {folder}" if folder.is_dir()
                 else f"{folder} is not a folder" if folder.exists() else f"{folder} does not exist")
        raise VendorConfigError(f"configuration error: no vendors configured: {where} (add one file per vendor)"
                                + (f"; {ignored}" if ignored else ""))
    if ignored:
        log.warning("%s", ignored)
    return names


def ignored_vendor_files(conf_dir: Path | None = None) -> str | None:
    """One line naming the files of conf/vendors/ whose name is no vendor's name, which no run,
    deployment or nightly reads, and why; None where there are none."""
    files = [str(p) for p in _vendor_files(conf_dir) if not VENDOR_NAME.fullmatch(p.stem)]
    if not files:
        return None
    return (f"ignored, not vendors: {', '.join(files)} (a vendor's file is named <vendor>.yaml or .yml, the vendor "
            "1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit)")


class VendorsFailedError(RuntimeError):
    """A nightly run whose vendors failed (:attr:`NightlyOutcome.error`): its message, and the exit
    code `licanom run` ends with, as `licanom run score` would for them (:attr:`NightlyOutcome.exit_code`)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message, exit_code)  # both in args: the error pickles whole (a Dask worker, a stored result)
        self.exit_code = exit_code

    def __str__(self) -> str:
        return str(self.args[0])


# the exit code of a vendor whose run failed otherwise than on its input or configuration (licanom.cli.EXIT_ERROR)
OTHER_FAILURE = 1


@dataclass(frozen=True)
class NightlyOutcome:
    """The vendors' runs of one nightly flow: a line per vendor, the vendors that failed and the
    exit code of each of those (as `licanom run score` ends for that vendor's failure)."""

    lines: tuple[str, ...]
    failed: tuple[str, ...]
    codes: tuple[int, ...] = ()

    @property
    def exit_code(self) -> int:
        """0 when no vendor failed; the failed vendors' exit code where they share one (4: each a log
        source that failed); else 1, each vendor's line saying its own failure."""
        if not self.failed:
            return 0
        shared = set(self.codes or (OTHER_FAILURE,))
        return shared.pop() if len(shared) == 1 else OTHER_FAILURE

    @property
    def error(self) -> VendorsFailedError:
        """What a failed nightly run carries for `licanom run`: its message and exit code."""
        return VendorsFailedError(self.message, self.exit_code)

    @property
    def message(self) -> str:
        """What the nightly run ends with: the failures first, then every vendor's line."""
        head = (f"{len(self.failed)} of {len(self.lines)} vendors failed: {', '.join(self.failed)}" if self.failed
                else f"{len(self.lines)} vendors scored")
        return "\n".join((head, *self.lines))


def report_outcomes(outcomes: list[tuple[str, str, str, int]]) -> NightlyOutcome:
    """One line per vendor run (name, final state, message, exit code: 0, or that of its failure),
    printed; the caller fails the nightly run where a vendor failed (its flow returns a failed state:
    one line, not a traceback, since each vendor's own run holds its error)."""
    lines = tuple(f"{name}: {state.lower()}" + (f" - {msg}" if state != "COMPLETED" and msg else "")
                  for name, state, msg, _ in outcomes)
    for line in lines:
        print(line)
    failed = [(name, code or OTHER_FAILURE) for name, state, _, code in outcomes if state != "COMPLETED"]
    return NightlyOutcome(lines, tuple(name for name, _ in failed), tuple(code for _, code in failed))
