"""Kafka producer, stream worker and Spark job, sharing `smoke_platform.core`."""
