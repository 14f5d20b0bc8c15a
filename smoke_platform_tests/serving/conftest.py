"""A trained model in the test BentoML store, and real `bentoml serve` processes."""

import os

import pytest

from smoke_platform import modelstore
from smoke_platform.core.modeling import session_holdout, train_candidate, training_frame
from smoke_platform.core.scoring import ScoringModel
from smoke_platform.core.simulate import generate_readings
from smoke_platform.serving import bentoml_serve

MODEL_NAME = "smoke_detector_svc_test"


@pytest.fixture(scope="session")
def served_model():
    """A small but real model, saved to the (test) BentoML store like the gate does."""
    frame = training_frame(generate_readings(n_rows=15_000, seed=21))
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


API_KEY = "test-key-" + os.urandom(6).hex()


@pytest.fixture(scope="session")
def secured_service(served_model, tmp_path_factory):
    """The same service with an API key, a low rate limit and a small request limit."""
    proc, url, log = _serve(
        served_model,
        tmp_path_factory,
        "secured",
        SMOKE_API_KEY=API_KEY,
        SMOKE_RATE_LIMIT_PER_S="5",
        SMOKE_RATE_LIMIT_BURST="10",
        SMOKE_MAX_REQUEST_BYTES="100000",
    )
    yield url, log, API_KEY
    proc.stop()
