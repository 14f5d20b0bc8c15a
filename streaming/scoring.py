"""Scoring for the worker: the BentoML service's bulk endpoint (`/predict_arrow`) behind a
circuit breaker, with the same promoted model loaded locally as the fallback while the
service is down."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoke_platform.core.columns import ARROW_MEDIA_TYPE, records_to_arrow
from smoke_platform.core.features import frame_from_readings
from smoke_platform.core.schema import HISTORY_FIELDS, REQUIRED, SCORED_INPUTS, columns_from_records

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

    def trip(self) -> None:
        """Open at once (the service missed a deadline: waiting again would cost another)."""
        if self.opened_at is None:
            log.warning("scoring service missed its deadline: circuit open, scoring locally")
        self.count, self.opened_at = self.failures, time.monotonic()

    def probing(self) -> None:
        """A probe is under way: the next one waits another `reset_s`."""
        self.opened_at = time.monotonic()

    def failure(self) -> None:
        self.count += 1
        if self.count >= self.failures or self.opened_at is not None:
            if self.opened_at is None:
                log.warning("scoring service failing: circuit open, scoring locally")
            self.opened_at = time.monotonic()


class RemoteScorer:
    """The BentoML service's bulk route: the batch as an Apache Arrow IPC stream to
    `/predict_arrow` (the required fields and the rises the worker measured; the service
    needs nothing else to score).
    A service that lacks the route (a bento built by an earlier version, still served
    after an upgrade until the next training builds a new one) is asked through the next
    route it has: `/predict_columns`, then `/predict_batch`."""

    ROUTES = ("predict_arrow", "predict_columns", "predict_batch")

    def __init__(self, url: str, api_key: Any, timeout_s: float, verify: str | bool = True) -> None:
        import httpx

        from smoke_platform.serving import auth_headers

        self.base = url.rstrip("/")
        self.route = self.ROUTES[0]  # the next one once the service answered 404
        self.client = httpx.Client(timeout=timeout_s, headers=auth_headers(api_key), verify=verify)

    def _post(self, records: list[dict[str, Any]], extra: dict[str, Any]) -> Any:
        names = (*REQUIRED, *(h for h in HISTORY_FIELDS if records and h in records[0]))
        if self.route == "predict_arrow":
            body = records_to_arrow(records, names)
            return self.client.post(
                f"{self.base}/predict_arrow",
                content=body,
                headers={"content-type": ARROW_MEDIA_TYPE},
                **extra,
            )
        if self.route == "predict_columns":
            columns = columns_from_records(records, names)
            return self.client.post(
                f"{self.base}/predict_columns", json={"columns": columns}, **extra
            )
        return self.client.post(f"{self.base}/predict_batch", json={"readings": records}, **extra)

    def score(self, records: list[dict[str, Any]], timeout: float | None = None) -> Scores:
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        resp = self._post(records, extra)
        while resp.status_code == 404 and self.route != self.ROUTES[-1]:
            missing = self.route
            self.route = self.ROUTES[self.ROUTES.index(missing) + 1]
            log.warning(
                "%s has no /%s (a bento built by an earlier version): scoring through /%s",
                self.base,
                missing,
                self.route,
            )
            resp = self._post(records, extra)
        resp.raise_for_status()
        if self.route != "predict_batch":
            preds = resp.json()
            return self._scores(preds["probability"], preds["is_fire"], preds, records)
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


def _load_retrying(load: Any, tag: str, attempts: int = 3, pause_s: float = 0.5) -> Any:
    """`load(tag)`, again after a pause when it fails for another reason than the model
    being absent: BentoML writes a model's `model.yaml` in place, so a reader may meet it
    half-written while another process saves into the same store."""
    from bentoml.exceptions import NotFound

    for attempt in range(attempts):
        try:
            return load(tag)
        except NotFound:
            raise
        except Exception as exc:
            if attempt == attempts - 1:
                raise
            log.warning("loading %s failed (%s: %s): again", tag, type(exc).__name__, exc)
            time.sleep(pause_s)


class ModelUnavailable(RuntimeError):
    """No model can score: the service failed and the local fallback model cannot be
    loaded. The environment's failure (no model promoted yet, a store that cannot be
    read), never the messages': the worker ends and its supervisor restarts it."""


