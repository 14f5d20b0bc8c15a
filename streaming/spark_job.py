"""Spark Structured Streaming: event-time windows per sensor over `smoke_sensor_data`.

5-minute windows sliding every minute, a watermark for late data, 25+ statistics per
window and a data-quality score; written to `data/windowed/date=.../batch-<id>.parquet`
in `foreachBatch` (one file per batch id, so a retried batch overwrites itself) with a
checkpoint so a restarted query resumes where it stopped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from smoke_platform.core.schema import FIELDS, LIMITS

STATS_CHANNELS = ("tvoc_ppb", "eco2_ppm", "pm2_5", "nc0_5", "temperature_c", "humidity_pct")
PERCENTILE_CHANNELS = ("tvoc_ppb", "pm2_5")
THRESHOLDS = {"tvoc_ppb": 1_000.0, "pm2_5": 35.0}  # share of readings above (alarm levels)
_SPARK_TYPES = {"float": "double", "int": "long", "str": "string", "datetime": "string"}


def reading_schema() -> str:
    """The JSON value's schema, from the one field table."""
    return ", ".join(f"{f.name} {_SPARK_TYPES[f.dtype]}" for f in FIELDS)


def spark_session(master: str | None = None, app: str = "smoke-windows") -> Any:
    from pyspark.sql import SparkSession

    from streaming.spark_source import KafkaDataSource

    # Spark's Python workers must use this interpreter (it has the source and pyarrow).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(master or os.environ.get("SMOKE_SPARK_MASTER", "local[2]"))
        .appName(app)
        .config(
            "spark.sql.shuffle.partitions", os.environ.get("SMOKE_SPARK_SHUFFLE_PARTITIONS", "2")
        )
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.dataSource.register(KafkaDataSource)
    return spark


def read_stream(spark: Any, bootstrap: str, topic: str, max_per_trigger: int = 0) -> Any:
    """The raw Kafka stream: `smoke_kafka` here, `kafka` where the JVM connector exists."""
    fmt = os.environ.get("SMOKE_SPARK_SOURCE", "smoke_kafka")
    reader = (
        spark.readStream.format(fmt)
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
    )
    if max_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_per_trigger))
    return reader.load()


def parse(raw: Any) -> Any:
    from pyspark.sql import functions as F

    parsed = raw.select(F.from_json(F.col("value").cast("string"), reading_schema()).alias("r"))
    return (
        parsed.select("r.*")
        .withColumn("ts", F.to_timestamp("ts"))
        .where(F.col("sensor_id").isNotNull() & F.col("ts").isNotNull())
    )


def window_aggregations() -> list[Any]:
    """The statistics per (sensor, window): 35 columns."""
    from pyspark.sql import functions as F

    aggs = [F.count("*").alias("readings")]
    for ch in STATS_CHANNELS:
        aggs += [
            F.avg(ch).alias(f"{ch}_mean"),
            F.min(ch).alias(f"{ch}_min"),
            F.max(ch).alias(f"{ch}_max"),
            F.stddev_samp(ch).alias(f"{ch}_std"),
        ]
    for ch in PERCENTILE_CHANNELS:
        aggs += [
            F.percentile(ch, 0.5).alias(f"{ch}_p50"),
            F.percentile(ch, 0.95).alias(f"{ch}_p95"),
        ]
    for ch, limit in THRESHOLDS.items():
        aggs.append(
            F.avg((F.col(ch) > limit).cast("double")).alias(f"{ch}_over_{int(limit)}_share")
        )
    for ch in ("temperature_c", "tvoc_ppb"):  # rate of change across the window, per second
        first, last = F.min_by(ch, "ts"), F.max_by(ch, "ts")
        span = F.max("ts").cast("double") - F.min("ts").cast("double")
        aggs.append(F.when(span > 0, (last - first) / span).alias(f"{ch}_rate_per_s"))
    return aggs + _quality_aggregations()


def _quality_aggregations() -> list[Any]:
    from functools import reduce
    from operator import add

    from pyspark.sql import functions as F

    measured = [f.name for f in FIELDS if f.measurement]
    missing = reduce(add, [F.col(c).isNull().cast("int") for c in measured])
    bad = reduce(
        add,
        [
            (~F.col(c).between(F.lit(LIMITS[c][0]), F.lit(LIMITS[c][1]))).cast("int")
            for c in measured
        ],
    )
    n = F.count("*") * len(measured)
    return [
        (F.sum(missing) / n).alias("missing_share"),
        (F.coalesce(F.sum(bad), F.lit(0)) / n).alias("out_of_range_share"),
        # A stuck channel shows no variation at all over five minutes of 1 Hz readings.
        (
            F.when(F.count("*") >= 10, (F.stddev_samp("raw_h2") == 0).cast("double")).otherwise(0.0)
        ).alias("stuck_share"),
    ]


def windowed(readings: Any, watermark: str = "2 minutes") -> Any:
    from pyspark.sql import functions as F

    out = (
        readings.withWatermark("ts", watermark)
        .groupBy(F.window("ts", "5 minutes", "1 minute"), "sensor_id")
        .agg(*window_aggregations())
    )
    quality = 1 - (F.col("missing_share") + F.col("out_of_range_share") + F.col("stuck_share"))
    return (
        out.withColumn("window_start", F.col("window.start"))
        .withColumn("window_end", F.col("window.end"))
        .drop("window")
        .withColumn("quality_score", F.greatest(F.lit(0.0), quality))
    )


def batch_writer(out_dir: str | Path) -> Any:
    """foreachBatch sink: one Parquet file per batch id and date, overwritten on retry."""
    root = Path(out_dir)

    def write(batch: Any, batch_id: int) -> None:
        frame = batch.toPandas()
        if frame.empty:
            return
        frame["batch_id"] = batch_id
        for date, part in frame.groupby(frame["window_start"].dt.strftime("%Y-%m-%d")):
            path = root / f"date={date}" / f"batch-{batch_id:08d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            part.to_parquet(tmp, index=False)
            os.replace(tmp, path)

    return write


def start_query(
    spark: Any,
    bootstrap: str,
    topic: str,
    out_dir: str,
    checkpoint: str,
    available_now: bool = False,
    max_per_trigger: int = 0,
    watermark: str = "2 minutes",
) -> Any:
    frame = windowed(parse(read_stream(spark, bootstrap, topic, max_per_trigger)), watermark)
    writer = (
        frame.writeStream.outputMode("append")
        .foreachBatch(batch_writer(out_dir))
        .option("checkpointLocation", checkpoint)
    )
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime="5 seconds")
    )
    return writer.start()
