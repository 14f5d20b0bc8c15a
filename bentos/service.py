"""BentoML service `smoke_detector`: scores readings with the promoted model.

Serve from the source folder:   bentoml serve bentos.service:SmokeDetector
Serve the bento Dagster built:  bentoml serve smoke_detector:latest
"""

import os

# One OpenMP thread per model call: BentoML runs concurrent requests in a thread pool, and
# each call spinning up threads on every core burnt ~2x the CPU under load on 2 cores.
# Set before scikit-learn's OpenMP runtime loads; export OMP_NUM_THREADS to override. (A
# process that imports this module, e.g. to build a bento, passes it on to its children.)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType
from pydantic import BaseModel, Field
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11

with bentoml.importing():
    import numpy as np
    import pandas as pd
    from starlette.responses import Response

    from bentos.bulk import (
        ArrowInput,
        ColumnsInput,
        ReadingsInput,
        arrow_readings,
        measurements,
        serialised,
    )
    from bentos.guard import GuardMiddleware, service_ssl, service_workers, set_model_version
    from smoke_platform.core.schema import SCORED_INPUTS, Reading, ReadingColumns
    from smoke_platform.modelstore import scoring_model_from_stored, served_model_tag


class DomainMetrics:
    """Domain series beside BentoML's request metrics on /metrics (bentoml.metrics: safe
    across API worker processes). Made when the service starts, not at import: building a
    bento imports this module again in the same process."""

    def __init__(self) -> None:
        self.predictions = bentoml.metrics.Counter(
            name="smoke_service_predictions",
            documentation="readings scored, by route and model version",
            labelnames=["route", "model_version"],
        )
        self.fire_predictions = bentoml.metrics.Counter(
            name="smoke_service_fire_predictions",
            documentation="readings scored as fire (probability >= the model's threshold)",
            labelnames=["route", "model_version"],
        )
        self.model_seconds = bentoml.metrics.Histogram(
            name="smoke_service_model_seconds",
            documentation="time spent in the model per request",
            labelnames=["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.model_info = bentoml.metrics.Gauge(
            name="smoke_service_model_info",
            documentation="1 for the model version this service serves",
            labelnames=["model_version", "algorithm"],
            multiprocess_mode="max",
        )


class Prediction(TypedDict):
    """The model's answer for one reading. (A TypedDict, not a model: a bulk answer is
    1,000s of them, and plain dicts serialise 4x faster than model instances.)"""

    probability: Annotated[float, Field(description="fire probability, 0..1")]
    is_fire: Annotated[bool, Field(description="probability >= the model's operating threshold")]
    threshold: float
    model_version: str


class PredictionColumns(BaseModel):
    """The model's answers for a `ReadingColumns` request, in the same order."""

    probability: list[float] = Field(description="fire probability per reading, 0..1")
    is_fire: list[bool] = Field(description="probability >= threshold, per reading")
    threshold: float
    model_version: str


class ServiceArgs(BaseModel):
    """Bento arguments: `bentoml build --arg model_tag=...` pins the packaged model;
    from source, `--arg model_tag=...` or `SMOKE_MODEL_TAG` (default: the champion)."""

    model_tag: str = ""


ARGS = bentoml.use_arguments(ServiceArgs)


class ModelInfo(BaseModel):
    version: str
    algorithm: str
    threshold: float
    features: list[str]
    trained_at: str
    data_fingerprint: str
    metrics: dict


@bentoml.service(
    name="smoke_detector", traffic={"timeout": 30}, workers=service_workers(), ssl=service_ssl()
)
class SmokeDetector:
    """Fire detection on smoke-sensor readings."""

    # Class scope: `bentoml build` packages this model version into the bento.
    model_ref = bentoml.models.BentoModel(ARGS.model_tag or served_model_tag())

    def __init__(self) -> None:
        self.model = scoring_model_from_stored(self.model_ref)
        self.model.single_threaded()  # per-request thread pools cost more than they save
        set_model_version(self.model.version)
        self.metrics = DomainMetrics()
        algorithm = str(self.model.metadata.get("algorithm", ""))
        self.metrics.model_info.labels(model_version=self.model.version, algorithm=algorithm).set(1)
        self.started = time.time()

    def _score(self, frame: pd.DataFrame, route: str) -> Any:
        """The model's probabilities for `frame`, counted in the domain metrics."""
        started = time.perf_counter()
        proba = self.model.predict_proba(frame)
        self.metrics.model_seconds.labels(route=route).observe(time.perf_counter() - started)
        version = self.model.version
        self.metrics.predictions.labels(route=route, model_version=version).inc(len(proba))
        fires = int((proba >= self.model.threshold).sum())
        if fires:
            self.metrics.fire_predictions.labels(route=route, model_version=version).inc(fires)
        return proba

    def _predict(self, readings: Any, route: str) -> list[Prediction]:
        """Predictions for readings (an array of measurements, or `Reading`s in process)."""
        array = readings if isinstance(readings, np.ndarray) else measurements(readings)
        proba = self._score(pd.DataFrame(array, columns=list(SCORED_INPUTS)), route)
        threshold, version = self.model.threshold, self.model.version
        return [
            {"probability": p, "is_fire": f, "threshold": threshold, "model_version": version}
            for p, f in zip(proba.tolist(), (proba >= threshold).tolist(), strict=True)
        ]

    @bentoml.api
    def predict(self, reading: Reading) -> Prediction:  # type: ignore[valid-type]
        """Score one reading."""
        return self._predict([reading], "predict")[0]

    # Bulk inputs arrive as one DataFrame of measurements (bentos/bulk.py: no object per
    # reading, every value checked against the field table), which adaptive batching
    # concatenates; the answers are plain dicts serialised once.
    @bentoml.api(
        batchable=True,
        max_batch_size=5_000,
        max_latency_ms=1_000,
        input_spec=ReadingsInput,
        output_spec=serialised(list[Prediction]),
    )
    def predict_batch(
        self,
        readings: list[Reading],  # type: ignore[valid-type]
    ) -> Annotated[list[Prediction], ContentType("application/json")]:
        """Score a list of readings; concurrent calls are merged by adaptive batching."""
        return self._predict(readings, "predict_batch")

    @bentoml.api(input_spec=ColumnsInput)
    def predict_columns(self, columns: ReadingColumns) -> PredictionColumns:  # type: ignore[valid-type]
        """Score many readings sent as one list per field; values are validated per row
        against the same limits as `predict`."""
        return self._columns(
            columns if isinstance(columns, np.ndarray) else measurements(columns), "predict_columns"
        )

    @bentoml.api(input_spec=ArrowInput)
    def predict_arrow(self, table: bytes) -> PredictionColumns:
        """Score readings sent as an Apache Arrow IPC stream (content-type
        application/vnd.apache.arrow.stream), the bulk path for machine clients (the stream
        worker uses it): one column per reading field, every value checked against the
        same limits as `predict`. Answers as /predict_columns does."""
        array = arrow_readings(table)
        if isinstance(array, Response):
            return array  # type: ignore[return-value]  # a 400 naming what is wrong
        return self._columns(array, "predict_arrow")

    def _columns(self, array: np.ndarray, route: str) -> PredictionColumns:
        proba = self._score(pd.DataFrame(array, columns=list(SCORED_INPUTS)), route)
        return PredictionColumns(
            probability=proba.tolist(),
            is_fire=(proba >= self.model.threshold).tolist(),
            threshold=self.model.threshold,
            model_version=self.model.version,
        )

    @bentoml.api
    def model_info(self) -> ModelInfo:
        """Version, metrics, feature list and training time of the served model."""
        meta = self.model.metadata
        return ModelInfo(
            version=self.model.version,
            algorithm=str(meta.get("algorithm", "")),
            threshold=self.model.threshold,
            features=self.model.features,
            trained_at=str(meta.get("trained_at", "")),
            data_fingerprint=str(meta.get("data_fingerprint", "")),
            metrics=dict(meta.get("holdout_metrics", {})),
        )


# API key, rate limit, size limit, readable validation errors and the audit log.
SmokeDetector.add_asgi_middleware(GuardMiddleware)
