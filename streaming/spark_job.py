"""Spark Structured Streaming: event-time windows per sensor over `smoke_sensor_data`.

5-minute windows sliding every minute, a watermark for late data, 25+ statistics per
window and a data-quality score; appended in `foreachBatch` to the Delta Lake table
`data/windowed` (partitioned by `date`) with Delta's Spark connector and its idempotent
writes (`txnAppId` = the query's checkpoint, `txnVersion` = the batch id: a batch retried
after a restart is skipped, never doubled), with a checkpoint so a restarted query resumes
where it stopped.

Over 400 lines: it is one query (source, parse, rises, scoring, the window's statistics,
quality and silence, the sink and its alerts) whose parts share the column names and the
session; split, a reader would chase one query across files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smoke_platform.core.schema import FIELDS, LIMITS
from smoke_platform.core.settings import TroubleSettings, default
from smoke_platform.core.trouble import SILENT_INTERVALS

DEFAULT_SILENT_AFTER_S: float = default(TroubleSettings, "silent_after_s")

STATS_CHANNELS = ("tvoc_ppb", "eco2_ppm", "pm2_5", "nc0_5", "temperature_c", "humidity_pct")
PERCENTILE_CHANNELS = ("tvoc_ppb", "pm2_5")
THRESHOLDS = {"tvoc_ppb": 1_000.0, "pm2_5": 35.0}  # share of readings above (alarm levels)
_SPARK_TYPES = {"float": "double", "int": "long", "str": "string", "datetime": "string"}


def reading_schema() -> str:
    """The JSON value's schema, from the one field table."""
    return ", ".join(f"{f.name} {_SPARK_TYPES[f.dtype]}" for f in FIELDS)


def connector_jars(settings: Any = None) -> list[str]:
    """Spark's Kafka connector and Delta Lake's Spark connector with their dependencies
    (`make setup` resolves them from Maven Central into `.jars/`); handed to Spark with
    `spark.jars`, so nothing is downloaded at run time and a standalone cluster's
    executors get them too."""
    from streaming.config import StreamSettings

    s = settings or StreamSettings()
    jars = []
    for setting, folder_name, marker, pom in (
        ("SMOKE_SPARK_KAFKA_JARS_DIR", s.spark_kafka_jars_dir, "spark-sql-kafka", "spark-kafka"),
        ("SMOKE_SPARK_DELTA_JARS_DIR", s.spark_delta_jars_dir, "delta-spark", "spark-delta"),
    ):
        folder = Path(folder_name)
        if not folder.is_absolute():
            folder = Path(__file__).resolve().parents[1] / folder
        found = sorted(str(p) for p in folder.glob("*.jar"))
        if not any(marker in j for j in found):
            raise FileNotFoundError(
                f"{marker} is not in {folder}: run 'make setup' (it resolves "
                f"jvm/{pom}/pom.xml from Maven Central with mvn), or set {setting} to a "
                f"folder holding {marker} and its dependencies"
            )
        jars += found
    return jars


# PySpark's own state serializer (applyInPandasWithState) concatenates empty frames, which
# pandas 2 warns about on every batch: not ours to fix, so its Python workers do not print it.
_SPARK_PANDAS_WARNING = "ignore::FutureWarning:pyspark.sql.pandas.serializers"
_DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def spark_session(
    master: str | None = None, app: str = "smoke-windows", log_level: str | None = None
) -> Any:
    from pyspark.sql import SparkSession

    from streaming.config import StreamSettings

    s = StreamSettings()
    # Spark's Python workers must use this interpreter (it has the model code and pyarrow).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    logging = (
        f"-Dlog4j2.configurationFile={Path(__file__).with_name('log4j2-spark.properties')} "
        f"-Dsmoke.spark.log.level={(log_level or s.spark_log_level).lower()}"
    )
    spark = (
        SparkSession.builder.master(master or s.spark_master)
        .appName(app)
        .config("spark.jars", ",".join(connector_jars(s)))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        # Delta rebuilds a table's state in this many tasks (default 50: slow on 2 cores)
        .config("spark.databricks.delta.snapshotPartitions", str(s.spark_shuffle_partitions))
        .config("spark.driver.extraJavaOptions", logging)
        .config("spark.sql.shuffle.partitions", str(s.spark_shuffle_partitions))
        .config("spark.ui.enabled", "false")
        # Spark's default pattern plus the Kafka connection's secrets (JAAS, a PEM key):
        # redacted wherever Spark prints options (plans, logs, event logs).
        .config("spark.redaction.regex", r"(?i)secret|password|token|access[.]?key|jaas|\.key$")
        .config("spark.ui.showConsoleProgress", "false")  # no progress bars in logs
        # Local mode talks over loopback; against a cluster, the executors must reach the
        # driver: set SMOKE_SPARK_DRIVER_HOST to this host's name or address.
        .config("spark.driver.host", s.spark_driver_host)
        .config("spark.driver.bindAddress", s.spark_bind_address)
        .config("spark.sql.session.timeZone", "UTC")
        # Each task's Python worker scores with one OpenMP thread: the executor already runs
        # a task per core, and scikit-learn's per-call threads on every core only contend.
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        .config("spark.executorEnv.PYTHONWARNINGS", _SPARK_PANDAS_WARNING)
        .getOrCreate()
    )
    return spark


