"""The stream worker: a consumer-group member that validates, scores, flags and alerts.

Per batch: consume -> validate (bad messages to the DLQ with the reason) -> score in
one call (service, or the local model while the circuit is open) -> per-sensor
z-scores and alert machine -> produce `smoke_predictions` / `smoke_alerts` and flush
-> write Parquet + partition state (durable) -> commit offsets. SIGTERM/SIGINT finish
the current batch, commit and leave the group.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pydantic_core import from_json, to_json

from smoke_platform.core.schema import MEASUREMENTS, ReadingValidationError, parse_reading
from smoke_platform.modelstore import served_model_tag
from smoke_platform.notify import Notifier
from streaming.alerts import AlertConfig, SensorState
from streaming.config import StreamSettings
from streaming.metrics import WorkerMetrics
from streaming.scoring import CircuitBreaker, FallbackScorer, LocalScorer, RemoteScorer
from streaming.sink import PartitionSink

log = logging.getLogger("smoke.worker")

_REASONS = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "json_invalid": "malformed_json",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "finite_number": "out_of_range",
}


def dlq_reason(exc: ReadingValidationError) -> str:
    """A short machine-readable reason from the first validation error."""
    kind = exc.errors[0].kind if exc.errors else ""
    return _REASONS.get(kind, "wrong_type" if kind else "invalid")


class StreamWorker:
    def __init__(self, settings: StreamSettings, scorer: FallbackScorer | None = None) -> None:
        from confluent_kafka import Consumer, Producer

        self.s = settings
        self.cfg = AlertConfig(
            settings.alert_consecutive,
            settings.alert_critical_probability,
            settings.alert_close_after,
            settings.zscore_threshold,
            settings.rolling_window,
        )
        self.metrics = WorkerMetrics()
        self.scorer = scorer or FallbackScorer(
            RemoteScorer(settings.service_url, settings.api_key, settings.request_timeout_s),
            LocalScorer(served_model_tag()),
            CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s),
        )
        self.sink = PartitionSink(settings.stream_dir, settings.topic)
        self.notifier = Notifier(settings.webhook_url, source="stream-worker")
        self.states: dict[int, dict[str, Any]] = {}
        self.stopping = False
        self.assigned = threading.Event()  # set once the group gave us partitions
        self.consumer = Consumer(
            settings.kafka(
                **{
                    "group.id": settings.group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": settings.session_timeout_ms,
                    "max.poll.interval.ms": max(300_000, settings.session_timeout_ms),
                }
            )
        )
        self.producer = Producer(
            settings.kafka(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5})
        )

    # -- lifecycle ---------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        log.info("stop requested: finishing the current batch")
        self.stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self.states[tp.partition] = self.sink.load(tp.partition)
        log.info("assigned partitions %s", [tp.partition for tp in partitions])
        self.assigned.set()

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self.states.pop(tp.partition, None)

    def open(self) -> None:
        """Serve metrics, learn the topic's id (see `PartitionSink`), join the group."""
        self.metrics.serve(self.s.worker_metrics_port, self.s.worker_metrics_host)
        self.sink.topic_id = topic_id(self.s)
        self.consumer.subscribe(
            [self.s.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def poll_once(self) -> int:
        """Consume and process one batch; returns how many new messages it handled."""
        msgs = self.consumer.consume(self.s.batch_size, self.s.poll_timeout_s)
        return self.process([m for m in msgs if self._usable(m)])

    def close(self) -> None:
        self.producer.flush(30)
        self.consumer.close()  # leaves the group; offsets were committed per batch
        self.notifier.close()
        log.info("worker stopped")

    def run(self, idle_stop_s: float | None = None, max_seconds: float | None = None) -> None:
        """Consume until stopped (or idle for `idle_stop_s`, or after `max_seconds`)."""
        self.open()
        started = last_data = time.monotonic()
        try:
            while not self.stopping:
                if self.poll_once() or not self.consumer.assignment():
                    last_data = time.monotonic()  # idle only counts once partitions are ours
                now = time.monotonic()
                if idle_stop_s is not None and now - last_data >= idle_stop_s:
                    break
                if max_seconds is not None and now - started >= max_seconds:
                    break
        finally:
            self.close()

    @staticmethod
    def _usable(msg: Any) -> bool:
        if msg.error() is None:
            return True
        log.warning("consumer error: %s", msg.error())
        return False

    # -- one batch ---------------------------------------------------------------------
    def process(self, msgs: list[Any]) -> int:
        """Process a batch end to end; returns how many new messages it handled."""
        fresh = [m for m in msgs if m.offset() > self.states.get(m.partition(), {"hwm": -1})["hwm"]]
        self.metrics.skipped.inc(len(msgs) - len(fresh))
        if not fresh:
            return 0
        self.metrics.consumed.inc(len(fresh))
        valid = self._validate(fresh)
        rows, alerts = self._score(valid)
        self._publish(rows, alerts)
        self._persist(fresh, rows, alerts)
        self._commit(fresh)
        self._observe(rows, alerts)
        return len(fresh)

    def _validate(self, msgs: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        valid = []
        for msg in msgs:
            raw = msg.value() or b""
            try:
                if len(raw) > self.s.max_message_bytes:
                    raise _Oversized(len(raw), self.s.max_message_bytes)
                reading = parse_reading(raw)
            except _Oversized as exc:
                self._dead_letter(msg, "oversized", "<message>", str(exc))
            except ReadingValidationError as exc:
                first = exc.errors[0]
                self._dead_letter(msg, dlq_reason(exc), first.field, str(exc))
            else:
                record = from_json(raw)  # valid JSON object: pydantic just said so
                record["ts"] = reading.ts.isoformat()  # type: ignore[attr-defined]
                valid.append((msg, record))
        return valid

    def _dead_letter(self, msg: Any, reason: str, field: str, error: str) -> None:
        headers = [
            ("reason", reason.encode()),
            ("field", field.encode()),
            ("error", error[:4000].encode()),
            ("source_topic", msg.topic().encode()),
            ("source_partition", str(msg.partition()).encode()),
            ("source_offset", str(msg.offset()).encode()),
        ]
        self.producer.produce(self.s.dlq_topic, value=msg.value(), key=msg.key(), headers=headers)
        self.metrics.dlq.labels(reason).inc()
        log.warning("DLQ %s p%d@%d: %s", reason, msg.partition(), msg.offset(), error[:300])

    def _score(self, valid: list[tuple[Any, dict[str, Any]]]) -> tuple[list[dict], list[dict]]:
        if not valid:
            return [], []
        started = time.perf_counter()
        scores = self.scorer.score([rec for _, rec in valid])
        self.metrics.scoring_latency.observe(time.perf_counter() - started)
        self.metrics.fallback.set(1 if scores.scored_by == "local" else 0)
        rows, alerts = [], []
        for (msg, rec), p, fire in zip(valid, scores.probability, scores.is_fire, strict=True):
            state = self._sensor(msg.partition(), rec["sensor_id"])
            z = state.zscores(rec, self.cfg)
            top = max(z.items(), key=lambda kv: abs(kv[1]), default=("", 0.0))
            row = self._row(msg, rec, float(p), bool(fire), scores, top)
            event = state.step(rec["sensor_id"], rec["ts"], float(p), bool(fire), self.cfg)
            if event is not None:
                event.update(
                    partition=msg.partition(),
                    offset=msg.offset(),
                    model_version=scores.model_version,
                )
                alerts.append(event)
            rows.append(row)
        return rows, alerts

    def _sensor(self, partition: int, sensor: str) -> SensorState:
        sensors = self.states.setdefault(partition, {"hwm": -1, "sensors": {}})["sensors"]
        state = sensors.get(sensor)
        if not isinstance(state, SensorState):
            state = SensorState.from_dict(state) if state else SensorState()
            sensors[sensor] = state
        return state

    def _row(self, msg: Any, rec: dict, p: float, fire: bool, scores: Any, top: tuple) -> dict:
        return {
            "sensor_id": rec["sensor_id"],
            "ts": rec["ts"],
            "session_id": rec.get("session_id"),
            "scenario": rec.get("scenario"),
            "fire_alarm": rec.get("fire_alarm"),
            "probability": p,
            "is_fire": fire,
            "model_version": scores.model_version,
            "scored_by": scores.scored_by,
            "anomaly": abs(top[1]) >= self.cfg.zscore_threshold,
            "anomaly_channel": top[0] if abs(top[1]) >= self.cfg.zscore_threshold else None,
            "max_abs_z": abs(float(top[1])),
            "partition": msg.partition(),
            "offset": msg.offset(),
            # Every measurement, so reports and drift see what the model saw.
            **{k: rec[k] for k in MEASUREMENTS},
        }

    def _publish(self, rows: list[dict], alerts: list[dict]) -> None:
        now = _now_iso()
        for row in rows:
            row["processed_at"] = now
            self.producer.produce(
                self.s.predictions_topic,
                key=row["sensor_id"].encode(),
                value=to_json(row, fallback=str),
            )
        for event in alerts:
            event["emitted_at"] = now
            self.producer.produce(
                self.s.alerts_topic,
                key=str(event["alert_id"]).encode(),
                value=to_json(event, fallback=str),
            )
        remaining = self.producer.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} output messages not delivered; not committing")

    def _persist(self, msgs: list[Any], rows: list[dict], alerts: list[dict]) -> None:
        by_partition: dict[int, list[int]] = defaultdict(list)
        for m in msgs:
            by_partition[m.partition()].append(m.offset())
        for partition, offsets in by_partition.items():
            state = self.states.setdefault(partition, {"hwm": -1, "sensors": {}})
            state["hwm"] = max(offsets)
            frames = {
                "predictions": pd.DataFrame([r for r in rows if r["partition"] == partition]),
                "alerts": pd.DataFrame([a for a in alerts if a["partition"] == partition]),
            }
            snapshot = {
                "hwm": state["hwm"],
                "sensors": {
                    k: (v.to_dict() if isinstance(v, SensorState) else v)
                    for k, v in state["sensors"].items()
                },
            }
            self.sink.write(partition, min(offsets), max(offsets), frames, snapshot)

    def _commit(self, msgs: list[Any]) -> None:
        from confluent_kafka import TopicPartition

        last: dict[int, int] = {}
        for m in msgs:
            last[m.partition()] = max(last.get(m.partition(), -1), m.offset())
        self.consumer.commit(
            offsets=[TopicPartition(self.s.topic, p, o + 1) for p, o in last.items()],
            asynchronous=False,
        )

    def _observe(self, rows: list[dict], alerts: list[dict]) -> None:
        now = time.time()
        if rows:  # one batch is scored by one scorer
            self.metrics.scored.labels(rows[0]["scored_by"]).inc(len(rows))
            self.metrics.anomalies.inc(sum(1 for row in rows if row["anomaly"]))
        for row in rows:
            self.metrics.e2e_latency.observe(max(0.0, now - _epoch(row["ts"])))
        for event in alerts:
            self.metrics.alerts.labels(event["event"], event["severity"]).inc()
            log.warning(
                "ALERT %s %s %s p=%.3f",
                event["event"],
                event["severity"],
                event["alert_id"],
                event["probability"],
            )
            if event["event"] == "open":  # durable and committed by now: tell people
                self.notifier.notify(
                    f"Smoke alert ({event['severity']}) on {event['sensor_id']}",
                    f"fire probability {event['probability']:.2f} since {event['ts']}",
                    level=event["severity"],
                    background=True,
                    alert_id=event["alert_id"],
                )


def topic_id(settings: StreamSettings, timeout: float = 10.0) -> str | None:
    """The topic's Kafka id (KIP-516), or None where the broker does not report one."""
    from confluent_kafka import KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka())  # type: ignore[arg-type]  # logger is allowed
    try:
        [future] = admin.describe_topics(
            TopicCollection([settings.topic]), request_timeout=timeout
        ).values()
        found = future.result()
    except KafkaException as exc:
        log.warning("topic id of %s unknown (%s): offsets trusted as they are", settings.topic, exc)
        return None
    return str(found.topic_id) if found.topic_id is not None else None


class _Oversized(ValueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the {limit}-byte limit")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()
