"""Prometheus metrics of the stream worker (own registry; HTTP server on request)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class WorkerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "smoke_worker"
        self.consumed = Counter(f"{p}_consumed", "messages consumed", registry=r)
        self.scored = Counter(f"{p}_scored", "readings scored", ["scored_by"], registry=r)
        self.dlq = Counter(
            f"{p}_dlq", "messages sent to the dead-letter topic", ["reason"], registry=r
        )
        self.failed_batches = Counter(
            f"{p}_failed_batches",
            "batches whose processing raised (rewound and retried; see the poison guard)",
            registry=r,
        )
        self.skipped = Counter(
            f"{p}_replayed_skipped", "already-durable messages skipped", registry=r
        )
        self.alerts = Counter(f"{p}_alerts", "alert events", ["event", "severity"], registry=r)
        self.anomalies = Counter(f"{p}_anomalies", "readings with a z-score anomaly", registry=r)
        self.fire_predictions = Counter(
            f"{p}_fire_predictions", "readings scored as fire", ["scored_by"], registry=r
        )
        # Alarms by sensor: bounded by the sensors that ever alarmed, not by the fleet.
        self.sensor_alarms = Counter(
            f"{p}_sensor_alarms",
            "alerts opened or escalated",
            ["sensor_id", "severity"],
            registry=r,
        )
        self.model = Gauge(
            f"{p}_model_info", "1 for the model version that scored the last batch",
            ["model_version"], registry=r,
        )  # fmt: skip
        self.lag = Gauge(
            f"{p}_consumer_lag", "messages behind the partition's end, per assigned partition",
            ["partition"], registry=r,
        )  # fmt: skip
        self.fallback = Gauge(
            f"{p}_fallback_active", "1 while scoring with the local model", registry=r
        )
        self.trouble = Counter(
            f"{p}_trouble", "trouble signals (silent, stuck, implausible, feed_silent, platform)",
            ["kind", "event"], registry=r,
        )  # fmt: skip
        self.sensors = Gauge(
            f"{p}_sensors", "sensors supervised on the assigned partitions, by state",
            ["state"], registry=r,
        )  # fmt: skip
        self.transaction_open = Gauge(
            f"{p}_transaction_open", "1 while a batch's Kafka transaction is open", registry=r
        )
        self.scoring_latency = Histogram(
            f"{p}_scoring_latency_seconds",
            "scoring time per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e_latency = Histogram(
            f"{p}_end_to_end_latency_seconds",
            "reading time to prediction/alert written",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        # Every known label set starts at 0, so dashboards show 0 rather than "no data".
        for scorer in ("service", "local"):
            self.scored.labels(scorer)
            self.fire_predictions.labels(scorer)
        for state in ("known", "silent", "stuck"):
            self.sensors.labels(state)
        for event in ("open", "escalate", "close"):
            for severity in ("warning", "critical"):
                self.alerts.labels(event, severity)

        self.model_version = ""

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        got = self.registry.get_sample_value(name, labels or None)
        return float(got or 0.0)
