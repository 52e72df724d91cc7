"""`licanom detect --out DIR` into a folder of an earlier run: the earlier run's outputs are set
aside (DIR/.earlier-run) until the new run has succeeded, and put back as they were when it is
refused, fails or is stopped; a refused log's quarantine is kept under a name of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from licanom.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, main
from licanom.ops.earlier_run import ASIDE
from tests.conftest import make_raw_log


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too), by its path relative to it, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def detect(log: Path, out: Path, *more: str, model: str = "Tail_context") -> int:
    """`licanom detect` of ``log`` into ``out``, without M1 (the fastest run of ``model``)."""
    return main(["detect", "--logs", str(log), "--model", model, "--no-m1", *more, "--out", str(out)])


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    """A good log, one without its State column, one of too many bad rows, and labels of another log."""
    folder = tmp_path_factory.mktemp("logs")
    good = make_raw_log(1200).with_columns(pl.col("Time").dt.epoch("s"))
    good.write_csv(folder / "good.csv")
    good.drop("State").write_csv(folder / "nostate.csv")
    bad = make_raw_log(300).with_columns(pl.col("Time").cast(pl.String))
    bad.with_columns(pl.when(pl.int_range(pl.len()) < 30).then(pl.lit("01/02/2025 10:01")).otherwise(pl.col("Time"))
                     .alias("Time")).write_csv(folder / "many_bad.csv")
    pl.DataFrame({"Id": range(9000, 9007), "label": [1] * 7}).write_csv(folder / "other_labels.csv")
    return {p.stem: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def earlier_run(logs, tmp_path_factory) -> Path:
    """The folder of one run of detect (trained once for the module; each test works on a copy)."""
    out = tmp_path_factory.mktemp("earlier") / "det"
    assert detect(logs["good"], out) == EXIT_OK
    return out


@pytest.fixture
def out(earlier_run, tmp_path) -> Path:
    """A copy of the earlier run's folder, with a file of the user's beside its outputs."""
    folder = tmp_path / "det"
    shutil.copytree(earlier_run, folder)
    (folder / "notes.txt").write_text("mine")
    return folder


@pytest.mark.parametrize(("refused", "code"), [("nostate", EXIT_BAD_INPUT), ("labels", EXIT_USAGE)])
def test_a_refused_run_leaves_the_earlier_run_as_it_was(refused, code, logs, out, capsys):
    """A log without a required column, or labels of none of its rows (refused after the log is
    read): the earlier run's files were removed before the log was read, and lost."""
    before = files(out)
    if refused == "nostate":
        assert detect(logs["nostate"], out) == code
    else:
        assert detect(logs["good"], out, "--labels", str(logs["other_labels"]), model="GRU_OCSVM") == code
    assert files(out) == before and not (out / ASIDE).exists()
    said = capsys.readouterr()
    assert len(said.err.splitlines()) == 1
    assert f"set aside in {out / ASIDE}" in said.out
    assert f"the earlier run's {len(before) - 1} output file(s) put back" in said.out


def test_a_run_stopped_in_training_puts_the_earlier_run_back_and_removes_its_own(logs, out, tmp_path, monkeypatch,
                                                                                 capsys):
    """Ctrl-C (or any error) in training: the files this run wrote (its vocabulary and quarantine, a
    model) go, the earlier run's come back; in a folder that was empty or not there, nothing stays."""
    import licanom.ops.detect

    def stopped_after_a_model(*args, **kwargs):
        assert (folder / "vocabulary.json").exists()  # written by this run before training
        (folder / "models").mkdir(exist_ok=True)
        (folder / "models" / "TCN_AE.pt").write_bytes(b"half")
        raise KeyboardInterrupt

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(licanom.ops.detect, "detect", stopped_after_a_model)
    before = files(out)
    for folder in (out, empty, tmp_path / "new"):
        assert detect(logs["good"], folder) == 130
        assert capsys.readouterr().err == "licanom: interrupted\n"
    assert files(out) == before and not (out / ASIDE).exists()
    assert empty.is_dir() and not any(empty.iterdir())
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("train_logs", [False, True])
def test_a_log_refused_for_bad_rows_keeps_its_quarantine_where_the_refusal_says(train_logs, logs, out, capsys):
    """The refused log's quarantine is refused-quarantine.parquet, named by the refusal; the earlier
    run's quarantine.parquet (and every other file of it) comes back beside the earlier run's results.
    With --train-logs the scored log is refused after training: the model trained is removed."""
    before = files(out)
    more = ("--train-logs", str(logs["good"])) if train_logs else ()
    for _ in range(2):  # and again: the second refusal's quarantine replaces the first's
        assert detect(logs["many_bad"], out, *more, model="LOF_context") == EXIT_BAD_INPUT
        now = files(out)
        kept = now.pop("refused-quarantine.parquet")
        assert now == before and not (out / ASIDE).exists()
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "validate.max_bad_fraction" in err
        assert err.rstrip().endswith(f"each with its reason: {out / 'refused-quarantine.parquet'}"), err
        quarantine = pl.read_parquet(kept)
        assert quarantine.height == 30 and set(quarantine["reason"].to_list()) == {"Time: unparsable"}


