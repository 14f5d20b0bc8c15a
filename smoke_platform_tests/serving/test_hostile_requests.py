"""Hostile requests against a real `bentoml serve`: deep nesting, content-type games and
key guessing end in quick 4xx answers, never a 5xx or a hang."""

import time
from collections import Counter

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("temperature_c", True, "a JSON number"),
        ("temperature_c", "20.5", "a JSON number"),
        ("fire_alarm", True, "a JSON integer"),
        ("sensor_id", "sensor\u0000one", "letters, digits"),
        ("sensor_id", "s" * 65, "1 to 64 characters"),
        ("ts", "1653-01-01T00:00:00Z", "days old"),
        ("ts", "1970-01-01T00:00:00Z", "days old"),
        ("ts", "9999-12-31T00:00:00Z", "s ahead of now"),
    ],
)
def test_lax_values_are_a_400_naming_field_value_and_what_is_allowed(
    open_service, readings, field, value, allowed
):
    reading = payload(readings.iloc[[0]])[0] | {field: value}
    resp = httpx.post(f"{open_service}/predict", json={"reading": reading}, timeout=30)
    assert resp.status_code == 400, resp.text
    [error] = resp.json()["errors"]
    assert error["field"] == field and allowed in error["allowed"]


def _nested(depth: int) -> bytes:
    return b'{"reading": ' + b'{"a": [' * depth + b"1" + b"]}" * depth + b"}"


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def hostile_bodies(draw, good):
    """Bodies a client could send: readings with hostile values (huge numbers, control
    characters, wrong types), deep nesting, huge literals, arbitrary JSON and bytes."""
    kind = draw(st.sampled_from(["reading", "nested", "literal", "json", "bytes"]))
    if kind == "reading":
        reading = dict(good)
        for name in draw(st.lists(st.sampled_from(sorted(good)), min_size=1, max_size=3)):
            reading[name] = draw(
                st.sampled_from(["1e400", "-1e400", "1" + "0" * 400, "NaN", "\u0000", "\u001b[2J"])
                | _JSON
            )
        import json

        return json.dumps({"reading": reading}, allow_nan=True).encode()
    if kind == "nested":
        return _nested(draw(st.integers(min_value=20, max_value=5_000)))
    if kind == "literal":
        digits = draw(st.integers(min_value=300, max_value=100_000))
        return b'{"reading": {"temperature_c": 1' + b"0" * digits + b"}}"
    if kind == "json":
        import json

        return json.dumps(draw(_JSON)).encode()
    return draw(st.binary(max_size=2_000))


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "",
]


def test_fuzzed_bodies_and_content_types_never_cause_a_5xx_or_a_slow_answer(open_service, readings):
    """Hypothesis draws hostile bodies and content types for every JSON endpoint: every
    answer is below 500 and comes within a second."""
    good = payload(readings.iloc[[0]])[0]
    answers: list[tuple[int, float]] = []

    with httpx.Client(timeout=10) as client:

        @settings(
            max_examples=200,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            path=st.sampled_from(["/predict", "/predict_batch", "/predict_columns"]),
            body=hostile_bodies(good),
            ctype=st.sampled_from(CONTENT_TYPES),
        )
        def call(path, body, ctype):
            headers = {"content-type": ctype} if ctype else {}
            started = time.perf_counter()
            resp = client.post(f"{open_service}{path}", content=body, headers=headers)
            elapsed = time.perf_counter() - started
            answers.append((resp.status_code, elapsed))
            assert resp.status_code < 500, (path, ctype, body[:300], resp.text[:300])
            assert elapsed < 1.0, (path, ctype, body[:300], elapsed)

        call()
    statuses = {status for status, _ in answers}
    print(
        "fuzz statuses",
        sorted(Counter(s for s, _ in answers).items()),
        "max s",
        max(e for _, e in answers),
    )
    assert len(answers) >= 200 and statuses & {400, 413, 415, 422}


def test_the_api_docs_page_and_its_files_arrive_whole_without_a_key(guarded):
    """The docs page at / loads its scripts and styles completely (a replayed request body
    once made every file response end after its headers); /docs leads there."""
    import re

    page = httpx.get(f"{guarded}/", timeout=10)
    assert page.status_code == 200
    files = re.findall(r'(?:src|href)="\.?(/?static_content/[^"]+)"', page.text)
    assert any(f.endswith(".js") for f in files) and any(f.endswith(".css") for f in files)
    sizes = []
    for name in files:
        resp = httpx.get(f"{guarded}/{name.lstrip('/')}", timeout=10)
        assert resp.status_code == 200, name
        assert len(resp.content) == int(resp.headers["content-length"]) > 0, name
        sizes.append(len(resp.content))
    assert max(sizes) > 100_000  # Swagger UI's bundle, whole
    moved = httpx.get(f"{guarded}/docs", timeout=10)
    assert moved.status_code == 307 and moved.headers["location"] == "/"
    spec = httpx.get(f"{guarded}/docs.json", timeout=10).json()
    assert {"/predict", "/predict_batch", "/predict_columns"} <= set(spec["paths"])
