"""The Docker-free dashboard reads the same Prometheus endpoints as Grafana: a real worker
metrics server and a real service, summed across workers, in a page that renders."""

import httpx
import pytest

from smoke_platform.core.io import to_records
from smoke_platform.dashboard import serve, summary
from smoke_platform.procs import free_port
from streaming.metrics import WorkerMetrics

pytestmark = pytest.mark.bentoml


def _worker(scored: int, fires: int, sensor: str) -> str:
    metrics = WorkerMetrics()
    port = free_port()
    metrics.serve(port)
    metrics.scored.labels("service").inc(scored)
    metrics.fire_predictions.labels("service").inc(fires)
    metrics.alerts.labels("open", "warning").inc()
    metrics.sensor_alarms.labels(sensor, "warning").inc()
    metrics.lag.labels("0").set(7)
    metrics.model.labels("smoke_detector:abc").set(1)
    return f"http://127.0.0.1:{port}/metrics"


def test_the_summary_adds_up_every_worker_and_reads_the_service(fresh_service, readings):
    urls = [_worker(100, 4, "s-1"), _worker(50, 0, "s-2")]
    body = {"readings": to_records(readings.iloc[:10])}
    assert httpx.post(f"{fresh_service}/predict_batch", json=body, timeout=30).status_code == 200
    got = summary([*urls, "http://127.0.0.1:9/metrics"], fresh_service)
    assert (got["predictions"], got["fire_predictions"], got["alerts_opened"]) == (150, 4, 2)
    assert got["consumer_lag"] == 14 and got["service_ready"] is True
    assert got["service_predictions"] >= 10 and "smoke_detector:abc" in got["models"]
    assert [a["sensor_id"] for a in got["alarms_by_sensor"]] == ["s-1", "s-2"]
    assert got["errors"] == ["http://127.0.0.1:9/metrics: ConnectError"]


def test_the_page_and_its_api_are_served(open_service):
    port = free_port()
    server = serve(port, [_worker(3, 1, "s-9")], open_service)
    try:
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "api/summary" in page.text
        assert "<script src" not in page.text  # nothing from outside: works offline
        api = httpx.get(f"http://127.0.0.1:{port}/api/summary", timeout=10).json()
        assert api["predictions"] == 3 and api["alarms_by_sensor"][0]["sensor_id"] == "s-9"
        assert httpx.get(f"http://127.0.0.1:{port}/nope", timeout=10).status_code == 404
    finally:
        server.shutdown()
        server.server_close()
