"""How `make test` hands out the files (tests/conftest.py): the files that share the session's
Prefect API are named there, every file whose tests use it among them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LONGEST_FIRST, PREFECT_FILES

ROOT = Path(__file__).resolve().parent.parent


def test_every_file_that_uses_the_prefect_api_shares_it(request: pytest.FixtureRequest) -> None:
    users = {item.nodeid.split("::", 1)[0] for item in request.session.items
             if "prefect_harness" in getattr(item, "fixturenames", ())}
    assert users <= set(PREFECT_FILES), f"add {sorted(users - set(PREFECT_FILES))} to PREFECT_FILES"
    assert all((ROOT / name).is_file() for name in LONGEST_FIRST), LONGEST_FIRST
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
