"""Hostile requests against a real `bentoml serve`: deep nesting, content-type games and
key guessing end in quick 4xx answers, never a 5xx or a hang."""

import time

import httpx
import pytest

from smoke_platform.core.io import to_records as payload

pytestmark = pytest.mark.bentoml

KEY = "hostile-test-key"


@pytest.fixture(scope="module")
def guarded(served_model, tmp_path_factory):
    """Its own service: key guessing exhausts this address's failed-authentication budget,
    which must not leak into the other tests' services."""
    from smoke_platform.serving import bentoml_serve

    env = {"SMOKE_MODEL_TAG": served_model.version, "SMOKE_API_KEY": KEY}
    proc, url = bentoml_serve(
        "bentos.service:SmokeDetector", tmp_path_factory.mktemp("hostile") / "serve.log", env=env
    )
    yield url
    proc.stop()


@pytest.mark.parametrize("depth", [100, 500, 1_000, 50_000])
def test_deep_nesting_is_a_400_within_milliseconds(guarded, depth):
    body = b'{"reading": ' + b"[" * depth + b"]" * depth + b"}"
    started = time.perf_counter()
    resp = httpx.post(
        f"{guarded}/predict",
        content=body,
        headers={"x-api-key": KEY, "content-type": "application/json"},
        timeout=30,
    )
    elapsed = time.perf_counter() - started
    assert resp.status_code == 400, resp.text
    assert f"nested {depth + 1} levels" in resp.json()["error"]
    assert elapsed < 1.0


def test_a_bracket_inside_a_string_is_not_nesting(guarded, readings):
    reading = payload(readings.iloc[[0]])[0] | {"sensor_id": "[" * 100 + '\\"{' * 50}
    resp = httpx.post(
        f"{guarded}/predict", json={"reading": reading}, headers={"x-api-key": KEY}, timeout=30
    )
    assert resp.status_code == 400  # the id is too long, not too deep
    assert "sensor_id" in resp.json()["error"] and "nested" not in resp.json()["error"]


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_a_415_naming_what_is_allowed(guarded, readings, ctype):
    import json

    body = json.dumps({"reading": payload(readings.iloc[[0]])[0]}).encode()
    headers = {"x-api-key": KEY} | ({"content-type": ctype} if ctype else {})
    resp = httpx.post(f"{guarded}/predict", content=body, headers=headers, timeout=30)
    assert resp.status_code == 415
    assert resp.json()["allowed"] == ["application/json"]
    assert resp.json()["content_type"] == (ctype or "(none)")


def test_guessing_keys_ends_in_429s(guarded):
    statuses = []
    with httpx.Client(timeout=10) as client:
        for i in range(300):
            resp = client.post(f"{guarded}/model_info", json={}, headers={"x-api-key": f"k{i}"})
            statuses.append(resp.status_code)
    assert set(statuses) <= {401, 429}
    assert statuses[0] == 401 and statuses.count(429) >= 250
    assert set(statuses[-100:]) == {429}
    # The right key still works from the same address.
    ok = httpx.post(f"{guarded}/model_info", json={}, headers={"x-api-key": KEY}, timeout=10)
    assert ok.status_code == 200
