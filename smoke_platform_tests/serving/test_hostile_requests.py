"""Hostile requests against a real `bentoml serve`: deep nesting, content-type games and
key guessing end in quick 4xx answers, never a 5xx or a hang."""

import math
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
    """Failed authentications are throttled per address (SMOKE_AUTH_FAILURES_PER_S=1, burst
    10): of 300 wrong keys only the burst and one per elapsed second are answered 401, the
    rest 429 (the bound follows the clock: a slow machine refills more tokens)."""
    statuses = []
    started = time.monotonic()
    with httpx.Client(timeout=10) as client:
        for i in range(300):
            resp = client.post(f"{guarded}/model_info", json={}, headers={"x-api-key": f"k{i}"})
            statuses.append(resp.status_code)
    elapsed = time.monotonic() - started
    assert set(statuses) <= {401, 429}
    assert statuses[0] == 401  # a wrong key is a 401 first, then throttled
    allowed = 10 + math.ceil(elapsed) + 1
    assert statuses.count(401) <= allowed, (statuses.count(401), elapsed)
    assert statuses.count(429) >= 150, (statuses.count(429), elapsed)
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


@st.composite
def hostile_arrow(draw, good):
    """Arrow bodies a client could send: random bytes, a valid stream cut short or with
    bytes flipped, and frames with NaN, nulls, huge values, wrong column types."""
    from smoke_platform.core.columns import frame_to_arrow

    kind = draw(st.sampled_from(["bytes", "cut", "flipped", "values", "types"]))
    if kind == "bytes":
        return draw(st.binary(max_size=4_000))
    body = frame_to_arrow(good)
    if kind == "cut":
        return body[: draw(st.integers(0, len(body) - 1))]
    if kind == "flipped":
        flipped = bytearray(body)
        for at in draw(st.lists(st.integers(0, len(body) - 1), min_size=1, max_size=20)):
            flipped[at] ^= 0xFF
        return bytes(flipped)
    frame = good.copy()
    column = draw(st.sampled_from(list(frame.columns)))
    if kind == "values":
        value = draw(st.sampled_from([float("nan"), float("inf"), -1e300, 1e300, None]))
        frame[column] = frame[column].astype(object).where(frame.index != frame.index[0], value)
    else:
        frame[column] = frame[column].astype(str)
    try:
        return frame_to_arrow(frame)
    except Exception:  # a frame pyarrow itself cannot write: send its bytes as text
        return frame.to_csv().encode()


def test_fuzzed_arrow_bodies_never_cause_a_5xx_or_a_slow_answer(open_service, readings):
    from smoke_platform.core.schema import FIELD_BY_NAME

    sample = readings.iloc[:20]
    good = sample[[c for c in sample.columns if c in FIELD_BY_NAME]]
    statuses = []
    with httpx.Client(timeout=10) as client:

        @settings(
            max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(body=hostile_arrow(good))
        def call(body):
            started = time.perf_counter()
            resp = client.post(
                f"{open_service}/predict_arrow",
                content=body,
                headers={"content-type": "application/vnd.apache.arrow.stream"},
            )
            statuses.append(resp.status_code)
            assert resp.status_code < 500, (body[:200], resp.text[:300])
            assert time.perf_counter() - started < 1.0
            if resp.status_code == 400:
                assert resp.json()["errors"][0]["field"]

        call()
    print("arrow fuzz statuses", sorted(Counter(statuses).items()))
    assert 400 in statuses


@st.composite
def hostile_bulk(draw, rows):
    """Bulk JSON large enough for the column decoder, with hostile values inside."""
    import json

    records = [dict(r) for r in rows]
    for _ in range(draw(st.integers(1, 3))):
        row = draw(st.integers(0, len(records) - 1))
        name = draw(st.sampled_from([*sorted(records[0]), "smell"]))
        records[row][name] = draw(
            st.sampled_from([1e400, -1, True, "7", None, "\u0000", [], {}, 10**40, "1970-01-01"])
            | _JSON
        )
    key = draw(st.sampled_from(["readings", "columns"]))
    if key == "columns":
        from smoke_platform.core.schema import columns_from_records

        return "/predict_columns", json.dumps({key: columns_from_records(records)}).encode()
    return "/predict_batch", json.dumps({key: records}).encode()


def test_fuzzed_bulk_json_never_causes_a_5xx(open_service, readings):
    rows = payload(readings.iloc[:40])  # > 4 kB: the column decoder's path
    statuses = []
    with httpx.Client(timeout=10) as client:

        @settings(
            max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(call=hostile_bulk(rows))
        def post(call):
            path, body = call
            resp = client.post(
                f"{open_service}{path}", content=body, headers={"content-type": "application/json"}
            )
            statuses.append(resp.status_code)
            assert resp.status_code < 500, (path, body[:300], resp.text[:300])

        post()
    print("bulk fuzz statuses", sorted(Counter(statuses).items()))
    assert 400 in statuses


def test_hostile_bytes_on_every_route_are_a_quick_4xx_never_a_5xx(open_service, readings):
    """Byte-level corpus (invalid UTF-8 in every string, overlong encodings, lone
    surrogates, BOMs, NUL, flips, cuts) on the single, bulk (column decoder's size) and
    Arrow routes: never a 5xx, within a second; bytes that are not UTF-8 JSON are a 4xx."""
    import json

    from smoke_platform.core.columns import frame_to_arrow
    from smoke_platform.core.schema import FIELD_BY_NAME, columns_from_records
    from smoke_platform_tests.hostile_bytes import hostile_bytes

    rows = payload(readings.iloc[:40])
    frame = readings.iloc[:40]
    bodies = {
        "/predict": json.dumps({"reading": rows[0]}).encode(),
        "/predict_batch": json.dumps({"readings": rows}).encode(),
        "/predict_columns": json.dumps({"columns": columns_from_records(rows)}).encode(),
        "/predict_arrow": frame_to_arrow(frame[[c for c in frame if c in FIELD_BY_NAME]]),
    }
    answers: list[tuple[str, int]] = []
    with httpx.Client(timeout=10) as client:

        @settings(
            max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(path=st.sampled_from(sorted(bodies)), data=st.data())
        def call(path, data):
            body = data.draw(hostile_bytes(bodies[path]))
            ctype = "application/vnd.apache.arrow.stream" if "arrow" in path else "application/json"
            started = time.perf_counter()
            resp = client.post(
                f"{open_service}{path}", content=body, headers={"content-type": ctype}
            )
            elapsed = time.perf_counter() - started
            answers.append((path, resp.status_code))
            assert resp.status_code < 500, (path, body[:300], resp.text[:300])
            assert elapsed < 1.0, (path, body[:300], elapsed)
            if "arrow" not in path:
                try:
                    json.loads(body.decode("utf-8"))
                except ValueError:  # not UTF-8 JSON (UnicodeDecodeError is a ValueError)
                    assert 400 <= resp.status_code < 500, (path, body[:300], resp.status_code)

        call()
    print("hostile bytes statuses", sorted(Counter(answers).items()))
    assert {p for p, _ in answers} == set(bodies)
