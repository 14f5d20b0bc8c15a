"""A live dashboard without Docker: one page served by the platform itself (`smoke
dashboard`, started by `smoke up`), fed by the same Prometheus endpoints Grafana reads in
docker-compose: the stream workers' metrics and the service's `/metrics` and `/readyz`.

`GET /` is the page (no external scripts: it works offline), `GET /api/summary` the JSON it
polls every two seconds. The latest alerts, each with the three measurements that drove
it, come from the `smoke_alerts` topic itself (`read_committed`, no consumer group: every
dashboard sees every worker's alerts, and none of them moves anyone's offsets)."""

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
                "group.id": "smoke-dashboard",  # required by the client; never joined
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
) -> dict[str, Any]:
    """Fleet-wide figures from every worker and the service, and what could not be read."""
    errors: list[str] = []
    workers: list[Any] = []
    with httpx.Client(timeout=timeout) as client:
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
                for k in ("ts", "sensor_id", "event", "severity", "probability", "drivers")
            }
            for e in (alerts.newest() if alerts else [])
        ],
        "workers": len(worker_metrics),
        "errors": errors + ([alerts.error] if alerts and alerts.error else []),
    }


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smoke-platform: live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; background: #f6f8fa; }
h1 { font-size: 1.3rem; margin: 0 0 1rem; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .8rem; }
.tile { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: .7rem .9rem; }
.tile b { display: block; font-size: 1.6rem; overflow-wrap: anywhere; }
.bad b { color: #cf222e; } .good b { color: #1a7f37; }
svg { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; margin: 1rem 0; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #d0d7de; padding: .3rem .7rem; text-align: left; }
#errors { color: #cf222e; }
</style></head><body>
<h1>smoke-platform: live stream</h1>
<div class="tiles">
  <div class="tile" id="t-rate"><span>predictions / s</span><b>-</b></div>
  <div class="tile" id="t-predictions"><span>predictions</span><b>-</b></div>
  <div class="tile" id="t-fires"><span>scored as fire</span><b>-</b></div>
  <div class="tile" id="t-alerts"><span>alerts opened</span><b>-</b></div>
  <div class="tile" id="t-critical"><span>critical alarms</span><b>-</b></div>
  <div class="tile" id="t-lag"><span>consumer lag</span><b>-</b></div>
  <div class="tile" id="t-dlq"><span>dead letters</span><b>-</b></div>
  <div class="tile" id="t-service"><span>service</span><b>-</b></div>
  <div class="tile" id="t-model"><span>model</span><b style="font-size:.9rem">-</b></div>
</div>
<svg id="chart" width="720" height="120" viewBox="0 0 720 120" role="img"
     aria-label="predictions per second, last two minutes"><polyline fill="none"
     stroke="#0969da" stroke-width="2" points=""/></svg>
<h2 style="font-size:1.1rem">Alarms by sensor</h2>
<table><thead><tr><th>sensor</th><th>severity</th><th>alarms</th></tr></thead>
<tbody id="alarms"><tr><td colspan="3">none yet</td></tr></tbody></table>
<h2 style="font-size:1.1rem">Latest alerts, and what drove them</h2>
<table><thead><tr><th>time</th><th>sensor</th><th>event</th><th>severity</th>
<th>probability</th><th>drivers (z against clean air in training)</th></tr></thead>
<tbody id="recent"><tr><td colspan="6">none yet</td></tr></tbody></table>
<p id="errors"></p>
<script>
const rates = []; let last = null;
function tile(id, value, state) {
  const el = document.getElementById(id);
  el.querySelector("b").textContent = value;
  el.className = "tile" + (state ? " " + state : "");
}
async function refresh() {
  let s;
  try { s = await (await fetch("api/summary")).json(); } catch (e) { return; }
  if (last) rates.push(Math.max(0, (s.predictions - last.predictions) / (s.time - last.time)));
  last = s; if (rates.length > 60) rates.shift();
  tile("t-rate", rates.length ? rates[rates.length - 1].toFixed(1) : "-");
  tile("t-predictions", s.predictions.toLocaleString());
  tile("t-fires", s.fire_predictions.toLocaleString(), s.fire_predictions ? "bad" : "");
  tile("t-alerts", s.alerts_opened, s.alerts_opened ? "bad" : "good");
  tile("t-critical", s.alerts_critical, s.alerts_critical ? "bad" : "good");
  tile("t-lag", s.consumer_lag.toLocaleString(), s.consumer_lag > 1000 ? "bad" : "good");
  tile("t-dlq", s.dead_letters, s.dead_letters ? "bad" : "good");
  tile("t-service", s.service_ready ? (s.fallback_active ? "fallback" : "ready") : "down",
       s.service_ready && !s.fallback_active ? "good" : "bad");
  tile("t-model", s.models.join(", ") || "-");
  const top = Math.max(1, ...rates);
  document.querySelector("#chart polyline").setAttribute("points",
    rates.map((r, i) => `${i * 12},${115 - (r / top) * 105}`).join(" "));
  const rows = s.alarms_by_sensor.map(a =>
    `<tr><td>${a.sensor_id}</td><td>${a.severity}</td><td>${a.alarms}</td></tr>`);
  document.getElementById("alarms").innerHTML =
    rows.join("") || '<tr><td colspan="3">none yet</td></tr>';
  const recent = document.getElementById("recent");
  recent.replaceChildren(...s.recent_alerts.map(a => {
    const tr = document.createElement("tr");  // text, never markup: values come from a topic
    const p = typeof a.probability === "number" ? a.probability.toFixed(3) : "";
    for (const v of [a.ts, a.sensor_id, a.event, a.severity, p, a.drivers]) {
      const td = document.createElement("td"); td.textContent = v == null ? "" : String(v);
      tr.appendChild(td);
    }
    return tr;
  }));
  if (!s.recent_alerts.length) recent.innerHTML = '<tr><td colspan="6">none yet</td></tr>';
  document.getElementById("errors").textContent = s.errors.join("; ");
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    worker_metrics: Sequence[str] = ()
    service_url = ""
    alerts: RecentAlerts | None = None

    def do_GET(self) -> None:
        if self.path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", PAGE.encode())
        elif self.path == "/api/summary":
            got = summary(self.worker_metrics, self.service_url, alerts=self.alerts)
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
) -> ThreadingHTTPServer:
    """Start the dashboard in a background thread; returns the server (`shutdown()` it)."""
    handler = type(
        "Handler",
        (_Handler,),
        {"worker_metrics": tuple(worker_metrics), "service_url": service_url, "alerts": alerts},
    )
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
