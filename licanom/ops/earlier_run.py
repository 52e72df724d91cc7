"""An earlier run's outputs kept until a new run into the same folder has succeeded.

``licanom detect --out DIR`` writes its files under fixed names, and a new run into DIR must not
leave any of an earlier run's beside its own (another model's file, another log's chunks). The
earlier run's files are not removed before the new run starts, though: a run may still be refused
(a missing column, too many bad rows, labels of another log), fail or be stopped (Ctrl-C), and an
earlier run may have trained for an hour. :class:`EarlierRunKept` moves them aside, under the same
relative paths, into ``DIR/.earlier-run`` (:data:`ASIDE`); when the new run succeeds they are
removed, and when it fails in any way the files it wrote under those names are removed and the
earlier run's are moved back, as they were. The one file a failed run keeps is the quarantine of a
log refused for too many bad rows, which the refusal names: it is written under a name of its own
(:meth:`EarlierRunKept.refused`, ``refused-quarantine.parquet``), so that the earlier run's
``quarantine.parquet`` comes back beside the earlier run's results.

A run killed outright (SIGKILL, power loss) leaves the folder behind. The next run puts its files
back first, where DIR holds no file of their names, or refuses in one line naming the folder; it
never deletes them nor mixes them with its own. A run that succeeded renames the folder
(:data:`DONE`) before deleting its files, so that one killed while deleting them leaves a folder that
is only ever deleted, never put back beside the new results. One run at a time writes into DIR: a
second one is refused while the first holds DIR's lock (:data:`LOCK`, ``fcntl.flock``); without it,
the second took the first's set-aside files for a killed run's and both runs' files could be lost.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

ASIDE = ".earlier-run"  # DIR's hidden folder the earlier run's outputs wait in
DONE = ".earlier-run.done"  # the same folder once the run succeeded: its files are only deleted
LOCK = ".earlier-run.lock"  # held (flock) by the run writing into DIR
REFUSED_PREFIX = "refused-"  # a refused run's quarantine: refused-quarantine.parquet


def refused_name(path: Path) -> Path:
    """Where a run refused for too many bad rows keeps the quarantine it would have written to
    ``path``: beside it, ``refused-<name>``."""
    return path.with_name(REFUSED_PREFIX + path.name)


class EarlierRunKept:
    """A context manager around a run into ``out``: ``outputs(out)`` lists the files a run leaves
    there (its own names only; a user's other files are never touched). On entering, a folder left
    by a run that was killed is put back or refused (ValueError), and the earlier run's outputs are
    moved into ``out/.earlier-run``. On leaving after :meth:`succeeded`, they are removed; on leaving
    otherwise (an exception of any kind, or a run that did not say it succeeded), the outputs this
    run wrote are removed, but for a refusal's quarantine (:meth:`refused`), and the earlier run's
    are moved back. ``say`` prints a line of what was done."""

    def __init__(self, out: Path, outputs: Callable[[Path], list[Path]], say: Callable[[str], None] = print) -> None:
        self.out = out
        self.aside = out / ASIDE
        self._outputs = outputs
        self._say = say
        self.moved: list[Path] = []  # the earlier run's files, relative to out, now in the aside folder
        self._kept: set[Path] = set()  # a refusal's quarantine: kept when the run fails
        self._folders: set[Path] = set()  # out and its folders before the run: left where a failed run empties them
        self._done = False
        self._lock: int | None = None  # the lock file's descriptor while the run holds it
        self._made_out = False  # out did not exist: the lock's folder, removed again when left empty

    def refused(self, path: Path) -> Path:
        """The path a refusal of this run for too many bad rows writes the quarantine it would have
        written to ``path``: ``refused-<name>``, kept when the run fails. It replaces an earlier
        refusal's of that name, and a later run that succeeds removes it with the other outputs."""
        kept = refused_name(path)
        self._kept.add(kept)
        return kept

    def succeeded(self) -> None:
        """The run succeeded: its outputs stay and the earlier run's are removed on leaving."""
        self._done = True

    def __enter__(self) -> EarlierRunKept:
        self._take_lock()
        try:
            return self._set_aside()
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self) -> None:
        """Hold ``out/.earlier-run.lock`` (created with ``out`` where missing) for the run; a ValueError
        naming ``out`` while another run holds it."""
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out {self.out} is a file, not a folder: give a folder for the outputs")
        self._made_out = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ValueError(f"--out {self.out}: another licanom detect is writing its outputs there now "
                                 f"(it holds {path}); wait for it to end, or give another --out") from None
            try:  # the file this descriptor locks must still be the one at ``path`` (a run that ended
                # between our open and our lock removed it, and a third run may lock a new one)
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock = fd
                return
            os.close(fd)

    def _release_lock(self) -> None:
        if self._lock is None:
            return
        (self.out / LOCK).unlink(missing_ok=True)  # removed while held: no run can lock the old file after
        os.close(self._lock)
        self._lock = None
        if self._made_out and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()  # made for the lock, and a failed run left nothing in it

    def _set_aside(self) -> EarlierRunKept:
        self._put_back_leftover()
        self._folders = {self.out, *(p for p in self.out.iterdir() if p.is_dir())} if not self._made_out else set()
        earlier = self._outputs(self.out)
        if not earlier:
            return self
        self.aside.mkdir()
        try:
            for path in earlier:
                rel = path.relative_to(self.out)
                (self.aside / rel).parent.mkdir(parents=True, exist_ok=True)
                path.replace(self.aside / rel)
                self.moved.append(rel)
        except BaseException:  # stopped half way: what was moved goes back, the run does not start
            self._move_back()
            raise
        self._say(f"--out {self.out}: an earlier run's {len(self.moved)} output file(s) set aside in {self.aside}, "
                  "put back if this run fails")
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._leave(kind is None and self._done)
        finally:
            self._release_lock()

    def _leave(self, succeeded: bool) -> None:
        if succeeded:
            done = self.out / DONE
            try:
                if self.aside.is_dir():
                    shutil.rmtree(done, ignore_errors=True)  # one an earlier success left half deleted
                    self.aside.replace(done)  # one step: from here on its files are never put back
                    shutil.rmtree(done)
            except OSError as problem:  # the run's files are written: a leftover to say, not a failure
                self._say(f"--out {self.out}: the earlier run's files could not all be removed ({problem}); "
                          f"the rest are in {done if done.exists() else self.aside}: delete it")
                return
            if self.moved:
                self._say(f"--out {self.out}: an earlier run's {len(self.moved)} output file(s) removed, "
                          "replaced by this run's")
            return
        try:
            made = [p for p in self._outputs(self.out) if p not in self._kept]
            for path in made:
                path.unlink(missing_ok=True)
            for path in made:  # a folder the failed run made (models/, out itself) goes again when empty
                for folder in path.parents:
                    if not folder.is_dir():  # removed already, for another of its files
                        continue
                    if folder in self._folders or not folder.is_relative_to(self.out) or any(folder.iterdir()):
                        break
                    folder.rmdir()
            back = self._move_back()
        except Exception as problem:  # the run's own error is the one to say; this one names what is left
            self._say(f"--out {self.out}: the earlier run's files could not all be put back ({problem}); "
                      f"the rest are in {self.aside}")
            return
        if back:
            self._say(f"--out {self.out}: this run failed; the earlier run's {back} output file(s) put back")

    def _move_back(self) -> int:
        """The earlier run's files moved back from the aside folder, which goes when empty; their
        count. A refusal's quarantine this run kept replaces the earlier refusal's of its name."""
        back = 0
        for rel in self.moved:
            target = self.out / rel
            if target in self._kept and target.exists():
                (self.aside / rel).unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            (self.aside / rel).replace(target)
            back += 1
        self.moved = []
        self._remove_empty(self.aside)
        return back

    def _put_back_leftover(self) -> None:
        """The files a run killed before its end left in the aside folder, moved back where ``out``
        holds none of their names; refused (ValueError) where it does. A folder a succeeded run was
        deleting (:data:`DONE`) is deleted."""
        shutil.rmtree(self.out / DONE, ignore_errors=True)
        if not (self.aside.exists() or self.aside.is_symlink()):
            return
        what = f"--out {self.out}: {self.aside} holds the set-aside outputs of a run that was stopped before its end"
        if not self.aside.is_dir() or self.aside.is_symlink():
            raise ValueError(f"--out {self.out}: {self.aside} is not a folder licanom made; move it away and run again")
        files = sorted(p.relative_to(self.aside) for p in self.aside.rglob("*") if not p.is_dir())
        clash = [rel for rel in files if (self.out / rel).exists() or (self.out / rel).is_symlink()]
        if clash:
            raise ValueError(f"{what}, and {self.out} holds {len(clash)} file(s) of the same name(s), "
                             f"the stopped run's ({', '.join(map(str, clash[:3]))}{', ...' if len(clash) > 3 else ''}): "
                             f"keep the ones you want (move them from {self.aside} into {self.out}), delete "
                             f"{self.aside}, and run again")
        for rel in files:
            (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.aside / rel).replace(self.out / rel)
        self._remove_empty(self.aside)
        if files:
            self._say(f"{what}: its {len(files)} file(s) put back into {self.out} first")

    @staticmethod
    def _remove_empty(folder: Path) -> None:
        """``folder`` and the folders in it removed where empty (a file left there keeps them)."""
        if not folder.is_dir():
            return
        for here, _, _ in os.walk(folder, topdown=False):
            if not any(Path(here).iterdir()):
                Path(here).rmdir()
