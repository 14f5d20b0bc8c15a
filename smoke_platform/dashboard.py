"""A live dashboard without Docker: one page served by the platform itself (`smoke
dashboard`, started by `smoke up`), fed by the same Prometheus endpoints Grafana reads in
docker-compose: the stream workers' metrics and the service's `/metrics` and `/readyz`.

`GET /` is the page (no external scripts: it works offline), `GET /api/summary` the JSON it
polls every two seconds; `GET /api/alerts` the alerts and trouble signals with their
lifecycle, `POST /api/alerts/<id>/ack|resolve` an operator's acknowledgement or verdict
(behind SMOKE_API_KEY when set; bad input a 4xx naming the field). The latest alerts,
each with the three measurements that drove it, come from the `smoke_alerts` topic itself
(`read_committed`, no consumer group: every dashboard sees every worker's alerts, and none
of them moves anyone's offsets). The page itself is `dashboard.html` beside this module."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _scrape(client: httpx.Client, url: str) -> tuple[list[Any], str | None]:
    try:
        resp = client.get(url)
        resp.raise_for_status()
        return _samples(resp.text), None
    except (httpx.HTTPError, ValueError) as exc:
        return [], f"{url}: {type(exc).__name__}"


def _total(samples: list[Any], name: str, **labels: str) -> float:
    return sum(
        float(s.value)
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


class RecentAlerts:
    """The last `keep` alert events on the alerts topic, newest first, kept up to date by
    a background consumer (assigned every partition from `keep` before its end)."""

    def __init__(self, kafka: dict[str, Any], topic: str, keep: int = 20) -> None:
        self.kafka, self.topic, self.keep = kafka, topic, keep
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recent-alerts", daemon=True)

    def start(self) -> RecentAlerts:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def newest(self) -> list[dict[str, Any]]:
        return sorted(self.events, key=lambda e: str(e.get("emitted_at", e.get("ts"))))[::-1]

    def _run(self) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            {
                **self.kafka,
                "group.id": "smoke-reader-dashboard",  # required by the client; never joined
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            while not self._stop.is_set():  # until the topic exists and answers
                try:
                    meta = consumer.list_topics(self.topic, timeout=5).topics[self.topic]
                    if meta.error is not None:
                        raise KafkaException(meta.error)
                    parts = []
                    for p in meta.partitions:
                        low, high = consumer.get_watermark_offsets(
                            TopicPartition(self.topic, p), timeout=5
                        )
                        parts.append(TopicPartition(self.topic, p, max(low, high - self.keep)))
                    consumer.assign(parts)
                    self.error = None
                    break
                except KafkaException as exc:
                    self.error = f"alerts topic {self.topic}: {exc.args[0]}"
                    self._stop.wait(2)
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None or msg.value() is None:
                    continue
                try:
                    event = json.loads(msg.value() or b"")
                except (TypeError, ValueError):
                    continue  # not ours to judge: the dashboard shows what it can read
                if isinstance(event, dict):
                    self.events.append(event)
        finally:
            consumer.close()


def summary(
    worker_metrics: Sequence[str],
    service_url: str,
    timeout: float = 2.0,
    alerts: RecentAlerts | None = None,
    verify: str | bool = True,
) -> dict[str, Any]:
    """Fleet-wide figures from every worker and the service (`verify`: the CA of an HTTPS
    service), and what could not be read."""
    errors: list[str] = []
    workers: list[Any] = []
    with httpx.Client(timeout=timeout, verify=verify) as client:
        for url in worker_metrics:
            samples, err = _scrape(client, url)
            workers += samples
            if err:
                errors.append(err)
        service, err = _scrape(client, f"{service_url.rstrip('/')}/metrics")
        if err:
            errors.append(err)
        try:
            ready = client.get(f"{service_url.rstrip('/')}/readyz").status_code == 200
        except httpx.HTTPError:
            ready = False
    alarms: dict[tuple[str, str], float] = {}
    for s in workers:
        if s.name == "smoke_worker_sensor_alarms_total":
            key = (s.labels["sensor_id"], s.labels["severity"])
            alarms[key] = alarms.get(key, 0.0) + float(s.value)
    models = sorted(
        {s.labels["model_version"] for s in workers if s.name == "smoke_worker_model_info"}
        | {s.labels["model_version"] for s in service if s.name == "smoke_service_model_info"}
    )
    return {
        "time": time.time(),
        "predictions": _total(workers, "smoke_worker_scored_total"),
        "scored_locally": _total(workers, "smoke_worker_scored_total", scored_by="local"),
        "fire_predictions": _total(workers, "smoke_worker_fire_predictions_total"),
        "alerts_opened": _total(workers, "smoke_worker_alerts_total", event="open"),
        "alerts_critical": _total(
            workers, "smoke_worker_alerts_total", event="open", severity="critical"
        )
        + _total(workers, "smoke_worker_alerts_total", event="escalate", severity="critical"),
        "dead_letters": _total(workers, "smoke_worker_dlq_total"),
        "consumer_lag": _total(workers, "smoke_worker_consumer_lag"),
        "fallback_active": _total(workers, "smoke_worker_fallback_active") > 0,
        "service_ready": ready,
        "service_predictions": _total(service, "smoke_service_predictions_total"),
        "models": models,
        "alarms_by_sensor": [
            {"sensor_id": sensor, "severity": severity, "alarms": n}
            for (sensor, severity), n in sorted(alarms.items())
        ],
        "recent_alerts": [
            {
                k: e.get(k)
                for k in (
                    "ts",
                    "sensor_id",
                    "event",
                    "severity",
                    "probability",
                    "drivers",
                    "reasons",
                    "source",
                )
            }
            for e in (alerts.newest() if alerts else [])
        ],
        "workers": len(worker_metrics),
        "errors": errors + ([alerts.error] if alerts and alerts.error else []),
    }


def page() -> bytes:
    """The page (HTML, CSS and script in one file: nothing from outside, it works offline)."""
    from importlib.resources import files

    return files("smoke_platform").joinpath("dashboard.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    worker_metrics: Sequence[str] = ()
    service_url = ""
    alerts: RecentAlerts | None = None
    settings: Any = None  # StreamSettings: the topics alerts, trouble and verdicts live on
    lifecycles: Any = None  # LifecycleView of those topics, with `settings`

    def do_POST(self) -> None:
        """`POST /api/alerts/<id>/ack` {"by"} and `/resolve` {"verdict", "by", "note"}: behind
        the platform's API key (SMOKE_API_KEY) when one is set."""
        import hmac
        from urllib.parse import unquote

        from smoke_platform.core.verdicts import VerdictError, acknowledge, resolve
        from streaming.verdicts import lifecycles, publish

        parts = self.path.split("/")
        if self.settings is None or len(parts) != 5 or parts[1:3] != ["api", "alerts"]:
            return self._json(404, {"error": "not found"})
        alert_id, action = unquote(parts[3]), parts[4]
        keys = self.settings.keys()
        sent = self.headers.get("x-api-key", "").encode()
        if keys and not any(hmac.compare_digest(sent, k) for k in keys):
            return self._json(401, {"error": "x-api-key: missing or wrong", "field": "x-api-key"})
        try:
            length = int(self.headers.get("content-length") or 0)
            if not 0 <= length <= 16_384:  # a negative length would read until the client leaves
                raise VerdictError("body", f"{length} bytes", "a JSON object under 16 kB")
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise VerdictError("body", str(body)[:40], "a JSON object")
            known = self.lifecycles.snapshot()
            if alert_id not in known:  # raised a moment ago? ask the topics themselves
                known = lifecycles(self.settings)
            if action == "ack":
                rec = acknowledge(known, alert_id, body.get("by", ""))
            elif action == "resolve":
                verdict, note = body.get("verdict", ""), body.get("note", "")
                rec = resolve(known, alert_id, verdict, body.get("by", ""), note)
            else:
                return self._json(404, {"error": f"unknown action {action!r}: ack or resolve"})
            publish(self.settings, rec)
            self.lifecycles.note(rec)
        except VerdictError as exc:
            status = 404 if exc.field == "alert_id" else 400
            error = {"error": str(exc), "field": exc.field, "allowed": exc.allowed}
            return self._json(status, error)
        except ValueError as exc:  # not JSON (UnicodeDecodeError is one)
            return self._json(400, {"error": f"body: not a JSON object ({exc})", "field": "body"})
        return self._json(200, {**rec.as_event(), "status": rec.status})

    def _json(self, status: int, body: Any) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def do_GET(self) -> None:
        if self.path == "/api/alerts" and self.lifecycles is not None:
            known = self.lifecycles.snapshot(wait_s=2.0)  # a page polls: never hang on it
            items = sorted(known.values(), key=lambda r: r.raised_at)
            return self._json(200, [{**r.as_event(), "status": r.status} for r in items[::-1]])
        if self.path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", page())
        elif self.path == "/api/summary":
            verify = self.settings.verify() if self.settings is not None else True
            got = summary(self.worker_metrics, self.service_url, alerts=self.alerts, verify=verify)
            body = json.dumps(got).encode()
            self._send(200, "application/json", body)
        elif self.path == "/healthz":
            self._send(200, "text/plain", b"ok")
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.send_header("cache-control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # no line per poll
        pass


def serve(
    port: int,
    worker_metrics: Sequence[str],
    service_url: str,
    host: str = "127.0.0.1",
    alerts: RecentAlerts | None = None,
    settings: Any = None,
) -> ThreadingHTTPServer:
    """Start the dashboard in a background thread; returns the server (`shutdown()` it).
    With `settings` (StreamSettings) it also lists alerts and trouble signals (from a
    `LifecycleView` it starts) and takes operators' acknowledgements and verdicts."""
    view = None
    if settings is not None:
        from streaming.verdicts import LifecycleView

        view = LifecycleView(settings).start()
    handler = type(
        "Handler",
        (_Handler,),
        {
            "worker_metrics": tuple(worker_metrics),
            "service_url": service_url,
            "alerts": alerts,
            "settings": settings,
            "lifecycles": view,
        },
    )
    server = _Server((host, port), handler)
    server.lifecycles = view
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Server(ThreadingHTTPServer):
    """The page's server; closing it also stops the lifecycles' consumer."""

    lifecycles: Any = None

    def server_close(self) -> None:
        super().server_close()
        if self.lifecycles is not None:
            self.lifecycles.stop()
