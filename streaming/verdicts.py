"""Operators' verdicts on Kafka: the compacted topic `smoke_alert_verdicts`, keyed by alert
(or trouble) id, one event per change, each carrying the whole lifecycle
(`smoke_platform.core.verdicts`). Every process that reads the alerts, trouble and verdicts
topics sees the same state, and it survives restarts."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

from smoke_platform.core.verdicts import Lifecycle, fold, on_alert, on_trouble, raised
from streaming.admin import create_topics, read_topic
from streaming.config import StreamSettings


def ensure_topic(settings: StreamSettings, timeout: float = 30.0) -> None:
    """The verdicts topic, compacted (the last event per alert id is its state)."""
    create_topics(
        settings.kafka(),
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
        for message in read_topic(settings.kafka(), topic):
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


class LifecycleView:
    """Every lifecycle, kept current by one background consumer of the alerts, trouble and
    verdicts topics (every partition from the beginning, `read_committed`), so a reader
    (the dashboard, polled by every open page) costs no broker round trip. Memory grows
    with the alerts and trouble signals the topics retain, one small record each."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.known: dict[str, Lifecycle] = {}
        self.verdicts: dict[str, dict[str, Any]] = {}  # the last event per alert id
        self.caught_up = threading.Event()  # the topics read to their ends at start
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lifecycles", daemon=True)

    def start(self) -> LifecycleView:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def snapshot(self, wait_s: float = 10.0) -> dict[str, Lifecycle]:
        """The lifecycles as read so far (waiting up to `wait_s` for the first catch-up,
        unless the broker already failed to answer)."""
        if self.error is None:
            self.caught_up.wait(wait_s)
        with self._lock:
            known = {k: dataclasses.replace(v) for k, v in self.known.items()}
            return fold(known, list(self.verdicts.values()))

    def note(self, rec: Lifecycle) -> None:
        """A verdict this process just published: read your own writes before the
        consumer brings it back."""
        with self._lock:
            self.verdicts[rec.alert_id] = rec.as_event()

    def _apply(self, topic: str, value: dict[str, Any]) -> None:
        with self._lock:
            if topic == self.settings.verdicts_topic:
                if isinstance(value.get("alert_id"), str):
                    self.verdicts[value["alert_id"]] = value
            elif topic == self.settings.alerts_topic:
                on_alert(self.known, value)
            else:
                on_trouble(self.known, value)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

        s = self.settings
        topics = (s.alerts_topic, s.trouble_topic, s.verdicts_topic)
        consumer = Consumer(
            s.kafka(
                **{
                    "group.id": "smoke-reader-lifecycles",  # required by the client; never joined
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                }
            )
        )
        try:
            ends: dict[tuple[str, int], int] = {}
            while not self._stop.is_set():  # until the topics exist and answer
                try:
                    ensure_topic(s, timeout=10)
                    parts = []
                    for topic in topics:
                        meta = consumer.list_topics(topic, timeout=5).topics[topic]
                        if meta.error is not None:
                            raise KafkaException(meta.error)
                        for p in meta.partitions:
                            tp = TopicPartition(topic, p)
                            low, high = consumer.get_watermark_offsets(tp, timeout=5)
                            if high > low:
                                ends[(topic, p)] = high
                            parts.append(TopicPartition(topic, p, OFFSET_BEGINNING))
                    consumer.assign(parts)
                    self.error = None
                    break
                except (KafkaException, RuntimeError) as exc:
                    self.error = f"{', '.join(topics)} on {s.kafka_bootstrap}: {exc}"
                    self._stop.wait(2)
            if not ends:
                self.caught_up.set()
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if ends:  # positions pass transaction markers, which are no messages
                    at = consumer.position([TopicPartition(t, p) for t, p in ends])
                    for tp in at:
                        if tp.offset >= ends[(tp.topic, tp.partition)]:
                            del ends[(tp.topic, tp.partition)]
                    if not ends:
                        self.caught_up.set()
                if msg is None or msg.error() is not None or msg.topic() is None:
                    continue
                try:
                    value = json.loads(msg.value() or b"")
                except (TypeError, ValueError):  # not JSON (a stray producer): passed over
                    continue
                if isinstance(value, dict):
                    self._apply(str(msg.topic()), value)
        finally:
            consumer.close()
