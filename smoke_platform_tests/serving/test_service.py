"""The `smoke_detector` service under a real `bentoml serve`."""

import json
import time

import httpx
import numpy as np
import pytest

from smoke_platform.core.io import to_records as payload
from smoke_platform.core.schema import columns_from_records

pytestmark = pytest.mark.bentoml


def _post(url, route, body, **headers):
    return httpx.post(f"{url}/{route}", json=body, headers=headers, timeout=30)


def test_batch_predictions_equal_the_in_memory_model(open_service, served_model, readings):
    sample = readings.iloc[:500]
    resp = _post(open_service, "predict_batch", {"readings": payload(sample)})
    assert resp.status_code == 200, resp.text
    got = resp.json()
    expected = served_model.predict_proba(sample)
    np.testing.assert_allclose([p["probability"] for p in got], expected, rtol=1e-9)
    assert [p["is_fire"] for p in got] == list(expected >= served_model.threshold)
    assert {p["model_version"] for p in got} == {served_model.version}


def test_single_prediction(open_service, served_model, readings):
    for i in (0, 1500, 2999):
        row = readings.iloc[[i]]
        resp = _post(open_service, "predict", {"reading": payload(row)[0]})
        assert resp.status_code == 200, resp.text
        assert resp.json()["probability"] == pytest.approx(served_model.predict_proba(row)[0])


def test_model_info(open_service, served_model):
    info = _post(open_service, "model_info", {}).json()
    assert info["version"] == served_model.version
    assert info["features"] == served_model.features
    assert info["threshold"] == pytest.approx(served_model.threshold)
    assert info["algorithm"] == "hist_gradient_boosting" and "recall" in info["metrics"]
    # A GET is the same read (BentoML serves APIs as POSTs; the guard answers GET too).
    got = httpx.get(f"{open_service}/model_info", timeout=30)
    assert got.status_code == 200 and got.json() == info


def test_model_info_by_get_needs_the_key_like_every_api_route(secured_service):
    url, _, key = secured_service
    assert httpx.get(f"{url}/model_info", timeout=30).status_code == 401
    ok = httpx.get(f"{url}/model_info", headers={"x-api-key": key}, timeout=30)
    assert ok.status_code == 200 and ok.json()["version"]


@pytest.mark.parametrize(
    ("change", "field", "value", "allowed"),
    [
        ({"humidity_pct": 140.5}, "humidity_pct", 140.5, "0 to 100 %"),
        ({"pressure_hpa": -3}, "pressure_hpa", -3, "300 to 1250 hPa"),
        ({"tvoc_ppb": "lots"}, "tvoc_ppb", "lots", "0 to 60000 ppb"),
        ({"smell": "smoky"}, "smell", "smoky", "only the fields"),
    ],
)
def test_bad_reading_gets_a_400_naming_field_value_and_range(
    open_service, readings, change, field, value, allowed
):
    reading = {**payload(readings.iloc[[0]])[0], **change}
    resp = _post(open_service, "predict", {"reading": reading})
    assert resp.status_code == 400
    body = resp.json()
    [error] = body["errors"]
    assert (error["field"], error["value"]) == (field, value)
    assert allowed in error["allowed"]
    assert field in body["error"] and allowed in body["error"]


def test_batch_with_bad_rows_names_the_rows(open_service, readings):
    rows = payload(readings.iloc[:6])
    rows[2]["pm2_5"] = -1.0
    del rows[4]["raw_h2"]
    resp = _post(open_service, "predict_batch", {"readings": rows})
    assert resp.status_code == 400
    body = resp.json()
    assert body["bad_rows"] == [2, 4]
    assert {(e["row"], e["field"]) for e in body["errors"]} == {(2, "pm2_5"), (4, "raw_h2")}
    assert "row 2: pm2_5=-1.0" in body["error"]