class LocalScorer:
    """The promoted model from the BentoML store, loaded when the worker starts (in the
    background: `preload`) or else on first use, so the first outage of the service does
    not also pay for loading the model."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, model: Any) -> LocalScorer:
        """A scorer of a model already in memory (a `ScoringModel`: tests, benchmarks)."""
        scorer = cls(model.version)
        scorer._model = model
        return scorer

    @property
    def ready(self) -> bool:
        return self._model is not None

    def preload(self) -> threading.Thread:
        """Load the model in a background thread; a failure is logged (and tried again on
        first use), never raised: the service may be all the worker needs."""

        def load() -> None:
            try:
                self._load()
            except Exception as exc:
                log.warning(
                    "local fallback model %s not loaded at start (%s: %s); will retry on use",
                    self.tag,
                    type(exc).__name__,
                    exc,
                )

        loader = threading.Thread(target=load, name="fallback-model-load", daemon=True)
        loader.start()
        return loader

    def _load(self) -> Any:
        with self._lock:  # a batch that needs the model waits for a load under way
            if self._model is None:
                from smoke_platform.modelstore import load_model

                try:
                    model = _load_retrying(load_model, self.tag)
                except Exception as exc:
                    raise ModelUnavailable(
                        f"no model to score with: the service did not answer and the local "
                        f"fallback model {self.tag} cannot be loaded ({type(exc).__name__}: "
                        f"{exc}); promote a model (materialise smoke_classifier) or start "
                        "the service at SMOKE_SERVICE_URL"
                    ) from exc
                model.single_threaded()
                self._model = model
                log.info("loaded local fallback model %s", model.version)
            return self._model

    def score(self, records: list[dict[str, Any]]) -> Scores:
        model = self._model if self._model is not None else self._load()
        frame = frame_from_readings(
            records, [c for c in SCORED_INPUTS if not records or c in records[0]]
        )
        proba = model.predict_proba(frame)
        return Scores(proba, proba >= model.threshold, model.version, "local")


class FallbackScorer:
    """The service while the circuit is closed, within a per-batch deadline; the same model
    locally the moment the service misses it. A missed deadline (a hung service) opens the
    circuit at once, other failures after `breaker.failures` in a row; while it is open
    every batch is scored locally and, each `reset_s`, one probe request runs in the
    background; its success closes the circuit. So a hung service costs one deadline."""

    def __init__(
        self,
        remote: RemoteScorer,
        local: LocalScorer,
        breaker: CircuitBreaker,
        probe_timeout_s: float = 5.0,
    ) -> None:
        self.remote, self.local, self.breaker = remote, local, breaker
        self.probe_timeout_s = probe_timeout_s
        self._probe: threading.Thread | None = None

    def score(self, records: list[dict[str, Any]]) -> Scores:
        if self.breaker.is_open:
            self._probe_in_background(records[:1])
            return self.local.score(records)
        try:
            scores = self.remote.score(records)
        except Exception as exc:
            log.warning("service scoring failed (%s): %s", type(exc).__name__, exc)
            if _is_timeout(exc):
                self.breaker.trip()
            else:
                self.breaker.failure()
            return self.local.score(records)
        self.breaker.success()
        return scores

    def _probe_in_background(self, sample: list[dict[str, Any]]) -> None:
        if not sample or not self.breaker.allow():
            return
        if self._probe is not None and self._probe.is_alive():
            return
        self.breaker.probing()

        def probe() -> None:
            try:
                self.remote.score(sample, timeout=self.probe_timeout_s)
            except Exception as exc:
                log.info("service probe failed (%s): still scoring locally", type(exc).__name__)
                self.breaker.trip()
            else:
                self.breaker.success()

        self._probe = threading.Thread(target=probe, name="service-probe", daemon=True)
        self._probe.start()


def _is_timeout(exc: Exception) -> bool:
    import httpx

    return isinstance(exc, httpx.TimeoutException)
