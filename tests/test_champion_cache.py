"""The champion's files kept between nights (licanom.ops.tracking.cached_version): downloaded once
per version, never a damaged download in the cache, a damaged copy fetched again, old versions
pruned, and the nightly path asking the tracking server only for the alias after the first night."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from licanom.ops.tracking import CACHED_VERSIONS, cached_version
from tests.night_harness import make_bundle, tracker_for


class Store:
    """A fake model store: ``download`` writes one file per call and counts the calls."""

    def __init__(self, text: str = "ok") -> None:
        self.text = text
        self.downloads = 0

    def download(self, dst: str) -> str:
        self.downloads += 1
        out = Path(dst) / "model"
        out.mkdir()
        (out / "weights").write_text(self.text)
        return str(out)


def load(folder: Path) -> str:
    text = (folder / "weights").read_text()
    if text != "ok":
        raise ValueError(f"{folder / 'weights'}: damaged")
    return text


def test_a_version_is_downloaded_once(tmp_path):
    store = Store()
    for _ in range(3):
        assert cached_version(tmp_path, "v1", "store\nm\n1", store.download, load) == "ok"
    assert store.downloads == 1
    assert [p.name.startswith("v1-") for p in tmp_path.iterdir()] == [True]  # no download folder left


def test_a_damaged_download_never_enters_the_cache(tmp_path):
    store = Store(text="truncated")
    with pytest.raises(ValueError, match="damaged"):
        cached_version(tmp_path, "v1", "k", store.download, load)
    assert list(tmp_path.iterdir()) == []
    store.text = "ok"  # the store repaired: the next night downloads and caches it
    assert cached_version(tmp_path, "v1", "k", store.download, load) == "ok"
    assert store.downloads == 2


def test_a_damaged_cached_copy_is_fetched_again(tmp_path):
    store = Store()
    cached_version(tmp_path, "v1", "k", store.download, load)
    (entry,) = tmp_path.iterdir()
    (entry / "weights").write_text("bit rot")
    assert cached_version(tmp_path, "v1", "k", store.download, load) == "ok"
    assert store.downloads == 2 and (entry / "weights").read_text() == "ok"


def test_another_key_is_another_entry_and_old_ones_are_pruned(tmp_path):
    store = Store()
    for version in range(1, 5):
        cached_version(tmp_path, f"v{version}", f"k{version}", store.download, load)
        os.utime(next(tmp_path.glob(f"v{version}-*")), (1000 + version, 1000 + version))  # distinct ages
    kept = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert kept == [f"v{v}" for v in range(5 - CACHED_VERSIONS, 5)]
    # the same version under another key (a re-created model) is not taken for the cached one
    cached_version(tmp_path, "v4", "another store", store.download, load)
    assert store.downloads == 5


def test_an_entry_filled_meanwhile_by_another_process_is_kept(tmp_path):
    store = Store()

    def racing(dst: str) -> str:  # another process renames its copy into place during our download
        cached_version(tmp_path, "v1", "k", store.download, load)
        return store.download(dst)

    assert cached_version(tmp_path, "v1", "k", racing, load) == "ok"
    assert len([p for p in tmp_path.iterdir()]) == 1 and store.downloads == 2


def test_the_champion_is_fetched_once_and_no_temporary_copy_is_left(tmp_path, monkeypatch):
    import tempfile

    import mlflow.artifacts

    tracker = tracker_for(tmp_path)
    bundle = make_bundle()
    run_id = tracker.start_run("acme", "train", "training")
    version = tracker.register_bundle("acme", run_id, bundle.save(tmp_path / "b"), "Tail_context", None)
    tracker.promote("acme", [version], "Tail_context")
    tracker.end_run(run_id)
    calls = []
    real = mlflow.artifacts.download_artifacts
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda *a, **k: calls.append(a) or real(*a, **k))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cache = tmp_path / "out" / "acme" / "models"
    for _ in range(3):
        loaded, got = tracker.load_champion("acme", cache)
        assert str(got) == "1" and loaded.detector.threshold_ == bundle.detector.threshold_
    assert len(calls) == 1
    tracker.load_champion("acme")  # no cache: a temporary folder, removed after
    assert len(calls) == 2 and list(scratch.iterdir()) == []
