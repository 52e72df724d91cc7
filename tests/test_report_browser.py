"""The HTML report in a real browser: headless Chromium renders it, its DOM holds the anomalies."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from licanom.report import anomaly_frames, write_report
from tests.test_report import EVIL_KEY, make_input

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
WIDTH, HEIGHT = 1280, 2000


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (set-up installs it)")
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    inp = make_input()
    paths = write_report(inp, tmp_path / "report")
    url = paths.html.resolve().as_uri()

    dom = chromium(tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    frames = anomaly_frames(inp)
    assert page.count('class="anomaly-row"') == frames.height == 2
    for frame in frames["frame"]:
        assert f'id="frame-{frame}"' in page
    assert "&lt;script&gt;" in page and EVIL_KEY not in page  # still text after parsing, not a script
    assert "<script" not in page.lower()
    assert "acme" in page and "2025-03-01 01:10:00" in page  # vendor; frame #2 starts at row 70

    shot = tmp_path / "report-screenshot.png"
    run = chromium(tmp_path / "profile-shot", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", url)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    data = shot.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    assert len(data) > 50_000, f"screenshot is only {len(data)} bytes: is the page blank?"
    shutil.copyfile(shot, tmp_path_factory.getbasetemp() / "report-screenshot.png")