def test_malformed_json_is_a_4xx(open_service):
    resp = httpx.post(
        f"{open_service}/predict",
        content=b'{"reading": {',
        timeout=10,
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400 and "Invalid JSON" in resp.json()["error"]


def test_health_ready_and_prometheus_metrics(open_service):
    for route in ("healthz", "livez", "readyz"):
        assert httpx.get(f"{open_service}/{route}", timeout=10).status_code == 200
    metrics = httpx.get(f"{open_service}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "bentoml_service_request_total" in metrics.text or "request_total" in metrics.text


def _sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text, 0 when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_domain_metrics_count_predictions_and_fires_by_route_and_model(
    fresh_service, served_model, readings
):
    url = fresh_service

    def scrape() -> str:
        return httpx.get(f"{url}/metrics", timeout=10).text

    version = served_model.version
    before = scrape()
    body = {"readings": payload(readings.iloc[:40])}
    answers = httpx.post(f"{url}/predict_batch", json=body, timeout=30).json()
    fires = sum(a["is_fire"] for a in answers)
    after = scrape()
    labels = {"route": "predict_batch", "model_version": version}
    counted = _sample(after, "smoke_service_predictions_total", **labels) - _sample(
        before, "smoke_service_predictions_total", **labels
    )
    fired = _sample(after, "smoke_service_fire_predictions_total", **labels) - _sample(
        before, "smoke_service_fire_predictions_total", **labels
    )
    assert (counted, fired) == (40, fires)
    assert _sample(after, "smoke_service_model_info", model_version=version) == 1
    assert _sample(after, "smoke_service_model_seconds_count", route="predict_batch") >= 1


def test_api_key_is_required_when_configured(secured_service, readings):
    url, _, API_KEY = secured_service
    body = {"reading": payload(readings.iloc[[0]])[0]}
    assert _post(url, "predict", body).status_code == 401
    assert _post(url, "predict", body, **{"x-api-key": "wrong"}).status_code == 401
    assert _post(url, "predict", body, **{"x-api-key": API_KEY}).status_code == 200
    assert _post(url, "predict", body, authorization=f"Bearer {API_KEY}").status_code == 200
    assert _post(url, "model_info", {}).status_code == 401
    # Health and metrics stay open for probes and Prometheus.
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200


def test_rate_limit_returns_429_with_retry_after(secured_service):
    url, _, API_KEY = secured_service
    statuses, retry = [], None
    with httpx.Client(timeout=10) as client:
        for _ in range(40):
            resp = client.post(f"{url}/model_info", json={}, headers={"x-api-key": API_KEY})
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                retry = resp.headers.get("retry-after")
    assert 200 in statuses and 429 in statuses
    assert retry is not None and int(retry) >= 1


def test_oversized_request_is_413(secured_service, readings):
    url, _, API_KEY = secured_service
    time.sleep(2.5)  # let this client's token bucket refill (5/s, burst 10) so 429 cannot mask 413
    rows = payload(readings.iloc[:1000])  # ~300 kB > the 100 kB limit configured here
    resp = _post(url, "predict_batch", {"readings": rows}, **{"x-api-key": API_KEY})
    assert resp.status_code == 413
    assert resp.json()["max_bytes"] == 100_000


def test_audit_log_has_identity_route_status_version_never_payload_or_key(
    secured_service, served_model, readings
):
    url, log, API_KEY = secured_service
    reading = payload(readings.iloc[[7]])[0]
    _post(url, "predict", {"reading": reading}, **{"x-api-key": API_KEY})
    _post(url, "predict", {"reading": reading})
    lines = [
        json.loads(line.split("AUDIT ", 1)[1])
        for line in log.read_text().splitlines()
        if "AUDIT " in line
    ]
    routes = {(r["route"], r["status"]) for r in lines}
    assert ("/predict", 401) in routes
    assert ("/predict", 200) in routes or ("/predict", 429) in routes
    assert all(
        {"client", "route", "status", "model_version", "latency_ms"} <= set(r) for r in lines
    )
    assert any(r["model_version"] == served_model.version for r in lines)
    text = log.read_text()
    assert API_KEY not in text
    assert str(reading["raw_ethanol"]) not in "".join(
        line for line in text.splitlines() if "AUDIT" in line
    )


def test_clients_send_the_first_of_several_configured_keys(secured_service, readings):
    """SMOKE_API_KEY may list keys for rotation; the worker's scorer sends the first."""
    from streaming.scoring import RemoteScorer

    url, _, API_KEY = secured_service
    time.sleep(2.5)  # let the rate limiter's bucket refill after the 429 test
    scores = RemoteScorer(url, f"{API_KEY},next-key", 10).score(payload(readings.iloc[:5]))
    assert len(scores.probability) == 5


def test_column_predictions_equal_the_in_memory_model(open_service, served_model, readings):
    sample = readings.iloc[:700]
    resp = _post(
        open_service, "predict_columns", {"columns": columns_from_records(payload(sample))}
    )
    _assert_scored_as_the_model(resp, served_model, sample)


def _assert_scored_as_the_model(resp, model, sample) -> None:
    """A `PredictionColumns` answer equal to the in-memory model's on `sample`."""
    assert resp.status_code == 200, resp.text
    got = resp.json()
    expected = model.predict_proba(sample)
    np.testing.assert_allclose(got["probability"], expected, rtol=1e-9)
    assert got["is_fire"] == list(expected >= model.threshold)
    assert got["model_version"] == model.version


def test_columns_with_bad_values_name_row_field_value_and_range(open_service, readings):
    columns = columns_from_records(payload(readings.iloc[:5]))
    columns["humidity_pct"][3] = 140.5
    columns["raw_h2"][1] = None
    resp = _post(open_service, "predict_columns", {"columns": columns})
    assert resp.status_code == 400
    body = resp.json()
    assert body["bad_rows"] == [1, 3]
    assert {(e["row"], e["field"]) for e in body["errors"]} == {(1, "raw_h2"), (3, "humidity_pct")}
    assert "row 3: humidity_pct=140.5" in body["error"] and "0 to 100 %" in body["error"]


def test_columns_of_different_lengths_are_a_400_naming_the_column(open_service, readings):
    columns = columns_from_records(payload(readings.iloc[:5]))
    columns["pm2_5"] = columns["pm2_5"][:4]
    resp = _post(open_service, "predict_columns", {"columns": columns})
    assert resp.status_code == 400
    [error] = resp.json()["errors"]
    assert (error["field"], error["value"]) == ("pm2_5", 4)
    assert error["allowed"] == "5 values, one per reading"


def test_service_workers_setting_starts_that_many_api_processes(secured_process, readings):
    import psutil

    proc, url, _, key = secured_process
    workers = [
        p
        for p in psutil.Process(proc.proc.pid).children(recursive=True)
        if "_bentoml_impl.worker.service" in " ".join(p.cmdline())
    ]
    assert len(workers) == 2  # SMOKE_SERVICE_WORKERS=2 in this fixture
    body = {"reading": payload(readings.iloc[[0]])[0]}
    assert _post(url, "predict", body, **{"x-api-key": key}).status_code == 200


ARROW = "application/vnd.apache.arrow.stream"


def _arrow_post(url, frame, **headers):
    from smoke_platform.core.columns import frame_to_arrow

    return httpx.post(
        f"{url}/predict_arrow",
        content=frame_to_arrow(frame),
        headers={"content-type": ARROW, **headers},
        timeout=30,
    )


def _fields(frame):
    from smoke_platform.core.schema import FIELD_BY_NAME

    return frame[[c for c in frame.columns if c in FIELD_BY_NAME]]


def test_arrow_predictions_equal_the_in_memory_model(open_service, served_model, readings):
    sample = _fields(readings.iloc[:900])
    _assert_scored_as_the_model(_arrow_post(open_service, sample), served_model, sample)


def test_arrow_with_bad_values_names_row_field_value_and_range(open_service, readings):
    sample = _fields(readings.iloc[:6]).reset_index(drop=True)
    sample.loc[2, "humidity_pct"] = 140.5
    sample.loc[4, "pm2_5"] = np.nan
    resp = _arrow_post(open_service, sample)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["bad_rows"] == [2, 4]
    assert {(e["row"], e["field"]) for e in body["errors"]} == {(2, "humidity_pct"), (4, "pm2_5")}
    assert "row 2: humidity_pct=140.5" in body["error"] and "0 to 100 %" in body["error"]
    assert [e["value"] for e in body["errors"]] == [140.5, "nan"]  # NaN is not JSON


def test_arrow_route_takes_only_arrow_and_the_json_routes_only_json(open_service, readings):
    as_json = httpx.post(f"{open_service}/predict_arrow", json={"table": "x"}, timeout=10)
    assert as_json.status_code == 415 and as_json.json()["allowed"] == [ARROW]
    junk = httpx.post(
        f"{open_service}/predict_arrow", content=b"\xff" * 64, headers={"content-type": ARROW}
    )
    assert junk.status_code == 400 and "not an Arrow IPC stream" in junk.json()["error"]
    on_json_route = httpx.post(
        f"{open_service}/predict_columns", content=b"x", headers={"content-type": ARROW}
    )
    assert on_json_route.status_code == 415


def test_the_guard_covers_the_arrow_route(secured_service, readings):
    url, _, key = secured_service
    sample = _fields(readings.iloc[:5])
    assert _arrow_post(url, sample).status_code == 401
    time.sleep(2.5)  # a fresh token bucket, so a 429 cannot mask what follows
    assert _arrow_post(url, sample, **{"x-api-key": key}).status_code == 200
    big = _fields(readings.iloc[:3000])  # ~300 kB of Arrow > the 100 kB limit here
    assert _arrow_post(url, big, **{"x-api-key": key}).status_code == 413


def test_bulk_json_takes_the_column_path_and_still_names_bad_rows(
    open_service, served_model, readings
):
    """1,000 readings (the column decoder's size) score as the model does; one bad value
    among them is still a 400 naming its row, field, value and range."""
    sample = readings.iloc[:1000]
    rows = payload(sample)
    got = _post(open_service, "predict_batch", {"readings": rows}).json()
    np.testing.assert_allclose(
        [p["probability"] for p in got], served_model.predict_proba(sample), rtol=1e-9
    )
    rows[777]["tvoc_ppb"] = 60_001
    resp = _post(open_service, "predict_batch", {"readings": rows})
    assert resp.status_code == 400
    [error] = resp.json()["errors"]
    assert (error["row"], error["field"], error["value"]) == (777, "tvoc_ppb", 60_001)
    columns = columns_from_records(payload(sample))
    columns["ts"][5] = "1970-01-01T00:00:00Z"
    resp = _post(open_service, "predict_columns", {"columns": columns})
    assert resp.status_code == 400 and resp.json()["bad_rows"] == [5]
