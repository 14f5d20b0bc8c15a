"""The secured `bentoml serve` (API key, low rate limit, small request limit, two API
worker processes)."""

import os

import pytest

API_KEY = "test-key-" + os.urandom(6).hex()


@pytest.fixture(scope="session")
def secured_process(served_model, tmp_path_factory):
    """The process, URL, log path and key of the secured service."""
    log = tmp_path_factory.mktemp("secured") / "serve.log"
    env = {
        "SMOKE_MODEL_TAG": served_model.version,
        "SMOKE_API_KEY": API_KEY,
        "SMOKE_RATE_LIMIT_PER_S": "5",
        "SMOKE_RATE_LIMIT_BURST": "10",
        "SMOKE_MAX_REQUEST_BYTES": "100000",
        "SMOKE_SERVICE_WORKERS": "2",
    }
    from smoke_platform.serving import bentoml_serve

    proc, url = bentoml_serve("bentos.service:SmokeDetector", log, env=env)
    yield proc, url, log, API_KEY
    proc.stop()


@pytest.fixture(scope="session")
def secured_service(secured_process):
    _, url, log, key = secured_process
    return url, log, key


@pytest.fixture
def fresh_service(served_model, tmp_path):
    """A service of the test's own, for tests that read its /metrics: BentoML clears
    `$BENTOML_HOME/prometheus_multiproc_dir` whenever a server starts, so a session-wide
    service loses its series once another one starts after it."""
    from smoke_platform.serving import bentoml_serve

    proc, url = bentoml_serve(
        "bentos.service:SmokeDetector",
        tmp_path / "fresh-serve.log",
        env={"SMOKE_MODEL_TAG": served_model.version, "SMOKE_API_KEY": ""},
    )
    yield url
    proc.stop()
