"""Prefect's temporary API, started at once while a command imports what its flows need.

With no PREFECT_API_URL, Prefect starts its temporary server (a uvicorn subprocess) at the first
flow call and then waits for it to answer: 6-8 s on a two-core machine, about 13 s when it first
creates its database, during which the command does nothing else. :func:`start_early` starts the
same server (Prefect keeps one per process) in a thread instead, so that the subprocess comes up on
the other core while this process imports the flows, the library, MLflow and scikit-learn; the
first flow call finds it answering. Nothing happens with PREFECT_API_URL set (a real server) or
with the ephemeral API switched off.

The server runs in a session of its own (:func:`server_in_own_session`): Ctrl-C in a terminal goes to
the foreground process group, and a server in that group stopped with the command, so that the
interrupted flow then spent minutes retrying a dead API to record its crash. Out of that group the
server keeps answering until Prefect stops it at exit (flows.run.Interrupted makes the signals
end the command through that exit), and the interrupt ends the command at once. The price: a
command killed with SIGKILL (or SIGQUIT) as a whole group now leaves the server running, as a
command killed alone always did.
"""

from __future__ import annotations

import importlib
import subprocess
import threading
import types
from collections.abc import Sequence
from typing import Any


class EarlyApi:
    """A thread starting Prefect's temporary server; :meth:`wait` before the first flow call."""

    def __init__(self) -> None:
        from prefect.settings import get_current_settings

        settings = get_current_settings()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        if settings.api.url or not settings.server.ephemeral.enabled:
            return
        # imported here, in the caller's thread, so that the thread itself imports nothing while
        # the caller imports the rest (no two threads inside one import graph)
        from prefect.server.api.server import SubprocessASGIServer

        server_in_own_session()
        self.thread = threading.Thread(target=self._start, args=(SubprocessASGIServer(),),
                                       name="licanom-prefect-api-start", daemon=True)
        self.thread.start()

    def _start(self, server) -> None:  # type: ignore[no-untyped-def]
        try:
            server.start()
        except BaseException as err:  # noqa: BLE001 - raised again by wait(), in the caller's thread
            self.error = err

    def wait(self, meanwhile: Sequence[str] = ()) -> None:
        """Block until the server answers; its start's error, if it failed (as the first flow call
        would have raised it, without waiting for a second start).

        ``meanwhile``: modules the flow will import on its first call anyway (scikit-learn's
        mixture models, MLflow's SQL store, matplotlib), imported while the server is still coming
        up, then no longer while it is up."""
        if self.thread is None:
            return
        for name in meanwhile:
            if not self.thread.is_alive():
                break
            importlib.import_module(name)
        self.thread.join()
        if self.error is not None:
            raise self.error


class _OwnSessionPopen(subprocess.Popen):  # type: ignore[type-arg]
    """``subprocess.Popen`` that starts its child in a new session unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("start_new_session", True)
        super().__init__(*args, **kwargs)


class _Subprocess(types.ModuleType):
    """The ``subprocess`` module as Prefect's server module sees it: :class:`_OwnSessionPopen` for
    ``Popen``, everything else looked up in the real module when used."""

    Popen = _OwnSessionPopen

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)


def server_in_own_session() -> None:
    """Start Prefect's temporary server (a uvicorn subprocess) in a new session, out of the
    terminal's process group, so that Ctrl-C reaches this process and not the server.

    Prefect has no setting for it: the server module's ``subprocess`` becomes a :class:`_Subprocess`,
    for that module only (written by hand: nothing else starts processes there, and its other uses
    of ``subprocess`` reach the real module). The server is stopped by Prefect's ``atexit`` hook, as
    before; a process killed with SIGKILL, or with a signal this command does not handle (SIGQUIT),
    leaves it running, where before a signal to the whole process group took it too."""
    import prefect.server.api.server as server_module

    if not isinstance(server_module.subprocess, _Subprocess):
        server_module.subprocess = _Subprocess("subprocess")  # type: ignore[assignment]


def start_early() -> EarlyApi:
    """Start Prefect's temporary API now, when the flows will use it (no PREFECT_API_URL)."""
    return EarlyApi()
