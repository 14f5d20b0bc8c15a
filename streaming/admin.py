"""Kafka administration every deployment needs: whether a broker answers, the platform's
topics (created when missing), a topic's id, and reading a topic to its end (reports,
`smoke alerts`, tests). No broker is started here: `streaming.embedded` does that."""

from __future__ import annotations

import time
import uuid

from streaming.config import KAFKA_LOG, StreamSettings

log = KAFKA_LOG  # where librdkafka and these calls log


def answers_metadata(bootstrap: str, timeout: float = 2.0) -> bool:
    """Whether the broker answers a metadata request with itself registered."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "logger": KAFKA_LOG, "log_level": 0}  # type: ignore[dict-item]
    )
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(meta.brokers)


def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    timeout: float = 30.0,
    replication: int = -1,
    config: dict[str, str] | None = None,
) -> None:
    """Create topics with the given partition counts (existing ones are left alone).
    `replication` -1 takes the broker's `default.replication.factor`."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": KAFKA_LOG})  # type: ignore[dict-item]
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(t, num_partitions=n, replication_factor=replication, config=config or {})
        for t, n in topics.items()
        if t not in existing
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {topic}: {exc}") from exc


def platform_topics(settings: StreamSettings, partitions: int = 3) -> dict[str, int]:
    """The platform's topics and partition counts (DLQ, alerts and trouble signals: one
    partition, ordered)."""
    return {
        settings.topic: partitions,
        settings.dlq_topic: 1,
        settings.predictions_topic: partitions,
        settings.alerts_topic: 1,
        settings.trouble_topic: 1,
    }


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list:
    """Every committed message of a topic (`read_committed`), read up to the end of each
    partition as the broker reports it (the last stable offset)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "logger": KAFKA_LOG,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"cannot read topic {topic}: {meta.error}")
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list = []
        positions = dict.fromkeys(ends, -1)
        deadline = time.monotonic() + timeout
        while any(positions[p] + 1 < ends[p] for p in ends):
            if time.monotonic() > deadline:
                missing = {p: (positions[p] + 1, ends[p]) for p in ends}
                raise TimeoutError(f"{topic}: not read to the end in {timeout} s: {missing}")
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                out.append(msg)
                positions[int(msg.partition() or 0)] = int(msg.offset() or 0)
            # Transaction markers and aborted records take offsets too: past them the
            # consumer's position (not the last message) tells where it stands.
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= 0:
                    positions[tp.partition] = max(positions[tp.partition], tp.offset - 1)
    finally:
        consumer.close()
    return out


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
