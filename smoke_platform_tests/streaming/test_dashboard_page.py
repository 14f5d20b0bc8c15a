"""The live page an operator reads, in Chromium: worker alerts and window alerts apart,
every time in UTC and said so, a chart with a title, axes and data from the first
second, and the sensors in trouble."""

import json
import shutil
import threading
import time

import pytest
from confluent_kafka import Producer

from smoke_platform.core.trouble import trouble_record
from smoke_platform.dashboard import RecentAlerts, serve
from smoke_platform.procs import free_port
from streaming.alerts import alert_record
from streaming.metrics import WorkerMetrics
from streaming.producer import produce, scenario_records
from streaming.worker import StreamWorker

pytestmark = [pytest.mark.kafka, pytest.mark.bentoml]


def test_the_live_page_keeps_alert_kinds_apart_and_shows_quiet_sensors(
    make_settings, open_service, tmp_path
):
    from playwright.sync_api import sync_playwright

    from smoke_platform_tests.ui.test_dagster_ui import CHROMIUM_ARGS

    settings = make_settings(open_service)
    produce(scenario_records(["wood_fire"], seconds=600, seed=11), settings, echo=lambda *_: None)
    StreamWorker(settings).run(idle_stop_s=4)  # one worker alert on sensor-000
    # What the Spark job and the worker's supervision publish, in their own records.
    window = alert_record(
        alert_id="sensor-007@2026-12-06T10:05:00+00:00", event="open", sensor_id="sensor-007",
        severity="warning", ts="2026-12-06T10:05:00+00:00", opened_ts=None, probability=0.62,
        max_probability=0.97, readings_in_alert=300, source="spark-window",
    )  # fmt: skip
    now = time.time()
    quiet = trouble_record(
        kind="silent", event="open", subject="room-9", partition=0, at=now, since=now - 75,
        detail="no reading for 75 s (bound 60 s)",
    )  # fmt: skip
    producer = Producer(settings.kafka())
    producer.produce(settings.alerts_topic, key=b"sensor-007", value=json.dumps(window).encode())
    producer.produce(settings.trouble_topic, key=b"room-9", value=json.dumps(quiet).encode())
    assert producer.flush(10) == 0

    metrics, metrics_port = WorkerMetrics(), free_port()
    metrics.serve(metrics_port)
    scoring = threading.Event()

    def score_steadily():  # a worker scoring 50 readings a second
        while not scoring.wait(0.1):
            metrics.scored.labels("service").inc(5)

    threading.Thread(target=score_steadily, daemon=True).start()
    recent = RecentAlerts(settings.kafka(), settings.alerts_topic).start()
    port = free_port()
    urls = [f"http://127.0.0.1:{metrics_port}/metrics"]
    server = serve(port, urls, open_service, alerts=recent, settings=settings)
    shot = tmp_path / "dashboard.png"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required (make test installs it when run as root)"
    try:
        deadline = time.monotonic() + 30
        while len(recent.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1600})
            opened = time.monotonic()
            page.goto(f"http://127.0.0.1:{port}/")
            # Data in the chart from the first second (a rate needs two polls: 0 s and 1 s).
            page.wait_for_function(
                "document.querySelector('#chart polyline').getAttribute('points') !== ''",
                timeout=5_000,
            )
            first_point_s = time.monotonic() - opened
            page.wait_for_function(
                "document.getElementById('trouble').textContent.includes('room-9')",
                timeout=30_000,
            )
            page.wait_for_timeout(2_500)  # a second point on the chart
            page.screenshot(path=str(shot), full_page=True)
            worker_rows = page.inner_text("#recent")
            window_rows = page.inner_text("#windows")
            trouble_rows = page.inner_text("#trouble")
            headers = page.inner_text("body")
            top = page.text_content("#chart-top") or ""
            browser.close()
    finally:
        scoring.set()
        server.shutdown()
        server.server_close()
        recent.stop()
    assert first_point_s < 2.5, first_point_s
    assert "sensor-000" in worker_rows and "sensor-007" not in worker_rows
    assert (
        "sensor-007" in window_rows and "0.620" in window_rows and "sensor-000" not in window_rows
    )
    assert "2026-12-06 10:05:00" in window_rows  # in UTC, as the header says
    assert "room-9" in trouble_rows and "silent" in trouble_rows
    assert headers.count("time (UTC)") == 2 and headers.count("raised (UTC)") == 2
    assert "Predictions per second" in headers and "predictions/s" in headers
    assert float(top) >= 1  # the y axis is scaled to the steady rate
    assert shot.stat().st_size > 30_000
    print(f"screenshot: {shot}")
