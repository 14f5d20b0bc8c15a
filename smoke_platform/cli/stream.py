"""`smoke broker`, `produce`, `worker`, `spark`, `topics`: the streaming side."""

from __future__ import annotations

from pathlib import Path

import typer

from smoke_platform.cli.app import SCENARIO_NAMES, _scenarios, app, parse_speed, require_broker


@app.command()
def broker(
    port: int = typer.Option(9092, help="port on 127.0.0.1"),
    partitions: int = typer.Option(3, help="partitions of smoke_sensor_data"),
) -> None:
    """Run the embedded Apache Kafka broker (KRaft; data under data/kafka) until Ctrl-C."""
    from smoke_platform.core.settings import under_home
    from smoke_platform.procs import StopFlag
    from streaming.admin import create_topics, platform_topics
    from streaming.config import StreamSettings
    from streaming.embedded import start_broker

    data = under_home("data")
    proc, bootstrap = start_broker(data / "logs" / "broker.log", port, data_dir=data / "kafka")
    create_topics(bootstrap, platform_topics(StreamSettings(kafka_bootstrap=bootstrap), partitions))
    typer.echo(f"broker on {bootstrap} (topics created); Ctrl-C to stop")
    stop = StopFlag.on_signals()
    while not stop.wait(0.5) and proc.alive():
        pass
    proc.stop()


@app.command()
def produce(
    source: str = typer.Option("live", help="live (simulated sensors) or csv"),
    csv: Path | None = typer.Option(None, help="Kaggle-format CSV for --source csv"),
    sensors: int = typer.Option(8, min=1),
    scenario: list[str] = typer.Option(
        [], help=f"restrict live sessions to these scenarios ({', '.join(SCENARIO_NAMES)})"
    ),
    count: int | None = typer.Option(None, min=0, help="stop after this many readings"),
    speed: str = typer.Option("max", help="'max', 'realtime' (1 Hz timing) or a speed-up factor"),
    seed: int = typer.Option(0, min=0),
    stamp_now: bool = typer.Option(False, help="event time = send time (latency tests)"),
    sensor_prefix: str = typer.Option(
        "manual-",
        help="sensor ids are this prefix + a number; the default never collides with the "
        "simulated fleet of `smoke up` (sensor-NNN)",
    ),
) -> None:
    """Stream readings into smoke_sensor_data (SMOKE_KAFKA_BOOTSTRAP)."""
    import re

    from smoke_platform.core.schema import ID_ALLOWED, ID_PATTERN
    from smoke_platform.procs import StopFlag
    from streaming.config import StreamSettings
    from streaming.producer import csv_source, live_source, with_prefix
    from streaming.producer import produce as run_producer

    if not re.match(ID_PATTERN, f"{sensor_prefix}000"):
        raise typer.BadParameter(
            f"--sensor-prefix={sensor_prefix!r}: a sensor id is the prefix and 3 digits, "
            f"{ID_ALLOWED}"
        )
    if source == "csv":
        if csv is None:
            raise typer.BadParameter("--csv is required with --source csv")
        records = csv_source(csv, sensors)
    elif source == "live":
        records = live_source(seed, sensors, _scenarios(scenario) or None)
    else:
        raise typer.BadParameter(f"--source must be 'live' or 'csv', not {source!r}")
    records = with_prefix(records, sensor_prefix)
    pace = parse_speed(speed)
    settings = StreamSettings()
    require_broker(settings.kafka(), writes=[settings.topic])
    ids = [f"{sensor_prefix}{i:03d}" for i in range(sensors)]
    typer.echo(
        f"sensor ids: {', '.join(ids) if sensors <= 4 else f'{ids[0]} ... {ids[-1]}'} "
        f"({sensors}; --sensor-prefix {sensor_prefix})"
    )
    # `make down` / docker stop / Ctrl-C: stop between readings, flush what was sent, exit.
    stop = StopFlag.on_signals()
    stats = run_producer(
        records,
        settings,
        count=count,
        speed=pace,
        echo=typer.echo,
        stamp_now=stamp_now,
        stop=stop,
    )
    raise typer.Exit(0 if stats.failed == 0 else 1)


@app.command()
def worker(
    idle_stop: float | None = typer.Option(None, min=0.0, help="exit after this many idle seconds"),
) -> None:
    """Run a stream worker (one consumer-group member) until SIGTERM/SIGINT."""
    import logging

    from streaming.config import StreamSettings
    from streaming.worker import StreamWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per scoring request
    import faulthandler
    import signal

    # `kill -USR1 <pid>`: every thread's stack into the log (a stalled worker, diagnosed).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    w = StreamWorker(StreamSettings())
    w.install_signal_handlers()
    try:
        w.run(idle_stop_s=idle_stop)
    except BaseException:
        if not w.abandoned:
            raise
        logging.getLogger("streaming.worker").exception("worker failed")
        _leave_without_finalisers(1)
    if w.abandoned:
        _leave_without_finalisers(0)


def _leave_without_finalisers(code: int) -> None:
    """Exit now, skipping object finalisers: a producer abandoned under a transactional
    call that never returned (librdkafka #5456) may block its own destruction, and a
    worker that hangs on its way out is never restarted by its supervisor."""
    import logging
    import os
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command()
def spark(
    out: Path | None = typer.Option(None, help="windowed Parquet (default SMOKE_WINDOWED_DIR)"),
    checkpoint: Path | None = typer.Option(
        None, help="checkpoint folder (default SMOKE_SPARK_CHECKPOINT_DIR)"
    ),
    master: str | None = typer.Option(None, help="Spark master URL (default SMOKE_SPARK_MASTER)"),
    available_now: bool = typer.Option(False, help="process what is there, then stop"),
    max_per_trigger: int = typer.Option(0, help="maxOffsetsPerTrigger (0 = all available)"),
) -> None:
    """Run the Spark Structured Streaming window job over smoke_sensor_data."""
    import signal

    from smoke_platform.core.settings import under_home
    from streaming.config import StreamSettings
    from streaming.spark_job import spark_session, start_query

    settings = StreamSettings()
    out = out or under_home(settings.windowed_dir)
    checkpoint = checkpoint or under_home(settings.spark_checkpoint_dir)
    session = spark_session(master)
    query = start_query(
        session,
        settings.spark_kafka_options(),
        settings.topic,
        str(out),
        str(checkpoint),
        available_now,
        max_per_trigger,
        alerts_topic=settings.alerts_topic,
        silent_after_s=settings.silent_after_s,
    )
    typer.echo(f"window query {query.id} writing to {out} (checkpoint {checkpoint})")
    # SIGTERM as Ctrl-C: awaitTermination is interrupted, the query stops between batches
    # and its checkpoint resumes it (nothing is counted here, so an exception is safe).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        query.awaitTermination()
    except KeyboardInterrupt:
        query.stop()
    finally:
        session.stop()


@app.command()
def topics(
    partitions: int = typer.Option(3, min=1, help="partitions of each platform topic"),
) -> None:
    """Create the platform's topics on SMOKE_KAFKA_BOOTSTRAP (existing ones are kept)."""
    from streaming.admin import create_topics, platform_topics
    from streaming.config import StreamSettings

    settings = StreamSettings()
    require_broker(settings.kafka())
    wanted = platform_topics(settings, partitions)
    create_topics(settings.kafka(), wanted)
    typer.echo(f"topics on {settings.kafka_bootstrap}: {', '.join(wanted)}")
