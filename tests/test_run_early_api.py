"""`licanom run` when Prefect's temporary API does not start: one line, exit code 4, nothing run."""

from __future__ import annotations

import prefect.server.api.server as server_module
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings


class Broken:
    def __call__(self) -> "Broken":
        return self

    def start(self) -> None:
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.\nmore")


def test_a_temporary_api_that_never_starts_is_one_line_and_exit_4(monkeypatch, capsys):
    from flows import run

    ran = []
    monkeypatch.setattr(server_module, "SubprocessASGIServer", Broken())
    monkeypatch.setattr("flows.score_vendor.score_vendor", lambda *a, **k: ran.append(a))
    with temporary_settings(updates={PREFECT_API_URL: None, PREFECT_SERVER_EPHEMERAL_ENABLED: True}):
        code = run.main(["score", "--vendor", "demo"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == run.EXIT_UNREACHABLE and not ran
    assert err == ["licanom: Prefect's temporary API did not start (Timed out while attempting to connect to "
                   "ephemeral Prefect API server.; more); nothing was run"]
