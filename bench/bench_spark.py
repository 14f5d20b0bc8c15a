"""Spark windowed job throughput: 120k readings through the `smoke_kafka` source, windows,
model scoring and the Parquet sink, in micro-batches of 60k rows (maxOffsetsPerTrigger)."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from bench.common import report


def run() -> None:
    work = Path(tempfile.mkdtemp(prefix="smoke-bench-spark-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    from bench.bench_serving import _model_and_readings
    from streaming.broker import create_topics, start_broker
    from streaming.config import StreamSettings
    from streaming.producer import live_source, produce
    from streaming.spark_job import spark_session, start_query

    model, _ = _model_and_readings()
    broker, bootstrap = start_broker(work / "broker.log")
    spark = None
    try:
        create_topics(bootstrap, {"bench-spark": 3})
        settings = StreamSettings(kafka_bootstrap=bootstrap, topic="bench-spark")
        produce(
            live_source(seed=3, sensors=50, retime=True),
            settings,
            count=120_000,
            echo=lambda *_: None,
        )
        spark = spark_session("local[2]", app="smoke-bench")
        query = start_query(
            spark,
            bootstrap,
            "bench-spark",
            str(work / "win"),
            str(work / "ckpt"),
            available_now=True,
            max_per_trigger=60_000,
            model_tag=model.version,
        )
        query.awaitTermination(1_800)
        batches = [p for p in query.recentProgress if p["numInputRows"] > 0]
        steady = batches[1:] or batches  # the first batch pays for JIT and worker start-up
        rows = sum(p["numInputRows"] for p in steady)
        seconds = sum(p["durationMs"]["triggerExecution"] for p in steady) / 1000
        report(
            "spark",
            "rows_per_s",
            rows / seconds,
            "rows/s",
            f"{len(steady)} batches of <= 60k rows after warm-up; target >= 10,000",
        )
        durations = [p["durationMs"]["triggerExecution"] / 1000 for p in steady]
        report(
            "spark",
            "batch_seconds",
            statistics.median(durations),
            "s",
            "median micro-batch (source read -> windows -> Parquet)",
        )
    finally:
        if spark is not None:
            spark.stop()
        broker.stop()
