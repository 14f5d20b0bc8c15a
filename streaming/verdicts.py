"""Operators' verdicts on Kafka: the compacted topic `smoke_alert_verdicts`, keyed by alert
(or trouble) id, one event per change, each carrying the whole lifecycle
(`smoke_platform.core.verdicts`). Every process that reads the alerts, trouble and verdicts
topics sees the same state, and it survives restarts."""

from __future__ import annotations

import json
from typing import Any

from smoke_platform.core.verdicts import Lifecycle, fold, raised
from streaming.admin import create_topics, read_topic
from streaming.config import StreamSettings


def ensure_topic(settings: StreamSettings, timeout: float = 30.0) -> None:
    """The verdicts topic, compacted (the last event per alert id is its state)."""
    create_topics(
        settings.kafka_bootstrap,
        {settings.verdicts_topic: 1},
        config={"cleanup.policy": "compact"},
        timeout=timeout,
    )


def lifecycles(settings: StreamSettings, timeout: float = 30.0) -> dict[str, Lifecycle]:
    """Every raised alert and trouble signal with what operators said of it (a broker that
    does not answer within `timeout` seconds is an error)."""
    ensure_topic(settings, timeout)

    def values(topic: str) -> list[dict[str, Any]]:
        out = []
        for message in read_topic(settings.kafka_bootstrap, topic):
            try:
                value = json.loads(message.value())
            except (TypeError, ValueError):  # not JSON (a stray producer): passed over
                continue
            if isinstance(value, dict):
                out.append(value)
        return out

    known = raised(values(settings.alerts_topic), values(settings.trouble_topic))
    return fold(known, values(settings.verdicts_topic))


def publish(settings: StreamSettings, rec: Lifecycle, timeout: float = 30.0) -> None:
    """One verdict event, delivered (acks=all, idempotent) or an error saying why."""
    from confluent_kafka import Producer

    producer = Producer(settings.kafka(**{"enable.idempotence": True}))
    failed: list[str] = []
    producer.produce(
        settings.verdicts_topic,
        key=rec.alert_id.encode(),
        value=json.dumps(rec.as_event()).encode(),
        on_delivery=lambda err, _msg: failed.append(str(err)) if err else None,
    )
    if producer.flush(timeout) or failed:
        raise RuntimeError(
            f"the verdict was not delivered to {settings.verdicts_topic} on "
            f"{settings.kafka_bootstrap} (SMOKE_KAFKA_BOOTSTRAP): {failed or 'timed out'}"
        )
