"""flows.early_api: Prefect's temporary server started in a thread while a command imports."""

from __future__ import annotations

import threading

import pytest

from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

from flows.early_api import start_early


class FakeServer:
    """Stands in for Prefect's SubprocessASGIServer: counts starts, waits for a go, may fail."""

    def __init__(self, fail: bool = False) -> None:
        self.starts = 0
        self.go = threading.Event()
        self.fail = fail

    def __call__(self) -> "FakeServer":  # SubprocessASGIServer() returns the process's one server
        return self

    def start(self) -> None:
        self.starts += 1
        self.go.wait(timeout=30)
        if self.fail:
            raise RuntimeError("port in use")


@pytest.fixture
def server_module():
    """Prefect's server module, imported here rather than at collection (seconds, in every worker
    of `make test`, for these tests alone)."""
    import prefect.server.api.server

    return prefect.server.api.server


@pytest.fixture
def no_api():
    with temporary_settings(updates={PREFECT_API_URL: None, PREFECT_SERVER_EPHEMERAL_ENABLED: True}):
        yield


def test_nothing_starts_with_an_api_url(monkeypatch, server_module):
    fake = FakeServer()
    monkeypatch.setattr(server_module, "SubprocessASGIServer", fake)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        api = start_early()
        api.wait(["no_such_module_anywhere"])  # no thread: nothing imported, nothing waited for
    assert api.thread is None and fake.starts == 0


def test_nothing_starts_with_the_ephemeral_api_off(monkeypatch, server_module):
    fake = FakeServer()
    monkeypatch.setattr(server_module, "SubprocessASGIServer", fake)
    with temporary_settings(updates={PREFECT_API_URL: None, PREFECT_SERVER_EPHEMERAL_ENABLED: False}):
        assert start_early().thread is None
    assert fake.starts == 0


def test_the_server_starts_once_in_a_thread_and_wait_joins_it(monkeypatch, no_api, server_module):
    fake = FakeServer()
    monkeypatch.setattr(server_module, "SubprocessASGIServer", fake)
    api = start_early()
    assert api.thread is not None and api.thread.is_alive()  # still starting: the caller goes on
    fake.go.set()
    api.wait(["json"])
    assert not api.thread.is_alive() and fake.starts == 1


def test_nothing_more_is_imported_once_the_server_is_up(monkeypatch, no_api, server_module):
    fake = FakeServer()
    fake.go.set()
    monkeypatch.setattr(server_module, "SubprocessASGIServer", fake)
    api = start_early()
    api.thread.join()
    api.wait(["no_such_module_anywhere"])  # the server answered: the list is not read at all


def test_a_failed_start_is_raised_by_wait_in_the_callers_thread(monkeypatch, no_api, server_module):
    fake = FakeServer(fail=True)
    fake.go.set()
    monkeypatch.setattr(server_module, "SubprocessASGIServer", fake)
    api = start_early()
    with pytest.raises(RuntimeError, match="port in use"):  # as the first flow call would have raised it
        api.wait()
    assert fake.starts == 1


def test_the_flows_first_call_imports_exist():
    import importlib.util

    from flows.run import FIRST_CALL_IMPORTS

    assert set(FIRST_CALL_IMPORTS) == {"train", "score", "nightly"}
    for names in FIRST_CALL_IMPORTS.values():
        for name in names:
            assert importlib.util.find_spec(name) is not None, name


def test_licanom_run_says_in_one_line_that_the_api_did_not_start(monkeypatch, no_api, capsys, server_module):
    from flows import run

    fake = FakeServer(fail=True)
    fake.go.set()
    ran = []
    monkeypatch.setattr(server_module, "SubprocessASGIServer", fake)
    monkeypatch.setattr("flows.score_vendor.score_vendor", lambda *a, **k: ran.append(a))
    code = run.main(["score", "--vendor", "demo"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == run.EXIT_UNREACHABLE and not ran  # exit 4, nothing run
    assert err == ["licanom: Prefect's temporary API did not start (port in use); nothing was run"]
