"""The Dagster UI of a running `dagster dev`, opened in headless Chromium: the quality
group's asset graph renders with its assets and their check results, and no error."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from smoke_platform.stack import dagster_dev
from smoke_platform_tests.conftest import REPO

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
def ui_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ui-data")


@pytest.fixture(scope="module")
def ui(tmp_path_factory, ui_root):
    """`dagster dev` on its own instance holding one materialisation of the raw readings,
    their seven checks and the quality report. The sensor that would retrain on new raw data
    is stopped first (with the `dagster sensor stop` CLI, as an operator would), and runs
    stay queued (`max_concurrent_runs: 0`), so the UI shows exactly what the test made."""
    home = tmp_path_factory.mktemp("ui-dagster-home")
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_queue:\n  max_concurrent_runs: 0\n"
    )
    data = ui_root
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
        [*DAGSTER, "sensor", "stop", "new_raw_data_sensor", "-w", str(REPO / "workspace.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    proc, url = dagster_dev(home / "dagster-dev.log", env=env)
    yield url
    assert proc.stop(timeout=30) is not None


def _open_dagster(page, url: str) -> None:
    """Open a Dagster UI page. Its first-visit community dialog can appear at any moment
    after the page loads (once it appeared after the test had looked for it, and covered
    the link the test clicked): a Playwright locator handler skips it whenever it blocks
    an action."""
    page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
    page.goto(url, wait_until="networkidle", timeout=120_000)


def test_asset_graph_shows_assets_and_check_results(ui, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required (make test installs it when run as root)"
    shot = tmp_path / "dagster-asset-graph.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            _open_dagster(page, f"{ui}/locations/smoke_platform/asset-groups/ingest")
            # The raw asset's node, once its status loaded: its seven checks (3,000 rows: too
            # few fire readings for the ceiling-share warning to fire) all passed.
            page.wait_for_function(
                "() => document.body.innerText.includes('7 / 7 Passed')", timeout=90_000
            )
            page.screenshot(path=str(shot))
            text = page.inner_text("body")
        finally:
            browser.close()
    assert "raw_sensor_readings" in text and "data_quality_report" in text
    assert "Asset checks" in text and "7 / 7 Passed" in text and "Materialized" in text
    assert not [e for e in ERROR_TEXTS if e in text], text[:2000]
    assert shot.stat().st_size > 20_000  # a rendered graph, not a blank page
    print(f"screenshot: {shot}")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required (make test installs it when run as root)"
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_the_services_api_docs_page_lists_its_operations(browser, open_service, tmp_path):
    """The service's Swagger UI renders (its scripts and styles arrive whole through the
    guard) and lists the operations."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{open_service}/docs", wait_until="networkidle", timeout=60_000)
    page.wait_for_selector(".opblock-summary-path", timeout=60_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    shot = tmp_path / "service-api-docs.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert {"/predict", "/predict_batch", "/predict_columns", "/model_info"} <= {
        p.strip() for p in paths
    }
    assert page.url.rstrip("/") == open_service  # /docs led to the page at /


def test_each_html_report_renders_with_its_charts_loaded(ui, ui_root, browser, tmp_path):
    """The report the fixture's run wrote, opened as a file in the browser: every chart is
    embedded and decodes (the Markdown file's charts are separate PNGs)."""
    import re

    reports = sorted(ui_root.rglob("report.html"))
    assert reports, "the fixture's materialisation wrote no HTML report"
    for report in reports:
        html = report.read_text()
        assert "<table>" in html and not re.search(r'src="(?!data:)', html)
        page = browser.new_page()
        page.goto(report.as_uri(), wait_until="load")
        sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        shot = tmp_path / f"{report.parent.name}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert sizes and all(w > 100 for w in sizes), (report, sizes)


def test_the_report_charts_show_in_the_dagster_ui(ui, browser, tmp_path):
    """The quality report's `report` metadata (Markdown with the charts as data URIs), opened
    from the asset's page in the Dagster UI: the table and both charts render."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    shot = tmp_path / "dagster-report-metadata.png"
    try:
        _open_dagster(page, f"{ui}/assets/data_quality_report")
        page.get_by_text("Show Markdown").first.click(timeout=60_000)
        # The report's dialog (the community dialog may be open above it as well).
        dialog = page.get_by_role("dialog").filter(has_text="Data-quality report")
        dialog.locator("img").first.wait_for(timeout=30_000)
        dialog.locator("img").last.wait_for(timeout=30_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('[role=dialog] img')].every(i => i.complete)"
        )
        sizes = dialog.locator("img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
        text = dialog.inner_text()
    finally:
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
    # The fixture made 3,000 readings (a TVOC of 60,000 ppb may well be among them).
    assert "Data-quality report" in text and re.search(r"rows\s+3,000\b", text), text
    assert len(sizes) == 2 and all(w > 100 for w in sizes), sizes