def kafka_options(kafka: str | Mapping[str, str]) -> dict[str, str]:
    """Spark's `kafka.` options from bootstrap servers (an unsecured broker) or from the
    connection's own options (`KafkaSettings.spark_kafka_options()`: its security too)."""
    return {"kafka.bootstrap.servers": kafka} if isinstance(kafka, str) else dict(kafka)


def read_stream(
    spark: Any, kafka: str | Mapping[str, str], topic: str, max_per_trigger: int = 0
) -> Any:
    """The raw Kafka stream through Spark's built-in source (offsets in the checkpoint;
    only committed records: the producer may write in transactions)."""
    reader = (
        spark.readStream.format("kafka")
        .options(**kafka_options(kafka))
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("kafka.isolation.level", "read_committed")
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


def with_rises(readings: Any) -> Any:
    """The `rise_*` columns from each sensor's last 30 s, kept in Spark's state store
    between micro-batches (`applyInPandasWithState`, one group per sensor), through the
    same `rises_in_batch` as the stream worker: a checkpointed query restarts with its
    sensors' history. Whatever a producer put in `rise_*` is replaced."""
    from pyspark.sql.streaming.state import GroupStateTimeout

    def rises(key: tuple[Any, ...], frames: Any, state: Any) -> Any:
        import pandas as pd

        from smoke_platform.core.features import decode_history, encode_history, frame_rises

        sensor = str(key[0])
        history = {sensor: decode_history(state.get[0])} if state.exists else {}
        frame, after = frame_rises(history, pd.concat(list(frames), ignore_index=True))
        state.update((encode_history(after[sensor]),))
        yield frame

    return readings.groupBy("sensor_id").applyInPandasWithState(
        rises, readings.schema, "history string", "append", GroupStateTimeout.NoTimeout
    )


_MODELS: dict[str, Any] = {}


def scorer(model_tag: str) -> Any:
    """mapInPandas function: the promoted model from the BentoML store, loaded once per
    Python worker, scoring through the one feature function (like the service)."""

    def score(frames: Any) -> Any:
        from smoke_platform.modelstore import load_model

        model = _MODELS.get(model_tag)
        if model is None:
            model = _MODELS[model_tag] = load_model(model_tag)
            model.single_threaded()
        for frame in frames:
            scored = model.score(frame)
            yield frame.assign(probability=scored["probability"], is_fire=scored["is_fire"])

    return score


def score(readings: Any, model_tag: str) -> Any:
    """Add `probability` and `is_fire` from the promoted model.

    Why locally and not through the service: it is the same artefact (the BentoML
    store's champion) and the same `build_features`, it scales with the Spark
    executors, and it keeps the service's capacity for the stream worker."""
    from pyspark.sql.types import BooleanType, DoubleType, StructField, StructType

    schema = StructType(
        [  # a new schema: StructType.add would mutate the input's
            *readings.schema.fields,
            StructField("probability", DoubleType()),
            StructField("is_fire", BooleanType()),
        ]
    )
    return readings.mapInPandas(scorer(model_tag), schema)


def window_aggregations(silent_after_s: float = DEFAULT_SILENT_AFTER_S) -> list[Any]:
    """The statistics per (sensor, window): 42 columns."""
    from pyspark.sql import functions as F

    aggs = [
        F.count("*").alias("readings"),
        F.avg(F.col("is_fire").cast("double")).alias("fire_share"),
        F.max("probability").alias("max_probability"),
    ]
    for ch in STATS_CHANNELS:
        aggs += [
            F.avg(ch).alias(f"{ch}_mean"),
            F.min(ch).alias(f"{ch}_min"),
            F.max(ch).alias(f"{ch}_max"),
            F.stddev_samp(ch).alias(f"{ch}_std"),
        ]
    # Exact p50/p95 from the window's sorted readings: the inverted-CDF reading (always an
    # actual value, no interpolation), what `percentile_approx` gives below its accuracy.
    # Measured with `make bench-spark`'s query: batches 15-20 % faster than with
    # `percentile_approx` (whose per-window state was ~5x larger), which was itself ~40 %
    # faster than the exact `percentile`.
    # The cost: a window's state grows with its readings (8 bytes per reading and channel;
    # 300 per window at 1 Hz), where `percentile_approx` compresses; the watermark drops
    # each window 7 minutes after its start, which bounds it.
    for ch in PERCENTILE_CHANNELS:
        ordered = F.sort_array(F.collect_list(ch))  # one list per channel for both
        aggs += [_quantile(ordered, q).alias(f"{ch}_p{round(q * 100)}") for q in (0.5, 0.95)]
    for ch, limit in THRESHOLDS.items():
        aggs.append(
            F.avg((F.col(ch) > limit).cast("double")).alias(f"{ch}_over_{int(limit)}_share")
        )
    for ch in ("temperature_c", "tvoc_ppb"):  # rate of change across the window, per second
        first, last = F.min_by(ch, "ts"), F.max_by(ch, "ts")
        span = F.max("ts").cast("double") - F.min("ts").cast("double")
        aggs.append(F.when(span > 0, (last - first) / span).alias(f"{ch}_rate_per_s"))
    return aggs + _quality_aggregations() + _silence_aggregations(silent_after_s)


def _silence_aggregations(silent_after_s: float) -> list[Any]:
    """The `silent` trouble rule where a window can judge it (`core.trouble`): the longest
    gap between the sensor's readings in the window, and whether it exceeds
    max(`silent_after_s`, 10 x the window's median interval). (`stuck` does not fit: its
    run of 600 readings is longer than a window.)"""
    from pyspark.sql import functions as F

    t = F.sort_array(F.collect_list(F.col("ts").cast("double")))
    n = F.size(t)
    gaps = F.sort_array(
        F.zip_with(
            F.slice(t, 2, n - 1), F.slice(t, 1, n - 1), lambda later, earlier: later - earlier
        )
    )
    g = F.size(gaps)
    half = (g / 2).cast("int")
    median = (
        F.when(g == 0, F.lit(0.0))
        .when(g % 2 == 1, F.element_at(gaps, half + 1))
        .otherwise(
            (F.element_at(gaps, F.greatest(half, F.lit(1))) + F.element_at(gaps, half + 1)) / 2
        )
    )
    longest = F.coalesce(F.array_max(gaps), F.lit(0.0))
    bound = F.greatest(F.lit(float(silent_after_s)), F.lit(SILENT_INTERVALS) * median)
    return [longest.alias("max_gap_s"), (longest > bound).alias("silent")]


def _quantile(ordered: Any, q: float) -> Any:
    """The q-quantile of a sorted array column: its ceil(q * n)-th value (null if empty)."""
    from pyspark.sql import functions as F

    n = F.size(ordered)
    rank = F.greatest(F.lit(1), F.ceil(n * F.lit(q))).cast("int")
    return F.when(n > 0, F.element_at(ordered, rank))


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


def windowed(
    readings: Any, watermark: str = "2 minutes", silent_after_s: float = DEFAULT_SILENT_AFTER_S
) -> Any:
    from pyspark.sql import functions as F

    out = (
        readings.withWatermark("ts", watermark)
        .groupBy(F.window("ts", "5 minutes", "1 minute"), "sensor_id")
        .agg(*window_aggregations(silent_after_s))
    )
    quality = 1 - (F.col("missing_share") + F.col("out_of_range_share") + F.col("stuck_share"))
    flags = {
        # A spike: the window's peak far above its own median (documented in docs/architecture.md).
        "tvoc_spike": F.col("tvoc_ppb_max") > 3 * (F.col("tvoc_ppb_p50") + 10),
        "pm_spike": F.col("pm2_5_max") > 3 * (F.col("pm2_5_p50") + 5),
        "temperature_rise": F.col("temperature_c_rate_per_s") > 0.01,  # > 0.6 °C per minute
        "low_quality": F.col("quality_score") < 0.9,
    }
    out = (
        out.withColumn("window_start", F.col("window.start"))
        .withColumn("window_end", F.col("window.end"))
        .drop("window")
        .withColumn("quality_score", F.greatest(F.lit(0.0), quality))
    )
    for name, cond in flags.items():
        out = out.withColumn(name, F.coalesce(cond, F.lit(False)))
    return out.withColumn("anomaly", F.greatest(*(F.col(n) for n in flags)))


ALERT_FIRE_SHARE = 0.5  # a window alerts when at least half its readings scored as fire


def window_alerts(frame: Any, profile: Any = None) -> list[dict[str, Any]]:
    """Alert events (the worker's record) for windows where the model saw a fire; their
    drivers compare the window's means with the model's clean-air `profile`."""
    from smoke_platform.core.explain import drivers
    from streaming.alerts import alert_record

    hot = frame[frame["fire_share"] >= ALERT_FIRE_SHARE]
    return [
        alert_record(
            alert_id=f"{r.sensor_id}@{r.window_start.isoformat()}/5min",
            event="open",
            sensor_id=r.sensor_id,
            severity="critical" if r.fire_share >= 0.8 else "warning",
            ts=r.window_end.isoformat(),
            opened_ts=r.window_start.isoformat(),
            probability=float(r.fire_share),
            max_probability=float(r.max_probability),
            readings_in_alert=int(r.readings),
            source="spark-window",
            drivers=drivers({ch: getattr(r, f"{ch}_mean") for ch in STATS_CHANNELS}, profile),
        )
        for r in hot.itertuples()
    ]


def window_app_id(checkpoint: str | Path) -> str:
    """The Delta application id the window query with this checkpoint writes as: its
    checkpoint's absolute path (a URI as it is), the same from any working directory."""
    text = str(checkpoint)
    return f"smoke-windows:{text if '://' in text else Path(text).resolve()}"


def batch_writer(
    out_dir: str | Path, app_id: str, alert_sink: Any = None, profile: Any = None
) -> Any:
    """foreachBatch sink: the batch appended to the Delta table `out_dir` (partition
    `date` of the window's start) as application transaction `app_id` at version =
    batch id, so a batch Spark runs again after a restart is skipped by Delta itself;
    window alerts to `alert_sink` (keyed by alert id, so a retried batch repeats ids)."""
    from pyspark.sql import functions as F

    root = str(out_dir)

    def write(batch: Any, batch_id: int) -> None:
        # Computed once, up front: the table and the alerts read the cached batch, and the
        # state store commits even when Delta skips a batch it already holds (Spark
        # validates that foreachBatch consumed every state partition).
        batch = batch.persist()
        batch.count()
        try:
            out = batch.withColumn("date", F.date_format("window_start", "yyyy-MM-dd"))
            (
                out.withColumn("batch_id", F.lit(batch_id).cast("long"))
                .write.format("delta")
                .mode("append")
                .option("txnAppId", app_id)
                .option("txnVersion", batch_id)
                .partitionBy("date")
                .save(root)
            )
            if alert_sink is not None:
                hot = batch.where(F.col("fire_share") >= ALERT_FIRE_SHARE).toPandas()
                if not hot.empty:
                    alert_sink(window_alerts(hot, profile), batch.sparkSession)
        finally:
            batch.unpersist()

    return write


def kafka_alert_sink(kafka: str | Mapping[str, str], topic: str) -> Any:
    """Publish window alerts to `smoke_alerts` with Spark's built-in Kafka sink (key =
    alert id, so a retried batch repeats ids rather than inventing new alerts)."""
    from streaming.sink import to_json  # the worker's alerts' JSON: NaN as null

    def send(alerts: list[dict[str, Any]], spark: Any) -> None:
        if not alerts:
            return
        rows = [(a["alert_id"], to_json(a).decode()) for a in alerts]
        (
            spark.createDataFrame(rows, "key string, value string")
            .write.format("kafka")
            .options(**kafka_options(kafka))
            .option("kafka.enable.idempotence", "true")
            .option("kafka.acks", "all")
            .option("topic", topic)
            .save()
        )

    return send


def start_query(
    spark: Any,
    kafka: str | Mapping[str, str],
    topic: str,
    out_dir: str,
    checkpoint: str,
    available_now: bool = False,
    max_per_trigger: int = 0,
    watermark: str = "2 minutes",
    model_tag: str | None = None,
    alerts_topic: str | None = None,
    silent_after_s: float = DEFAULT_SILENT_AFTER_S,
) -> Any:
    """Start the window query (AvailableNow, or a 5-second processing-time trigger);
    `kafka`: the bootstrap servers or the connection's Spark options."""
    from smoke_platform.modelstore import normal_profile, served_model_tag

    tag = model_tag or served_model_tag()
    readings = score(with_rises(parse(read_stream(spark, kafka, topic, max_per_trigger))), tag)
    sink = kafka_alert_sink(kafka, alerts_topic) if alerts_topic else None
    writer = (
        windowed(readings, watermark, silent_after_s)
        .writeStream.outputMode("append")
        .foreachBatch(
            batch_writer(
                out_dir,
                window_app_id(checkpoint),  # one query per checkpoint, across restarts
                sink,
                normal_profile(tag) if sink else None,
            )
        )
        .option("checkpointLocation", checkpoint)
    )
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime="5 seconds")
    )
    return writer.start()
