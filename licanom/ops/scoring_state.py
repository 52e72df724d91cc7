"""A vendor's scoring state between nights: the watermark (last Id accounted for), the carried
tail, the far-beyond Ids already quarantined and, for a context model, the (key, machine code)
and (key, country) pairs seen in the nights scored since the model was trained (so that a pair
is new to its key once, not every night), each with the Id where a night first saw it (so that a
night scored again judges them as the nights did); for a model that reads the rows mode, the rows
encoder's state of those nights (:class:`NightsRows`: each value's and pair's first time, each
key's last request), which advances the training rows' state.

Layout under ``out/<vendor>/state/``:

- ``g-<n>/``: one generation, written once and never changed: ``tail.parquet``, the key
  pairs (``key_machines.parquet``, ``key_countries.parquet``) and the rows state
  (``rows_state.json``);
- ``state.json``: the watermark, the model version, the generation it belongs to and the
  night it published. Replacing it (one ``rename``) commits the watermark, the tail, the pairs,
  the rows state and the night together: a process killed at any moment leaves either the old
  state or the new one, never half of each.

A ``state.json`` of the first layout (no ``format``; tail and pairs beside it) is still read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from licanom.data.columns import RAW
from licanom.data.context_vector import KeyHistory
from licanom.data.encode import RowsState

STATE_FORMAT = 2
SEEN_BEFORE_DIR = "seen-before"  # in a generation: the pairs before its last night (VendorState.seen_before)
STATE_FILE = "state.json"
ROWS_FILE = "rows_state.json"  # in the generation: the rows encoder's state of the nights scored (NightsRows)
ROWS_FORMAT = 1

# --- fault injection ----------------------------------------------------------------------

CRASH_ENV = "LICANOM_CRASH_AT"
# Every point where a night can be killed, in the order a night passes them: after each step
# (task) and inside the writes. With LICANOM_CRASH_AT=<point> set, the process kills itself
# there with SIGKILL (no handler, no ``finally`` runs), as ``kill -9`` would. Only the
# fault-injection tests and ``make bench-faults`` set it.
CRASH_POINTS: tuple[str, ...] = (
    "after:lock", "after:recover", "after:load_champion", "after:load_state", "after:extract",
    "after:validate", "after:windows", "after:score",
    "stage:chunks", "stage:quarantine", "stage:ledger", "stage:report", "after:stage",
    "log:run-started", "log:metrics", "after:log",
    "commit:generation", "commit:state-half", "commit:state-tmp", "after:commit",
    "publish:renamed", "after:publish",
)


def crash_point(name: str) -> None:
    """Kill this process here (SIGKILL) when LICANOM_CRASH_AT names this point; else nothing."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


# --- errors that name the file ------------------------------------------------------------

class StateError(RuntimeError):
    """The vendor's state cannot be used as it is (the message names the file and what to do).
    Retrying meets the same error: never retried."""


class StateCorruptError(StateError):
    """state.json or a file of its generation cannot be read."""


class StateMissingError(StateError):
    """A vendor with a trained model has no state.json."""


def _fresh_hint(output_dir: Path, vendor: str) -> str:
    last = last_night_watermark(output_dir, vendor)
    since = str(last) if last is not None else "<the last Id scored>"
    return (f"to go on after a known Id, run `licanom run score --vendor {vendor} --since {since}`"
            + (" (the newest night folder ends at that Id)" if last is not None else "")
            + f"; to start afresh after the training rows, retrain: `licanom run train --vendor {vendor}`")


