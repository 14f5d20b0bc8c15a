"""The streaming side's settings: `StreamSettings`, the union of the settings tree's Kafka,
worker, alert, Spark, service and notification sections (`smoke_platform.core.settings`)."""

from smoke_platform.core.settings import KAFKA_LOG, StreamSettings

__all__ = ["KAFKA_LOG", "StreamSettings"]