def test_a_run_that_succeeds_replaces_the_earlier_run_and_its_refused_quarantine(logs, out, capsys):
    """A refusal first (its quarantine kept), then a run that succeeds: only its outputs stay (and
    the user's file), none of the earlier run's or of the refusal, and no folder set aside."""
    assert detect(logs["many_bad"], out) == EXIT_BAD_INPUT
    assert (out / "refused-quarantine.parquet").exists()
    n = len(files(out)) - 1  # the earlier run's outputs and the refused quarantine, not the user's file
    capsys.readouterr()
    assert detect(logs["good"], out, model="LOF_context") == EXIT_OK
    printed = capsys.readouterr().out
    assert (f"--out {out}: an earlier run's {n} output file(s) set aside in {out / ASIDE}, "
            "put back if this run fails") in printed
    assert f"--out {out}: an earlier run's {n} output file(s) removed, replaced by this run's" in printed
    assert not (out / ASIDE).exists() and not (out / "refused-quarantine.parquet").exists()
    assert sorted(p.name for p in (out / "models").iterdir()) == ["LOF_context.pt"]
    assert (out / "notes.txt").read_text() == "mine"
    assert set(pl.read_parquet(out / "chunks.parquet")["model"].to_list()) == {"LOF_context"}


def test_a_folder_a_killed_run_set_aside_is_put_back_or_refused(logs, out, capsys):
    """A run killed outright (SIGKILL) leaves the earlier run's files in DIR/.earlier-run: the next
    run puts them back first where DIR holds none of their names, and refuses in one line naming
    the folder where it does (the killed run's files beside them), touching nothing."""
    before = files(out)
    aside = out / ASIDE
    for rel in before:  # killed after setting the earlier run aside, before writing anything
        if rel != "notes.txt":
            (aside / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).replace(aside / rel)
    assert detect(logs["nostate"], out) == EXIT_BAD_INPUT
    assert files(out) == before and not aside.exists()
    assert (f"{aside} holds the set-aside outputs of a run that was stopped before its end: "
            f"its {len(before) - 1} file(s) put back") in capsys.readouterr().out
    # killed after writing some of its own: both have a chunks.parquet
    aside.mkdir()
    (aside / "chunks.parquet").write_bytes(b"the earlier run's")
    before = files(out)
    assert detect(logs["nostate"], out) == EXIT_USAGE
    assert files(out) == before
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"licanom: --out {out}: {aside} holds the set-aside outputs of a run")
    assert "holds 1 file(s) of the same name(s), the stopped run's (chunks.parquet)" in err[0]
    assert f"delete {aside}, and run again" in err[0]


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_writes_there(logs, out, capsys):
    """Two runs at once into one --out: the second took the first's set-aside files for a killed
    run's, and the first's success and the second's failure could lose both runs' files. The second
    is refused in one line while the first holds the folder's lock; nothing of the first is touched."""
    from licanom.cli import _earlier_outputs
    from licanom.ops.earlier_run import LOCK, EarlierRunKept

    before = files(out)
    with EarlierRunKept(out, _earlier_outputs, say=lambda line: None) as first:
        during = files(out)
        assert detect(logs["good"], out) == EXIT_USAGE
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "another licanom detect is writing its outputs there now" in err[0], err
        assert files(out) == during  # the first run's set-aside files (and its lock) as they were
        first.succeeded()  # and it writes nothing: the earlier run's files are removed
    assert files(out) == {"notes.txt": b"mine"} and not (out / LOCK).exists() and not (out / ASIDE).exists()
    assert len(before) > 1


def test_a_succeeded_runs_half_deleted_folder_is_never_put_back(logs, out, capsys):
    """A run that succeeded renames the set-aside folder before deleting it: killed half way, it
    leaves .earlier-run.done, which the next run deletes, rather than a .earlier-run whose old
    files would be put back beside the new results."""
    from licanom.ops.earlier_run import DONE

    (out / DONE).mkdir()
    (out / DONE / "results.csv").write_text("an old run's")
    before = files(out)
    assert detect(logs["nostate"], out) == EXIT_BAD_INPUT
    assert not (out / DONE).exists() and not (out / "results.csv").exists()
    assert files(out) == {k: v for k, v in before.items() if not k.startswith(DONE)}


def test_an_out_that_is_a_file_is_refused_in_one_line(logs, tmp_path, capsys):
    (tmp_path / "out.txt").write_text("mine")
    assert detect(logs["good"], tmp_path / "out.txt") == EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "out.txt is a file; give a folder" in err[0], err
    assert (tmp_path / "out.txt").read_text() == "mine"
