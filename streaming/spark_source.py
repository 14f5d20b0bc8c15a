"""A Spark 4 Python streaming data source for Kafka over confluent-kafka (`smoke_kafka`).

The JVM Kafka connector cannot be fetched here, so this source stands in for it with
the same options (`kafka.bootstrap.servers`, `subscribe`, `startingOffsets`,
`maxOffsetsPerTrigger`) and the same columns as Spark's built-in `kafka` source
(`key`, `value`, `topic`, `partition`, `offset`, `timestamp`, `timestampType`), so a
deployment with the connector on its classpath switches with `SMOKE_SPARK_SOURCE=kafka`.

The stream offset is `{partition: next offset}`. Some brokers (Tansu) report a high
watermark below the log end, so the end is found by reading past the watermark.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)

SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, "
    "timestamp timestamp, timestampType int"
)


@dataclass
class KafkaPartition(InputPartition):
    partition: int
    start: int
    end: int


def _consumer(bootstrap: str) -> Any:
    import logging

    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "smoke-spark-source",  # never committed: offsets live in Spark's checkpoint
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "logger": logging.getLogger("smoke.kafka"),
        }
    )


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def __init__(self, options: Mapping[str, str]) -> None:
        self.bootstrap = options["kafka.bootstrap.servers"]
        self.topic = options["subscribe"]
        self.starting = options.get("startingOffsets", "earliest")
        self.max_rows = int(options.get("maxOffsetsPerTrigger", "0") or 0)
        self.target: dict[str, int] | None = None

    def _partitions(self, consumer: Any) -> list[int]:
        meta = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        if meta.error is not None:
            raise RuntimeError(f"topic {self.topic}: {meta.error}")
        return sorted(meta.partitions)

    def _log_ends(self) -> dict[str, int]:
        """Next offset to be written, per partition (reads past a short watermark)."""
        from confluent_kafka import TopicPartition

        consumer = _consumer(self.bootstrap)
        try:
            ends = {}
            for p in self._partitions(consumer):
                _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
                consumer.assign([TopicPartition(self.topic, p, max(high, 0))])
                last = high - 1
                while msgs := consumer.consume(1_000, 0.3):
                    last = max([last, *(m.offset() for m in msgs if m.error() is None)])
                ends[str(p)] = last + 1
            return ends
        finally:
            consumer.close()

    def initialOffset(self) -> dict[str, int]:
        if self.starting == "latest":
            return self._log_ends()
        from confluent_kafka import TopicPartition

        consumer = _consumer(self.bootstrap)
        try:
            return {
                str(p): consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[0]
                for p in self._partitions(consumer)
            }
        finally:
            consumer.close()

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_rows) if self.max_rows else ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        self.target = self._log_ends()

    def latestOffset(self, start: dict[str, int], limit: ReadLimit) -> dict[str, int]:
        ends = dict(self.target or self._log_ends())
        for p in ends:  # partitions added since `start` begin at their earliest offset
            ends[p] = max(ends[p], start.get(p, 0))
        if isinstance(limit, ReadMaxRows):
            budget = limit.max_rows
            for p in sorted(ends, key=int):  # greedy by partition; every partition advances
                take = min(ends[p] - start.get(p, 0), max(budget, 0))
                ends[p] = start.get(p, 0) + take
                budget -= take
        return ends

    def partitions(self, start: dict[str, int], end: dict[str, int]) -> list[InputPartition]:
        return [
            KafkaPartition(int(p), start.get(p, 0), e)
            for p, e in sorted(end.items(), key=lambda kv: int(kv[0]))
            if e > start.get(p, 0)
        ]

    def read(self, partition: InputPartition) -> Iterator[Any]:
        """Stateless: consume [start, end) of one partition as Arrow record batches."""
        import datetime as dt

        import pyarrow as pa
        from confluent_kafka import TopicPartition

        assert isinstance(partition, KafkaPartition)
        consumer = _consumer(self.bootstrap)
        consumer.assign([TopicPartition(self.topic, partition.partition, partition.start)])
        cols: dict[str, list] = {
            k: []
            for k in ("key", "value", "topic", "partition", "offset", "timestamp", "timestampType")
        }
        try:
            nxt = partition.start
            while nxt < partition.end:
                for m in consumer.consume(min(5_000, partition.end - nxt), 10):
                    if m.error() is not None or m.offset() >= partition.end:
                        continue
                    ts_type, ts_ms = m.timestamp()
                    for k, v in (
                        ("key", m.key()),
                        ("value", m.value()),
                        ("topic", m.topic()),
                        ("partition", m.partition()),
                        ("offset", m.offset()),
                        ("timestamp", dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)),
                        ("timestampType", ts_type),
                    ):
                        cols[k].append(v)
                    nxt = m.offset() + 1
        finally:
            consumer.close()
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(cols["key"], pa.binary()),
                pa.array(cols["value"], pa.binary()),
                pa.array(cols["topic"], pa.string()),
                pa.array(cols["partition"], pa.int32()),
                pa.array(cols["offset"], pa.int64()),
                pa.array(cols["timestamp"], pa.timestamp("us", tz="UTC")),
                pa.array(cols["timestampType"], pa.int32()),
            ],
            names=list(cols),
        )

    def commit(self, end: dict[str, int]) -> None:
        """Nothing to do: Spark's checkpoint is the source of truth for offsets."""


class KafkaDataSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "smoke_kafka"

    def schema(self) -> str:
        return SCHEMA

    def streamReader(self, schema: Any) -> DataSourceStreamReader:
        return KafkaStreamReader(self.options)
