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
    required fields only; the service needs nothing else to score). A service that lacks
    the route (a bento built by an earlier version, still served after an upgrade until the
    next training builds a new one) is scored through /predict_batch instead."""

    def __init__(self, url: str, api_key: str, timeout_s: float) -> None:
        import httpx

        from smoke_platform.serving import auth_headers

        self.base = url.rstrip("/")
        self.bulk = True  # False once the service answered 404 for /predict_columns
        self.client = httpx.Client(timeout=timeout_s, headers=auth_headers(api_key))

    def score(self, records: list[dict[str, Any]]) -> Scores:
        if self.bulk:
            columns = columns_from_records(records, REQUIRED)
            resp = self.client.post(f"{self.base}/predict_columns", json={"columns": columns})
            if resp.status_code != 404:
                resp.raise_for_status()
                preds = resp.json()
                return self._scores(preds["probability"], preds["is_fire"], preds, records)
            self.bulk = False
            log.warning(
                "%s has no /predict_columns (a bento built by an earlier version): "
                "scoring through /predict_batch",
                self.base,
            )
        resp = self.client.post(f"{self.base}/predict_batch", json={"readings": records})
        resp.raise_for_status()
        rows = resp.json()
        first = rows[0] if rows else {"model_version": ""}
        probability = [p["probability"] for p in rows]
        return self._scores(probability, [p["is_fire"] for p in rows], first, records)

    @staticmethod
    def _scores(probability: list, is_fire: list, meta: dict, records: list) -> Scores:
        if len(probability) != len(records):
            raise RuntimeError(
                f"service returned {len(probability)} predictions for {len(records)}"
            )
        return Scores(
            np.asarray(probability, dtype="float64"),
            np.asarray(is_fire, dtype=bool),
            str(meta["model_version"]),
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
