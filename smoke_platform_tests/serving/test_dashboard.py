"""The Grafana dashboard and the Prometheus config chart metrics that really exist: every
series a panel queries is exposed by the running service or by the worker."""

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import generate_latest

from smoke_platform.core.io import to_records
from streaming.metrics import WorkerMetrics

pytestmark = pytest.mark.bentoml
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "smoke-platform.json"
SERIES = re.compile(r"\b((?:smoke_worker|bentoml_service)_[a-z0-9_]+)")


def _exposed(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}


def test_every_dashboard_query_names_an_exposed_series(open_service, readings):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = {m for e in exprs for m in SERIES.findall(e)}
    assert any(q.startswith("bentoml_") for q in queried)
    assert any(q.startswith("smoke_worker_") for q in queried)
    # The service's series appear once it has served a request.
    body = {"readings": to_records(readings.iloc[:5])}
    assert httpx.post(f"{open_service}/predict_batch", json=body, timeout=30).status_code == 200
    service = _exposed(httpx.get(f"{open_service}/metrics", timeout=10).text)
    worker = WorkerMetrics()  # scorer and alert label sets start at 0; DLQ reasons on use
    worker.dlq.labels("out_of_range").inc()
    worker.e2e_latency.observe(0.1)
    worker.scoring_latency.observe(0.01)
    exposed = service | _exposed(generate_latest(worker.registry).decode())
    assert queried <= exposed, sorted(queried - exposed)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_prometheus_scrapes_the_service_and_every_worker_replica():
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["smoke-service"]["metrics_path"] == "/metrics"
    [dns] = jobs["smoke-worker"]["dns_sd_configs"]
    assert dns["names"] == ["worker"] and dns["type"] == "A"
    datasource = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["uid"] == "prometheus" and datasource["url"].endswith(":9090")
