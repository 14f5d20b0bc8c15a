"""The worker's remote scorer against a real `bentoml serve`."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from smoke_platform.core.io import to_records
from streaming.scoring import RemoteScorer

pytestmark = pytest.mark.bentoml


def test_scores_through_the_bulk_route(open_service, served_model, readings):
    sample = readings.iloc[:300]
    scorer = RemoteScorer(open_service, "", 30)
    scores = scorer.score(to_records(sample))
    np.testing.assert_allclose(scores.probability, served_model.predict_proba(sample), rtol=1e-9)
    assert scores.model_version == served_model.version
    assert scorer.route == "predict_arrow"  # the Arrow route, not a fallback


def test_the_rises_the_worker_measured_reach_the_model(open_service, served_model, readings):
    """Parity of worker and service: the service scores with the rises the worker sends,
    exactly as the model does in memory on the frame training would build."""
    from smoke_platform.core.features import add_rises

    sample = add_rises(readings).iloc[:1_500]
    scores = RemoteScorer(open_service, "", 30).score(to_records(sample))
    expected = served_model.predict_proba(sample)
    np.testing.assert_allclose(scores.probability, expected, rtol=1e-9)
    steady = served_model.predict_proba(readings.iloc[:1_500])  # had the rises been lost
    assert np.abs(expected - steady).max() > 0.01


@pytest.fixture
def service_without_bulk_route(open_service):
    """The real service behind a proxy that answers 404 for the bulk routes, as a bento
    built by an earlier version does (the one fault here that is not the real service)."""

    class Proxy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path in ("/predict_arrow", "/predict_columns"):
                status, data = 404, b'{"error": "not found"}'
            else:
                resp = httpx.post(
                    open_service + self.path,
                    content=body,
                    headers={"content-type": "application/json"},
                    timeout=30,
                )
                status, data = resp.status_code, resp.content
            seen.append((self.path, status))
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    seen: list[tuple[str, int]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_service_without_the_bulk_route_is_scored_through_predict_batch(
    service_without_bulk_route, served_model, readings
):
    from smoke_platform.core.features import add_rises

    url, seen = service_without_bulk_route
    scorer = RemoteScorer(url, "", 30)
    for start in (0, 200):  # with the rises a worker measured: they reach the model too
        sample = add_rises(readings).iloc[start : start + 200]
        scores = scorer.score(to_records(sample))
        expected = served_model.predict_proba(sample)
        np.testing.assert_allclose(scores.probability, expected, rtol=1e-9)
        assert list(scores.is_fire) == list(expected >= served_model.threshold)
        assert (scores.scored_by, scores.model_version) == ("service", served_model.version)
    # The missing route is asked for once; after that the scorer goes straight to the batch API.
    assert seen == [
        ("/predict_arrow", 404),
        ("/predict_columns", 404),
        ("/predict_batch", 200),
        ("/predict_batch", 200),
    ]


def test_the_local_fallback_is_loaded_in_the_background_before_any_outage(
    served_model, readings, caplog
):
    """The worker starts loading its fallback model at start (so the first outage does not
    pay the load); a model that cannot be loaded then is logged, never raised from the
    thread, and loading is tried again when a batch needs it (that error names the tag)."""
    from streaming.scoring import LocalScorer

    sample = readings.iloc[:200]
    local = LocalScorer(served_model.version)
    assert not local.ready
    local.preload().join(120)
    assert local.ready
    scores = local.score(to_records(sample))
    np.testing.assert_allclose(scores.probability, served_model.predict_proba(sample), rtol=1e-9)
    assert (scores.scored_by, scores.model_version) == ("local", served_model.version)

    missing = LocalScorer("smoke_detector:notinthestore")
    missing.preload().join(120)
    assert not missing.ready
    assert "smoke_detector:notinthestore not loaded at start" in caplog.text
    with pytest.raises(Exception, match="notinthestore"):
        missing.score(to_records(sample))
