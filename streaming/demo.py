"""The streaming part of `make demo`: broker + service + producer + worker, then a summary."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import SecretStr

from smoke_platform.serving import bentoml_serve
from streaming.admin import create_topics, platform_topics
from streaming.config import StreamSettings
from streaming.embedded import start_broker
from streaming.producer import produce, scenario_records
from streaming.tables import read_outputs
from streaming.worker import StreamWorker

SCENARIOS = ("wood_fire", "cooking_steam", "gas_fire", "normal_indoor")


def latency_ms(outputs: pd.DataFrame, written_at: str = "processed_at") -> pd.Series:
    """Reading time -> output written, per row: predictions (`processed_at`) or alert
    events (`emitted_at`; `ts` is the reading that raised the event)."""
    written = pd.to_datetime(outputs[written_at], utc=True, format="ISO8601")
    read = pd.to_datetime(outputs["ts"], utc=True, format="ISO8601")
    return (written - read).dt.total_seconds() * 1000


def wait_for_assignment(worker: StreamWorker, timeout: float = 60.0) -> None:
    """Block until the worker owns partitions (the group join takes a few seconds)."""
    if not worker.assigned.wait(timeout):
        raise TimeoutError(f"stream worker got no partitions within {timeout:.0f} s")


def run_stream_demo(
    bento: str,
    stream_dir: Path,
    echo: Any = print,
    speed: float = 30.0,
    windowed_dir: Path | None = None,
    logs: Path | None = None,
    while_up: Any = None,
) -> dict:
    """Start everything on 127.0.0.1, stream one burst with a fire in it, stop everything.
    With `windowed_dir`, the Spark window job then processes the same topic (AvailableNow).

    The broker's data, the logs and the Spark checkpoint go to `logs` (default: beside
    `stream_dir`). Nothing is deleted: `smoke demo` gives every run folders of its own.
    `while_up(service_url)` runs last, before anything stops (the reports that read the
    service's health see it running)."""
    logs = logs or stream_dir.parent / "logs"
    _quiet_logs()
    broker, bootstrap = start_broker(logs / "broker.log")
    service = None
    try:
        echo(f"broker on {bootstrap}; starting `bentoml serve {bento}` ...")
        service, url = bentoml_serve(bento, logs / "service.log", env={"SMOKE_API_KEY": ""})
        settings = StreamSettings(
            kafka_bootstrap=bootstrap,
            service_url=url,
            api_key=SecretStr(""),
            stream_dir=str(stream_dir),
            session_timeout_ms=6000,
        )
        create_topics(bootstrap, platform_topics(settings))
        worker = StreamWorker(settings)
        thread = threading.Thread(target=worker.run, kwargs={"idle_stop_s": 5}, daemon=True)
        thread.start()
        wait_for_assignment(worker)
        records = scenario_records(SCENARIOS, seconds=300)
        names = ", ".join(SCENARIOS)
        echo(f"producing {len(records)} readings, one sensor each for {names}, at {speed:g}x ...")
        produce(records, settings, speed=speed, stamp_now=True, echo=echo)
        thread.join(300)
        summary = _summary(settings, echo)
        if windowed_dir is not None:
            summary["windows"] = _spark_windows(settings, windowed_dir, logs, echo)
        if while_up is not None:
            while_up(url)
        return summary
    finally:
        if service is not None:
            service.stop()
        broker.stop()


def _quiet_logs() -> None:
    """The demo prints its own summary (every alert once, below): the worker's and the
    notifier's per-event lines and librdkafka's transient retries stay out of it."""
    import logging

    for name in ("smoke.worker", "smoke.notify", "smoke.kafka", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _spark_windows(settings: StreamSettings, out: Path, logs: Path, echo: Any) -> int:
    """The Spark window job (AvailableNow: process what is there, then stop).

    The burst above spans seconds of event time (stamped at send), and a 5-minute window
    is only written once the 2-minute watermark passes its end, so Spark gets a
    10-minute replay of the same scenarios (event time from now, 1 Hz spacing, sent at
    full speed) on a topic of its own."""
    from streaming.spark_job import spark_session, start_query

    topic = f"{settings.topic}.replay"
    create_topics(settings.kafka_bootstrap, {topic: 1})
    replay = StreamSettings(kafka_bootstrap=settings.kafka_bootstrap, topic=topic)
    produce(scenario_records(SCENARIOS, seconds=600, seed=1), replay, echo=lambda *_: None)
    echo(f"Spark window job (AvailableNow) over a 10-minute replay of the scenarios ({topic}) ...")
    spark = spark_session(log_level="ERROR")
    try:
        query = start_query(
            spark,
            settings.kafka_bootstrap,
            topic,
            str(out),
            str(logs / "spark-checkpoint"),
            available_now=True,
            alerts_topic=settings.alerts_topic,
        )
        query.awaitTermination(600)
    finally:
        spark.stop()
    windows = read_outputs(out, "")
    fire = int((windows["fire_share"] >= 0.5).sum()) if len(windows) else 0
    echo(f"{len(windows)} five-minute windows under {out}/ ({fire} with a fire share >= 0.5)")
    return len(windows)


def _summary(settings: StreamSettings, echo: Any) -> dict:
    preds = read_outputs(settings.stream_dir, "predictions")
    alerts = read_outputs(settings.stream_dir, "alerts")
    lat = latency_ms(preds) if len(preds) else pd.Series(dtype=float)
    by = ", ".join(f"{k}: {v}" for k, v in preds["scored_by"].value_counts().items())
    echo(f"scored {len(preds)} readings ({by})")
    for _, a in alerts.sort_values("ts").iterrows() if len(alerts) else []:
        echo(
            f"  ALERT {a['event']:<8} {a['severity']:<8} {a['sensor_id']}  at {a['ts']}  "
            f"p={a['probability']:.3f}"
        )
        if a.get("reasons"):
            echo(f"           why (the model): {a['reasons']}")
        if a.get("drivers"):
            echo(f"           why: {a['drivers']}")
    if alerts.empty:
        echo("  no alerts")
    if len(lat):
        echo(
            f"end-to-end latency (reading time -> prediction written): p50 {lat.median():.0f} ms, "
            f"p99 {lat.quantile(0.99):.0f} ms"
        )
    from streaming.table_maintenance import tables_under

    names = ", ".join(tables_under(settings.stream_dir)) or "none"
    echo(f"stream outputs under {settings.stream_dir}/ (Delta tables: {names})")
    return {"predictions": len(preds), "alerts": alerts, "latency_ms": lat}
