"""Scoring for the worker: the BentoML service's bulk endpoint (`/predict_columns`) behind a
circuit breaker, with the same promoted model loaded locally as the fallback while the
service is down."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoke_platform.core.features import frame_from_readings
from smoke_platform.core.schema import MEASUREMENTS, REQUIRED, columns_from_records

log = logging.getLogger("smoke.worker.scoring")


@dataclass
class Scores:
    probability: np.ndarray
    is_fire: np.ndarray
    model_version: str
    scored_by: str  # "service" or "local"


class CircuitBreaker:
    """Closed -> open after `failures` in a row; half-open (one trial) after `reset_s`."""

    def __init__(self, failures: int, reset_s: float) -> None:
        self.failures, self.reset_s = failures, reset_s
        self.count, self.opened_at = 0, None  # type: int, float | None

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def allow(self) -> bool:
        return self.opened_at is None or time.monotonic() - self.opened_at >= self.reset_s

    def success(self) -> None:
        if self.opened_at is not None:
            log.warning("scoring service is back: circuit closed")
        self.count, self.opened_at = 0, None

    def failure(self) -> None:
        self.count += 1
        if self.count >= self.failures or self.opened_at is not None:
            if self.opened_at is None:
                log.warning("scoring service failing: circuit open, scoring locally")
            self.opened_at = time.monotonic()


class RemoteScorer:
    """POST /predict_columns on the BentoML service: the batch as one list per field (the
    required fields only; the service needs nothing else to score)."""

    def __init__(self, url: str, api_key: str, timeout_s: float) -> None:
        import httpx

        from smoke_platform.serving import auth_headers

        headers = auth_headers(api_key)
        self.url = url.rstrip("/") + "/predict_columns"
        self.client = httpx.Client(timeout=timeout_s, headers=headers)

    def score(self, records: list[dict[str, Any]]) -> Scores:
        columns = columns_from_records(records, REQUIRED)
        resp = self.client.post(self.url, json={"columns": columns})
        if resp.status_code == 404:  # a bento built before the bulk route existed
            raise RuntimeError(f"{self.url} not found: serve a bento built by this version")
        resp.raise_for_status()
        preds = resp.json()
        if len(preds["probability"]) != len(records):
            got = len(preds["probability"])
            raise RuntimeError(f"service returned {got} predictions for {len(records)}")
        return Scores(
            np.asarray(preds["probability"], dtype="float64"),
            np.asarray(preds["is_fire"], dtype=bool),
            str(preds["model_version"]),
            "service",
        )


class LocalScorer:
    """The promoted model from the BentoML store, loaded on first use."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._model: Any = None

    def score(self, records: list[dict[str, Any]]) -> Scores:
        if self._model is None:
            from smoke_platform.modelstore import load_model

            self._model = load_model(self.tag)
            self._model.single_threaded()
            log.warning("loaded local fallback model %s", self._model.version)
        frame = frame_from_readings(records, MEASUREMENTS)
        proba = self._model.predict_proba(frame)
        return Scores(proba, proba >= self._model.threshold, self._model.version, "local")


class FallbackScorer:
    """Remote while the circuit is closed; local while it is open; retries remote after
    `reset_s` and switches back when it answers."""

    def __init__(self, remote: RemoteScorer, local: LocalScorer, breaker: CircuitBreaker) -> None:
        self.remote, self.local, self.breaker = remote, local, breaker

    def score(self, records: list[dict[str, Any]]) -> Scores:
        if self.breaker.allow():
            try:
                scores = self.remote.score(records)
            except Exception as exc:
                log.warning("service scoring failed (%s): %s", type(exc).__name__, exc)
                self.breaker.failure()
            else:
                self.breaker.success()
                return scores
        return self.local.score(records)
