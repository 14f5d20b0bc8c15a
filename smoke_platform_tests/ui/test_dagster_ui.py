"""The Dagster UI of a running `dagster dev`, opened in headless Chromium: the quality
group's asset graph renders with its assets and their check results, and no error."""

import os
import shutil
import subprocess
import sys

import pytest

from smoke_platform.stack import dagster_dev

pytestmark = pytest.mark.ui

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the closed network refuses Chromium's own calls
    "--disable-component-update",
    "--disable-sync",
]
DAGSTER = [sys.executable, "-m", "dagster"]
ERROR_TEXTS = ("Something went wrong", "Unexpected GraphQL error", "Error loading", "not found")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`dagster dev` on its own instance holding one materialisation of the raw readings,
    their six checks and the quality report. The sensor that would retrain on new raw data
    is stopped first (with the `dagster sensor stop` CLI, as an operator would), and runs
    stay queued (`max_concurrent_runs: 0`), so the UI shows exactly what the test made."""
    home = tmp_path_factory.mktemp("ui-dagster-home")
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_queue:\n  max_concurrent_runs: 0\n"
    )
    data = tmp_path_factory.mktemp("ui-data")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SMOKE_DATA_DIR": str(data / "data"),
        "SMOKE_REPORTS_DIR": str(data / "reports"),
        "SMOKE_STREAM_DIR": str(data / "stream"),
        "SMOKE_ROWS": "3000",
    }
    selection = "key:raw_sensor_readings or key:data_quality_report"
    done = subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", "materialize", "--select", selection],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    stop = subprocess.run(
        [*DAGSTER, "sensor", "stop", "new_raw_data_sensor", "-m", "smoke_platform.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    proc, url = dagster_dev(home / "dagster-dev.log", env=env)
    yield url
    assert proc.stop(timeout=30) is not None


def test_asset_graph_shows_assets_and_check_results(ui, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required (make test installs it when run as root)"
    shot = tmp_path / "dagster-asset-graph.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(
                f"{ui}/locations/smoke_platform.definitions/asset-groups/ingest",
                wait_until="networkidle",
                timeout=120_000,
            )
            skip = page.get_by_role("button", name="Skip")  # the first-visit community dialog
            if skip.count():
                skip.click()
            # The raw asset's node, once its status loaded: six blocking checks, all passed.
            page.wait_for_function(
                "() => document.body.innerText.includes('6 / 6 Passed')", timeout=90_000
            )
            page.screenshot(path=str(shot))
            text = page.inner_text("body")
        finally:
            browser.close()
    assert "raw_sensor_readings" in text and "data_quality_report" in text
    assert "Asset checks" in text and "6 / 6 Passed" in text and "Materialized" in text
    assert not [e for e in ERROR_TEXTS if e in text], text[:2000]
    assert shot.stat().st_size > 20_000  # a rendered graph, not a blank page
    print(f"screenshot: {shot}")
