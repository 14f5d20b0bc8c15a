"""Settings for the producer and the stream worker: one frozen object, from SMOKE_* env vars."""

from __future__ import annotations

import logging

from pydantic_settings import BaseSettings, SettingsConfigDict

KAFKA_LOG = logging.getLogger("smoke.kafka")


class StreamSettings(BaseSettings):
    """Every knob of the streaming side (README "Configuration" lists the variables)."""

    model_config = SettingsConfigDict(env_prefix="SMOKE_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic: str = "smoke_sensor_data"
    dlq_topic: str = "smoke_sensor_data.dlq"
    predictions_topic: str = "smoke_predictions"
    alerts_topic: str = "smoke_alerts"
    group_id: str = "smoke-stream-worker"
    session_timeout_ms: int = 10_000
    # This worker instance's name, stable across its restarts: with the group id it forms
    # the transactional id, so a restarted instance fences its zombie. Empty = host name
    # (one worker per host or container); `smoke up` names its workers worker-0, -1, ...
    worker_id: str = ""
    transaction_timeout_ms: int = 30_000

    service_url: str = "http://127.0.0.1:3001"
    api_key: str = ""
    request_timeout_s: float = 5.0  # a probe of a service the circuit took out of use
    # Per batch: a service answer later than this and the batch is scored locally (and the
    # circuit opens; a background probe closes it again). Well under the 1 s goal.
    scoring_deadline_s: float = 0.5
    breaker_failures: int = 3
    breaker_reset_s: float = 5.0

    batch_size: int = 5_000  # at most, per transaction; fewer when fewer are waiting
    poll_timeout_s: float = 0.5
    max_message_bytes: int = 65_536
    stream_dir: str = "data/processed_stream"
    windowed_dir: str = "data/windowed"
    spark_checkpoint_dir: str = "data/checkpoints/windows"
    webhook_url: str = ""  # alert notifications (Slack-compatible JSON); empty = log only

    alert_consecutive: int = 3
    alert_critical_probability: float = 0.98
    alert_close_after: int = 30
    zscore_threshold: float = 4.0
    rolling_window: int = 120

    # Jars resolved from Maven Central by `make setup` (relative to the checkout).
    kafka_jars_dir: str = ".jars/kafka"
    spark_kafka_jars_dir: str = ".jars/spark-kafka"

    # The Spark window job (`smoke spark`; the README lists what each is for).
    spark_master: str = "local[2]"
    spark_shuffle_partitions: int = 2  # the default 200 is 5x slower here
    spark_driver_host: str = "127.0.0.1"
    spark_bind_address: str = "127.0.0.1"
    spark_log_level: str = "WARN"  # Spark's own driver log (ERROR: only errors)

    worker_metrics_port: int = 0  # 0 = no metrics HTTP server
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for Prometheus

    def instance_id(self) -> str:
        import socket

        return self.worker_id or socket.gethostname()

    def kafka(self, **extra: object) -> dict[str, object]:
        """librdkafka config shared by producers and consumers (its logs go to Python
        logging, not straight to stderr)."""
        return {
            "bootstrap.servers": self.kafka_bootstrap,
            "client.id": "smoke-platform",
            "logger": KAFKA_LOG,
            **extra,
        }