def night_range(name: str) -> tuple[int, int] | None:
    """The Ids (after A, to B] of a night folder's name ``after-A-to-B`` (a ``-n`` suffix allowed:
    a night that did not move the watermark), or None for another name."""
    m = re.fullmatch(r"after-(\d+)-to-(\d+)(?:-\d+)?", name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def night_ranges(output_dir: Path, vendor: str) -> list[tuple[int, int]]:
    """The Id ranges of the vendor's published night folders (``nights/after-A-to-B``: :func:`night_range`)."""
    return [r for d in (output_dir / vendor / "nights").glob("after-*-to-*") if (r := night_range(d.name))]


def last_night_watermark(output_dir: Path, vendor: str) -> int | None:
    """The highest Id a published night folder (``nights/after-A-to-B``) names, or None."""
    ends = [b for _, b in night_ranges(output_dir, vendor)]
    return max(ends) if ends else None


# --- the state ----------------------------------------------------------------------------

@dataclass(frozen=True)
class NightRecord:
    """The night a state committed: its folder while staged and once published, and its MLflow run."""

    name: str           # nights/<name>
    staging: str        # nights/.staging/<...>, renamed to nights/<name> after the commit
    run_id: str | None  # left RUNNING until the folder is published


@dataclass(frozen=True)
class NightsRows:
    """The rows encoder's state of the nights one model version scored (the rows their windows
    scored, not a tail carried on), which advances the training rows' state
    (:meth:`licanom.data.encode.RowsState.advanced`).

    ``after``: through the last night; ``before``: before the last night (None: it was the
    first, the training rows' state alone) and ``last_from``: the watermark before the last
    night, so that scoring the last night again from its start (``--since``) judges its rows as
    they were judged (a key's gap counts from its last request *before* them)."""

    after: RowsState
    before: RowsState | None = None
    last_from: int | None = None

    def judging(self, since: int | None, watermark: int | None) -> RowsState | None:
        """The state to judge the rows after ``since`` (None: after ``watermark``, the next night)
        against: ``after``, or ``before`` when ``since`` is the last night's start or earlier
        (older nights are judged against the state before the last night: each value's first
        time is kept, and so whether it is new, but a key's last request is the latest known, so
        its gap before its first request of such a night may be the training median instead)."""
        if since is None or watermark is None or since >= watermark or self.last_from is None \
                or since > self.last_from:
            return self.after
        return self.before

    def then(self, night: RowsState, watermark_before: int | None) -> NightsRows:
        """These nights and one more (``night``: the state of the rows it scored; ``watermark_before``:
        the vendor's watermark before it)."""
        return NightsRows(after=self.after.advanced(night), before=self.after, last_from=watermark_before)

    def to_dict(self) -> dict[str, object]:
        return {"format": ROWS_FORMAT, "after": self.after.to_dict(),
                "before": None if self.before is None else self.before.to_dict(), "last_from": self.last_from}

    @classmethod
    def from_dict(cls, data: object) -> NightsRows:
        if not isinstance(data, dict) or data.get("format") != ROWS_FORMAT:
            raise ValueError(f"not a rows state of format {ROWS_FORMAT}")
        last_from = data.get("last_from")
        if last_from is not None and (isinstance(last_from, bool) or not isinstance(last_from, int)):
            raise ValueError(f"last_from {last_from!r} is not an integer")
        before = data.get("before")
        return cls(after=RowsState.from_dict(data.get("after")),  # type: ignore[arg-type]
                   before=None if before is None else RowsState.from_dict(before), last_from=last_from)


@dataclass(frozen=True)
class VendorState:
    watermark: int | None  # the highest Id accounted for; the next night reads Id > watermark
    tail: pl.DataFrame     # valid rows after the last full window, scored next time
    model_version: str | None = None
    seen: KeyHistory | None = None  # pairs of the nights scored with model_version (context models)
    rows: NightsRows | None = None  # rows encoder's state of the nights scored with model_version (rows mode)
    ahead: tuple[int, ...] = ()  # Ids beyond the watermark already quarantined (far beyond): not read again
    generation: int = 0
    night: NightRecord | None = None  # the night this state was committed with
    exists: bool = True  # False: no state.json (a vendor never trained, or the file was lost)
    # the pairs before the last night (None: it was the first, or the pairs keep their first Ids:
    # KeyHistory.marked) and the watermark before it, so that the last night scored again from its
    # start is judged as it was (None: a state written before these were kept)
    seen_before: KeyHistory | None = None
    seen_from: int | None = None
    # distinct readable Ids of a file source at or below the watermark, as the last night counted
    # them (None: not counted): more at the next night means rows arrived late, below the watermark.
    # Kept in state.json as "source_ids"; the "source_rows" that states before held counted rows (an
    # Id delivered twice counted twice) and is not read: the first night after them counts afresh
    source_rows: int | None = None
    # the most distinct Ids the source held at or below the watermark, as counted (None: not
    # counted): Ids back after the source shrank (a file moved back) are not late rows
    source_most: int | None = None
    # the same count per file of the source, by the file's path relative to it (None: not counted
    # per file): a file whose count grew names where rows arrived late. Only the files whose lowest such Id
    # lies after ``source_settled``'s Id are listed: the older ones are counted together there
    source_files: dict[str, int] | None = None
    # (Id, count): the files whose lowest Id at or below the watermark is at or below that Id, counted
    # together (the sum of their counts), so that the state does not grow with every file of an export
    # (None: none counted so; see :func:`licanom.ops.nightly.late_rows`). Kept in state.json as
    # "source_files_settled" ({"to": Id, "ids": count})
    source_settled: tuple[int, int] | None = None
    # the most rows beyond one per distinct Id that the source held at or below the watermark, as
    # counted (None: not counted): more at the next night means rows delivered again under Ids the
    # source held already (an export that overlaps an earlier one), which the nights do not read.
    # Kept in state.json as "source_copies"
    source_copies: int | None = None
    # notes runs that published no night gave (late rows, a source that shrank or grew back): the
    # latest of each kind, when it was given (ISO 8601, UTC) and how many earlier ones of its kind it
    # replaced; kept for the next forward night's report and cleared by the commit of that night (so a
    # night killed before its commit loses none; a night scored again leaves them)
    notes: tuple[tuple[str, str, int], ...] = ()

    def seen_by(self, model_version: str | None) -> KeyHistory | None:
        """The pairs seen by ``model_version``; None for another version (a new model starts afresh)."""
        return self.seen if self.model_version == model_version else None

    def seen_judging(self, model_version: str | None, since: int | None = None) -> KeyHistory | None:
        """The pairs to judge the rows after ``since`` (None: the next night) against: those of
        every night ``model_version`` scored, for ``since`` below the watermark those first seen at
        or below it (:meth:`KeyHistory.through`), so that a night scored again from any Id judges
        the pairs new to a key as the nights did. Pairs saved before they kept their first Ids: those
        before the last night when ``since`` is the last night's start or earlier (older nights are
        judged against those too, their own pairs counted as seen: :meth:`seen_unsure`)."""
        seen = self.seen_by(model_version)
        if seen is None or since is None or self.watermark is None or since >= self.watermark:
            return seen
        if seen.marked:
            return seen.through(since)
        if self.seen_from is None or since > self.seen_from:
            return seen
        return self.seen_before

    def seen_unsure(self, model_version: str | None, since: int | None) -> bool:
        """Whether the pairs that :meth:`seen_judging` gives for ``since`` may hold pairs that the
        nights it scores again saw first (counted as seen, which flags fewer new machines and
        countries than those nights did): pairs saved before they kept their first Ids, scored again
        from before the last night's start or from within that night."""
        seen = self.seen_by(model_version)
        return (since is not None and self.watermark is not None and since < self.watermark and seen is not None
                and not seen.marked and since != self.seen_from and self.seen_judging(model_version, since) is not None)

    def rows_by(self, model_version: str | None) -> NightsRows | None:
        """The rows state of the nights ``model_version`` scored; None for another version (a new
        model starts from its training rows' state)."""
        return self.rows if self.model_version == model_version else None

    def rows_judging(self, model_version: str | None, since: int | None = None) -> RowsState | None:
        """The rows state (of the nights scored) that ``model_version``'s training state is
        advanced by to score the rows after ``since`` (None: the next night): see
        :meth:`NightsRows.judging`. None: the training rows' state alone."""
        nights = self.rows_by(model_version)
        return nights.judging(since, self.watermark) if nights is not None else None


def state_dir(output_dir: Path, vendor: str) -> Path:
    return output_dir / vendor / "state"


def empty_tail() -> pl.DataFrame:
    from licanom.data.validate import validate_log

    return validate_log(pl.DataFrame({c: [] for c in RAW[:7]}, schema={c: pl.String for c in RAW[:7]})).valid


def _corrupt(path: Path, err: BaseException, output_dir: Path, vendor: str) -> StateCorruptError:
    first = f"{type(err).__name__}: {err}".splitlines()[0][:200]
    return StateCorruptError(
        f"{path} is damaged ({first}): restore out/{vendor}/state/ from a backup, or move it aside and "
        + _fresh_hint(output_dir, vendor))


def load_state(output_dir: Path, vendor: str) -> VendorState:
    """The committed state; an empty one (``exists=False``) where there is no state.json."""
    d = state_dir(output_dir, vendor)
    path = d / STATE_FILE
    if not path.exists():
        return VendorState(watermark=None, tail=empty_tail(), exists=False)
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        watermark = meta.get("watermark")
        if watermark is not None and (isinstance(watermark, bool) or not isinstance(watermark, int)):
            raise ValueError(f"watermark {watermark!r} is not an integer")
        generation = int(meta.get("generation", 0))
        ahead = tuple(int(i) for i in meta.get("ahead", ()))
        night = NightRecord(**meta["night"]) if meta.get("night") else None
        model_version = meta.get("model_version")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as err:
        raise _corrupt(path, err, output_dir, vendor) from err
    files = d / f"g-{generation:08d}" if meta.get("format") == STATE_FORMAT else d
    tail_path = files / "tail.parquet"
    try:
        tail = pl.read_parquet(tail_path) if tail_path.exists() else empty_tail()
        missing = [c for c in RAW if c not in tail.columns]
        if missing:
            raise ValueError(f"no column(s) {missing}")
    except (OSError, pl.exceptions.PolarsError, ValueError) as err:
        raise _corrupt(tail_path, err, output_dir, vendor) from err
    if meta.get("format") == STATE_FORMAT and not tail_path.exists():
        raise _corrupt(tail_path, FileNotFoundError("missing"), output_dir, vendor)
    try:
        seen = KeyHistory.load(files)
        seen_before = KeyHistory.load(files / SEEN_BEFORE_DIR)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise _corrupt(files / "key_machines.parquet", err, output_dir, vendor) from err
    seen_from, source_rows = meta.get("seen_from"), meta.get("source_ids")  # absent from older states
    source_most = meta.get("source_ids_most", source_rows)
    source_copies = meta.get("source_copies")
    for name, value in (("seen_from", seen_from), ("source_ids", source_rows), ("source_ids_most", source_most),
                        ("source_copies", source_copies)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _corrupt(path, ValueError(f"{name} {value!r} is not an integer"), output_dir, vendor)
    source_files = meta.get("source_files")
    if source_files is not None and (not isinstance(source_files, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in source_files.items())):
        raise _corrupt(path, ValueError("source_files is not an object of counts"), output_dir, vendor)
    settled = meta.get("source_files_settled")
    if settled is not None and (not isinstance(settled, dict) or not all(
            isinstance(settled.get(k), int) and not isinstance(settled.get(k), bool) for k in ("to", "ids"))):
        raise _corrupt(path, ValueError("source_files_settled is not an object of an Id and a count"), output_dir,
                       vendor)
    notes = meta.get("notes") or []
    if not isinstance(notes, list) or not all(
            isinstance(n, dict) and isinstance(n.get("note"), str) and isinstance(n.get("given"), str)
            and isinstance(n.get("dropped", 0), int) and not isinstance(n.get("dropped", 0), bool) for n in notes):
        raise _corrupt(path, ValueError("notes is not a list of notes"), output_dir, vendor)
    rows_path = files / ROWS_FILE
    try:
        rows = NightsRows.from_dict(json.loads(rows_path.read_text())) if rows_path.exists() else None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise _corrupt(rows_path, err, output_dir, vendor) from err
    return VendorState(watermark=watermark, tail=tail.select(RAW), model_version=model_version, seen=seen,
                       rows=rows, ahead=ahead, generation=generation, night=night, seen_before=seen_before,
                       seen_from=seen_from, source_rows=source_rows, source_most=source_most,
                       source_files=source_files, source_copies=source_copies,
                       source_settled=None if settled is None else (settled["to"], settled["ids"]),
                       notes=tuple((n["note"], n["given"], n.get("dropped", 0)) for n in notes))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(output_dir: Path, vendor: str, new: VendorState) -> VendorState:
    """Write ``new`` as the vendor's state in one step: its files to a new generation folder,
    then state.json replaced by a rename (the commit). Older generations are removed after."""
    d = state_dir(output_dir, vendor)
    d.mkdir(parents=True, exist_ok=True)
    current = _committed_generation(d)
    generation = max(current, new.generation) + 1
    g = d / f"g-{generation:08d}"
    if g.exists():  # left by a night killed before its commit
        shutil.rmtree(g)
    g.mkdir()
    new.tail.select(RAW).write_parquet(g / "tail.parquet")
    if new.seen is not None:
        new.seen.save(g)
    if new.seen_before is not None:
        new.seen_before.save(g / SEEN_BEFORE_DIR)
        for f in (g / SEEN_BEFORE_DIR).iterdir():
            _fsync(f)
    if new.rows is not None:
        (g / ROWS_FILE).write_text(json.dumps(new.rows.to_dict(), sort_keys=True))
    for f in g.iterdir():
        _fsync(f)
    _fsync(g)
    crash_point("commit:generation")
    text = json.dumps({
        "format": STATE_FORMAT, "watermark": new.watermark, "model_version": new.model_version,
        "generation": generation, "ahead": list(new.ahead), "seen_from": new.seen_from,
        "source_ids": new.source_rows, "source_ids_most": new.source_most, "source_files": new.source_files,
        "source_copies": new.source_copies,
        "source_files_settled": None if new.source_settled is None else {"to": new.source_settled[0],
                                                                        "ids": new.source_settled[1]},
        "notes": [{"note": note, "given": given, "dropped": dropped} for note, given, dropped in new.notes],
        "night": None if new.night is None else {"name": new.night.name, "staging": new.night.staging,
                                                 "run_id": new.night.run_id},
    })
    tmp = d / f"{STATE_FILE}.tmp"
    with open(tmp, "w") as f:
        half = len(text) // 2
        f.write(text[:half])
        f.flush()
        crash_point("commit:state-half")
        f.write(text[half:])
        f.flush()
        os.fsync(f.fileno())
    crash_point("commit:state-tmp")
    os.replace(tmp, d / STATE_FILE)
    _fsync(d)
    tidy(output_dir, vendor)
    return replace(new, generation=generation, exists=True)


def _committed_generation(d: Path) -> int:
    try:
        meta = json.loads((d / STATE_FILE).read_text())
        return int(meta.get("generation", 0)) if isinstance(meta, dict) else 0
    except (OSError, ValueError, TypeError):
        return 0


def tidy(output_dir: Path, vendor: str) -> list[str]:
    """Remove what a killed commit left: a state.json.tmp, generations other than the committed
    one, files of the first layout. What was removed, as short notes."""
    d = state_dir(output_dir, vendor)
    if not (d / STATE_FILE).exists():
        return []
    notes = []
    keep = f"g-{_committed_generation(d):08d}"
    for p in d.iterdir():
        if p.name == f"{STATE_FILE}.tmp" or (p.is_dir() and p.name.startswith("g-") and p.name != keep):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            notes.append(f"removed {p.name} (a commit that did not finish)")
    meta_format = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        meta_format = json.loads((d / STATE_FILE).read_text()).get("format")
    if meta_format == STATE_FORMAT:
        for name in ("tail.parquet", "tail.parquet.tmp", *KeyHistory.file_names()):
            (d / name).unlink(missing_ok=True)
    return notes


class VendorBusyError(RuntimeError):
    """Another run holds the vendor's lock for longer than we were willing to wait."""


@dataclass(frozen=True)
class LockHeld:
    """The vendor's lock, held: ``waited``, the seconds this run waited for another run of the
    vendor to free it (None: it was free), for the run to say so (its night reads after the
    watermark that run left, and finds nothing new where that run read the rows)."""

    waited: float | None = None


@contextlib.contextmanager
def vendor_lock(output_dir: Path, vendor: str, timeout: float = 3600.0, poll: float = 0.2) -> Iterator[LockHeld]:
    """Hold the vendor's scoring lock (an exclusive ``flock`` on ``<state>/lock``); yields a
    :class:`LockHeld` saying whether (and how long) this run waited for it.

    Two runs for the same vendor, in one process or in two, take turns: the second one waits
    (up to ``timeout`` seconds, then :class:`VendorBusyError`) and then reads the state the
    first one left, so a night is never scored twice and the watermark moves once. The lock
    is released by the kernel if its holder dies, so a killed run never blocks the next one.
    """
    d = state_dir(output_dir, vendor)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        began = time.monotonic()
        deadline = began + timeout
        waited = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = 0.0  # another run holds it
                if time.monotonic() >= deadline:
                    raise VendorBusyError(
                        f"vendor {vendor!r} is being scored by another run (lock {d / 'lock'}) "
                        f"for more than {timeout:.0f} s; run again when it has ended (the lock is freed when "
                        f"its run ends or dies)"
                    ) from None
                time.sleep(poll)
        if waited is not None:
            waited = time.monotonic() - began
        try:
            yield LockHeld(waited)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def advance(output_dir: Path, vendor: str, watermark: int | None, tail: pl.DataFrame,
            model_version: str | None, seen: KeyHistory | None = None, *,
            ahead: tuple[int, ...] | None = None, night: NightRecord | None = None,
            rows: RowsState | None = None, source_rows: int | None = None,
            source_most: int | None = None, source_files: dict[str, int] | None = None,
            source_copies: int | None = None, source_settled: tuple[int, int] | None = None,
            notes_said: bool = False, notes_cleared: tuple[str, ...] = ()) -> VendorState:
    """Record a finished night: the new watermark, the rows to carry into the next one, the key
    pairs it saw (``seen``, added to those of the earlier nights of the same model version),
    the rows encoder's state of the rows it scored (``rows``, advancing that of the earlier
    nights of the same model version), the far-beyond Ids it quarantined (``ahead``), the
    night folder it publishes (``night``) and the source's rows at or below the new watermark as
    the next night should count them (``source_rows``, None: not counted; ``source_most``, the most it
    held; ``source_files``, the same per file, but for the older files counted together in
    ``source_settled``; ``source_copies``, the most rows beyond one per Id it held: see
    :func:`count_source`). With ``notes_said`` (a
    forward night, whose report said them) the notes that runs without a night kept
    (:attr:`VendorState.notes`) are cleared; a night scored again leaves them for the next, but for
    those it made untrue (``notes_cleared``: late rows it read and scored).

    The watermark never moves back: re-running an older night (``since`` below the current
    watermark) keeps the state as it was, pairs and rows state included; only its ``night`` is
    recorded, so that its folder is published like any other.
    """
    current = load_state(output_dir, vendor)
    kept = tuple(sorted({*current.ahead, *(ahead or ())}))
    if current.exists and (watermark is None or (current.watermark is not None and watermark <= current.watermark)):
        # nothing new was accounted for (or an older night was re-scored): watermark, tail and
        # pairs stay; the night's folder, any far-beyond Ids and the source's count are recorded
        counted = {} if source_rows is None else {"source_rows": source_rows, "source_most": source_most,
                                                  "source_files": source_files, "source_copies": source_copies,
                                                  "source_settled": source_settled}
        if (night is None and kept == current.ahead and all(getattr(current, k) == v for k, v in counted.items())
                and not (notes_said and current.notes) and not notes_cleared):
            return current
        return commit(output_dir, vendor, replace(current, ahead=kept, night=night, **counted,
                                                  notes=_notes_left(current, notes_said, notes_cleared)))
    earlier = current.seen_by(model_version)
    # what the next run needs to judge this night again as it is judged now
    seen_before, seen_from = earlier, current.watermark
    if seen is not None and earlier is not None:
        seen = earlier.union(seen)  # unmarked where the earlier pairs were saved so (as they were judged)
    elif seen is None and current.model_version == model_version:
        seen = earlier  # a night with no full window adds no pairs and loses none
    if seen is not None and seen.marked:
        seen_before = None  # the pairs' first Ids tell those before any Id
    nights = current.rows_by(model_version)
    if rows is None:
        carried = nights  # likewise: a night with no full window keeps the rows state
    elif nights is None:
        carried = NightsRows(after=rows, before=None, last_from=current.watermark)
    else:
        carried = nights.then(rows, current.watermark)
    new = VendorState(watermark=watermark, tail=tail, model_version=model_version, seen=seen, rows=carried,
                      ahead=tuple(i for i in kept if watermark is None or i > watermark),
                      generation=current.generation, night=night, seen_before=seen_before, seen_from=seen_from,
                      source_rows=source_rows, source_most=source_most, source_files=source_files,
                      source_copies=source_copies, source_settled=source_settled,
                      notes=_notes_left(current, notes_said, notes_cleared))
    return commit(output_dir, vendor, new)


def _notes_left(current: VendorState, said: bool, cleared: tuple[str, ...]) -> tuple[tuple[str, str, int], ...]:
    """The kept notes a night's commit leaves: none where its report said them, else those it did not clear."""
    return () if said else tuple(n for n in current.notes if n[0] not in cleared)


def count_source(output_dir: Path, vendor: str, source_rows: int | None, source_most: int | None,
                 source_files: dict[str, int] | None = None, notes: tuple[str, ...] = (),
                 source_copies: int | None = None, source_settled: tuple[int, int] | None = None) -> VendorState:
    """Record the source's count of Ids at or below the watermark after a run that read nothing new
    (no night to commit), so that its late rows, rows delivered again or a shrink are named once, not
    at every run, and keep what that run said of them (``notes``) for the report of the next forward
    night that reads rows (:attr:`VendorState.notes`): of each kind (the text before its ``:``, "late
    rows", "delivered again", "source shrank", "source grew back") the latest, which counts the earlier
    ones it replaced, so that a file moved away and back night after night does not grow the state."""
    current = load_state(output_dir, vendor)
    if not current.exists:
        return current
    counted = {} if source_rows is None else {"source_rows": source_rows, "source_most": source_most,
                                              "source_files": source_files, "source_copies": source_copies,
                                              "source_settled": source_settled}
    if not notes and all(getattr(current, k) == v for k, v in counted.items()):
        return current
    from datetime import UTC, datetime

    given = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kept = list(current.notes)
    for note in notes:
        kind = note.split(":", 1)[0]
        same = [k for k in kept if k[0].split(":", 1)[0] == kind]
        kept = [k for k in kept if k[0].split(":", 1)[0] != kind]
        kept.append((note, given, sum(dropped + 1 for _, _, dropped in same)))
    return commit(output_dir, vendor, replace(current, **counted, notes=tuple(kept)))


def start_after(output_dir: Path, vendor: str, watermark: int | None) -> VendorState:
    """Before a vendor's first night: scoring starts after the rows the model was trained on.

    An existing state is left as it is (retraining never rewinds or skips nights).
    """
    current = load_state(output_dir, vendor)
    if current.exists:
        return current
    return commit(output_dir, vendor, VendorState(watermark=watermark, tail=empty_tail()))


def as_dict(state: VendorState) -> dict[str, Any]:
    """The state's scalar fields (for logs and reports)."""
    return {"watermark": state.watermark, "model_version": state.model_version, "tail_rows": state.tail.height,
            "ahead": list(state.ahead), "generation": state.generation}
