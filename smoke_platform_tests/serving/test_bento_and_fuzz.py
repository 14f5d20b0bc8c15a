"""The bento Dagster builds serves; property-based requests from the OpenAPI spec never 5xx."""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from smoke_platform.core.io import to_records
from smoke_platform.core.schema import columns_from_records
from smoke_platform.defs.serving.assets import build_bento, default_build_ctx
from smoke_platform.serving import bentoml_serve

pytestmark = pytest.mark.bentoml


def test_bento_built_by_the_asset_code_serves_the_model(served_model, readings, tmp_path):
    bento = build_bento(served_model.version, default_build_ctx())
    assert [str(m.tag) for m in bento.info.all_models] == [served_model.version]
    # `bentoml serve smoke_detector:<version>`: the packaged service and model, no source tree.
    proc, url = bentoml_serve(str(bento.tag), tmp_path / "bento.log", env={"SMOKE_MODEL_TAG": ""})
    try:
        sample = readings.iloc[:50]
        resp = httpx.post(f"{url}/predict_batch", json={"readings": to_records(sample)}, timeout=30)
        assert resp.status_code == 200, resp.text
        got = [p["probability"] for p in resp.json()]
        assert got == pytest.approx(list(served_model.predict_proba(sample)))
        columns = {"columns": columns_from_records(to_records(sample))}
        bulk = httpx.post(f"{url}/predict_columns", json=columns, timeout=30)
        assert bulk.status_code == 200, bulk.text
        assert bulk.json()["probability"] == pytest.approx(got)
        from smoke_platform.core.columns import ARROW_MEDIA_TYPE, frame_to_arrow
        from smoke_platform.core.schema import FIELD_BY_NAME

        table = frame_to_arrow(sample[[c for c in sample.columns if c in FIELD_BY_NAME]])
        arrow = httpx.post(
            f"{url}/predict_arrow",
            content=table,
            headers={"content-type": ARROW_MEDIA_TYPE},
            timeout=30,
        )
        assert arrow.status_code == 200, arrow.text
        assert arrow.json()["probability"] == pytest.approx(got)
        info = httpx.post(f"{url}/model_info", json={}, timeout=30).json()
        assert info["version"] == served_model.version
    finally:
        assert proc.stop() is not None


def _fuzz(operation, mode: GenerationMode, seen: list[int]) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        response = case.call(timeout=30)
        seen.append(response.status_code)
        assert response.status_code < 500, (case.path, case.body, response.text[:500])

    call()


def test_openapi_fuzzing_finds_no_server_errors(open_service, readings):
    """Valid-by-schema cases (positive) and schema-violating cases (negative) for every operation:
    never a 5xx; positive cases are served, negative ones refused with a 4xx."""
    from hypothesis import strategies as st

    from smoke_platform.core.columns import ARROW_MEDIA_TYPE, frame_to_arrow
    from smoke_platform.core.schema import FIELD_BY_NAME

    # The Arrow route's body is an IPC stream, not JSON: a real one or arbitrary bytes.
    sample = readings[[c for c in readings.columns if c in FIELD_BY_NAME]]
    streams = st.integers(1, 200).map(lambda n: frame_to_arrow(sample.iloc[:n]))
    schemathesis.openapi.media_type(ARROW_MEDIA_TYPE, streams | st.binary(max_size=3_000))
    schema = schemathesis.openapi.from_url(f"{open_service}/docs.json")
    schema.config.base_url = open_service
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/predict",
        "/predict_batch",
        "/predict_columns",
        "/predict_arrow",
        "/model_info",
    }
    statuses: dict[GenerationMode, list[int]] = {mode: [] for mode in GenerationMode}
    for operation in operations:
        # An operation with nothing to send (no body, no parameters) has no negative cases.
        sends_something = len(operation.body) or operation.query
        modes = GenerationMode if sends_something else [GenerationMode.POSITIVE]
        for mode in modes:
            _fuzz(operation, mode, statuses[mode])
    positive, negative = statuses[GenerationMode.POSITIVE], statuses[GenerationMode.NEGATIVE]
    assert positive and negative
    assert any(s == 200 for s in positive), positive
    assert any(400 <= s < 500 for s in negative), negative
