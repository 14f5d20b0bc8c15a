"""The `smoke` command: generate data, materialise the Dagster graph, run the demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="smoke-platform command line (--debug: show tracebacks)",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"max_content_width": 120},
)

# The simulator's scenarios (a literal list keeps `smoke --help` free of heavy imports;
# a test keeps it equal to the simulator's).
SCENARIO_NAMES = (
    "normal_indoor",
    "normal_outdoor",
    "wood_fire",
    "gas_fire",
    "outdoor_grill",
    "high_humidity",
    "cooking_steam",
    "dust",
    "smouldering",
)


def _scenarios(names: list[str]) -> list[str]:
    from smoke_platform.errors import UserError

    unknown = [n for n in names if n not in SCENARIO_NAMES]
    if unknown:
        raise UserError(
            f"--scenario {unknown[0]!r} is not a scenario; choose from {', '.join(SCENARIO_NAMES)}"
        )
    return list(names)


def parse_speed(speed: str) -> float | None:
    """'max' (None: no pacing), 'realtime' (1.0) or a positive speed-up factor."""
    if speed == "max":
        return None
    if speed == "realtime":
        return 1.0
    try:
        factor = float(speed)
    except ValueError:
        factor = 0.0
    if not factor > 0:
        from smoke_platform.errors import UserError

        raise UserError(
            f"--speed {speed!r} is not a speed: use max, realtime or a factor such as 30"
        )
    return factor


def require_broker(bootstrap: str, timeout: float = 10.0) -> None:
    """Fail at once, naming the setting, when no Kafka broker answers (instead of a minute
    of librdkafka's connection errors)."""
    from smoke_platform.errors import UserError
    from streaming.broker import answers_metadata

    if not answers_metadata(bootstrap, timeout=timeout):
        raise UserError(
            f"no Kafka broker answers at {bootstrap} (SMOKE_KAFKA_BOOTSTRAP) within "
            f"{timeout:g} s: start one with `smoke broker` or `make up`, or set "
            "SMOKE_KAFKA_BOOTSTRAP to your brokers"
        )


@app.command()
def generate(
    out: Path | None = typer.Option(
        None, help="CSV to write [default: data/generated/smoke_detection_iot.csv under SMOKE_HOME]"
    ),
    rows: int = typer.Option(60_000, min=1),
    seed: int = typer.Option(0),
    sensors: int = typer.Option(8, min=1),
    overwrite: bool = typer.Option(False, help="replace the CSV if it exists"),
) -> None:
    """Write generated readings as a Kaggle-format CSV (unnamed index column, bracketed headers)."""
    from smoke_platform.core.settings import under_home
    from smoke_platform.core.simulate import generate_kaggle

    out = out or under_home("data/generated/smoke_detection_iot.csv")
    if out.exists() and not overwrite:
        typer.echo(f"{out} exists: pass --overwrite to replace it, or --out another path", err=True)
        raise typer.Exit(2)

    frame = generate_kaggle(rows, seed, sensors)
    out.parent.mkdir(parents=True, exist_ok=True)
    kaggle = frame.drop(columns=["sensor_id", "session_id", "scenario"])
    kaggle.index.name = None
    kaggle.to_csv(out)
    typer.echo(f"wrote {len(frame)} rows, {frame['session_id'].nunique()} sessions to {out}")


def selected_keys(definitions: object, selection: str) -> list:
    """Unpartitioned asset keys for `selection`; "*" leaves out monitoring, which needs
    stream output (the demo runs it after streaming). Partitioned assets run per
    partition (see `register_stream_days`)."""
    import dagster as dg

    graph = definitions.resolve_asset_graph()  # type: ignore[attr-defined]
    chosen = dg.AssetSelection.from_string(selection)
    if selection == "*":
        chosen = chosen - dg.AssetSelection.groups("monitoring")
    return sorted(k for k in chosen.resolve(graph) if not graph.get(k).is_partitioned)


# In-process runs keep their full event log in the instance (the UI shows it); the
# terminal gets the assets' own progress lines and warnings, not Dagster's DEBUG events.
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def materialize_all(selection: str = "*") -> tuple[bool, float, dict[str, str]]:
    """Run the asset graph in process against the configured instance (DAGSTER_HOME)."""
    import dagster as dg

    from smoke_platform.definitions import defs

    ensure_dagster_home()
    definitions = defs()
    keys = selected_keys(definitions, selection)
    job = definitions.resolve_implicit_global_asset_job_def()
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, asset_selection=keys, run_config=QUIET
        )
    elapsed = time.perf_counter() - started
    return result.success, elapsed, _report_paths(result)


def register_stream_days() -> list[str]:
    """Add a partition per day of stream output and materialise the stream assets that have
    files for it, as `stream_partition_sensor` does under the Dagster daemon."""
    import dagster as dg

    from smoke_platform.definitions import defs
    from smoke_platform.defs.common.resources import (
        SETTINGS_ENV,
        PlatformSettingsResource,
        from_env,
    )
    from smoke_platform.defs.monitoring.assets import days_by_source
    from smoke_platform.defs.monitoring.partitions import stream_dates

    ensure_dagster_home()
    settings = from_env(PlatformSettingsResource, SETTINGS_ENV, resolved=True)
    sources = days_by_source(settings)
    days = sorted({d for ds in sources.values() for d in ds})
    job = defs().resolve_job_def("stream_outputs_job")
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(stream_dates.name or "", days)
        for day in days:
            keys = [key for key, ds in sources.items() if day in ds]
            job.execute_in_process(
                instance=instance,
                partition_key=day,
                asset_selection=keys,
                raise_on_error=False,
                run_config=QUIET,
            )
    return days


def _report_paths(result: object) -> dict[str, str]:
    paths = {}
    for event in result.get_asset_materialization_events():  # type: ignore[attr-defined]
        mat = event.step_materialization_data.materialization
        meta = mat.metadata.get("report_path")
        if meta is not None:
            paths[mat.asset_key.to_user_string()] = str(meta.value)
    return paths


@app.command()
def materialize(select: str = typer.Option("*", help="Dagster asset selection")) -> None:
    """Materialise assets (with their blocking checks) in one process, recorded in DAGSTER_HOME."""
    ok, elapsed, reports = materialize_all(select)
    for asset, path in reports.items():
        typer.echo(f"report {asset}: {path}")
    typer.echo(f"materialisation {'succeeded' if ok else 'FAILED'} in {elapsed:.1f} s")
    raise typer.Exit(0 if ok else 1)


def champion_summary() -> list[str]:
    """The served model's honest (session-holdout) metrics, for people to read."""
    from smoke_platform.modelstore import model_info, served_model_tag

    info = model_info(served_model_tag())
    if info is None:
        return ["No promoted model in the BentoML store yet."]
    meta = info["metadata"]
    h = meta.get("holdout_metrics", {})
    return [
        f"Champion {info['tag']} ({meta.get('algorithm')}, trained {meta.get('trained_at')}):",
        f"  on held-out sessions: recall {h.get('recall', 0):.4f}, false-alarm rate "
        f"{h.get('false_alarm_rate', 0):.4f}, recall at FAR<=1% {h.get('recall_at_far', 0):.4f}",
        f"  precision {h.get('precision', 0):.4f}, F1 {h.get('f1', 0):.4f}, ROC-AUC "
        f"{h.get('roc_auc', 0):.4f}, PR-AUC {h.get('pr_auc', 0):.4f}",
        f"  detection latency: median {h.get('median_latency_s')} s, "
        f"p90 {h.get('p90_latency_s') or 0:.0f} s, missed fire sessions "
        f"{h.get('missed_fire_sessions')}",
        f"  (leaky random-row split accuracy: {meta.get('random_split_accuracy', 0):.4f},"
        " shown only for comparison)",
        *_real_summary(info["tag"]),
    ]


def _real_summary(tag: str) -> list[str]:
    """The champion on the real reference readings (the external validation set)."""
    from smoke_platform.defs.common.resources import (
        SETTINGS_ENV,
        PlatformSettingsResource,
        from_env,
    )
    from smoke_platform.modelstore import load_model
    from smoke_platform.reference import evaluate_on_reference, load_reference

    source = from_env(PlatformSettingsResource, SETTINGS_ENV, resolved=True).reference_csv
    f = evaluate_on_reference(load_model(tag), load_reference(source or None))
    normal = len(f["excerpts"]) - f["fire_excerpts"]
    return [
        f"  on {f['rows']:,} real readings (never trained on): recall {f['recall']:.4f}, "
        f"false-alarm rate {f['false_alarm_rate']:.4f}, ROC-AUC {f['roc_auc']:.4f}",
        f"  alerts on {f['normal_excerpts_alerted']} of {normal} normal excerpts and "
        f"{f['fire_excerpts_alerted']} of {f['fire_excerpts']} fire excerpts",
    ]


# Reports over the stream output (the drift sensor reads `feature_drift`).
MONITORING_REPORTS = "key:model_performance_report or key:feature_drift or key:weekly_insights"


@app.command()
def demo(
    stream: bool = typer.Option(True, help="also run the streaming part"),
    spark: bool = typer.Option(True, help="and the Spark window job over the stream"),
) -> None:
    """The end-to-end demo on embedded defaults: every asset, every check, every report.

    Everything it writes goes to a new folder of its own, data/demo/<time>/ (under
    SMOKE_HOME): nothing of an earlier run or of a deployment is read, replaced or deleted."""
    import os

    run = _demo_run_folder(typer.echo)
    ok, elapsed, reports = materialize_all("*")
    typer.echo("")
    typer.echo(f"Materialised the asset graph in {elapsed:.1f} s: {'OK' if ok else 'FAILED'}")
    for asset, path in reports.items():
        typer.echo(f"  {asset}: {path}")
    for line in champion_summary():
        typer.echo(line)
    if ok and stream:
        typer.echo("")
        typer.echo("Streaming: broker + service + producer + worker (+ Spark windows)")
        from smoke_platform.defs.common.resources import (
            SETTINGS_ENV,
            PlatformSettingsResource,
            from_env,
        )
        from streaming.demo import run_stream_demo

        settings = from_env(PlatformSettingsResource, SETTINGS_ENV, resolved=True)
        windowed = settings.windowed_root if spark else None

        def monitoring_reports(service_url: str) -> None:
            """While the demo's service still runs: its health is part of a report."""
            nonlocal ok
            os.environ["SMOKE_SERVICE_URL"] = service_url
            days = register_stream_days()
            typer.echo(f"registered stream output as Dagster asset partitions: {', '.join(days)}")
            ok, _, more = materialize_all(MONITORING_REPORTS)
            reports.update(more)
            for asset, path in more.items():
                typer.echo(f"  {asset}: {path}")

        run_stream_demo(
            "smoke_detector:latest",
            settings.stream_root,
            typer.echo,
            windowed_dir=windowed,
            logs=run / "logs",
            while_up=monitoring_reports,
        )
    typer.echo(f"Everything this run wrote is under {run}/")
    typer.echo("Serve it: `make serve` (bentoml serve smoke_detector:latest on 127.0.0.1:3001).")
    typer.echo(f"Open the Dagster UI on it: `SMOKE_HOME={run} make ui` (http://127.0.0.1:3000).")
    raise typer.Exit(0 if ok else 1)


# Path settings the demo always takes from its own run folder: pointed at a deployment's
# folders, a demo must never write into them.
DEMO_OWNED = (
    "SMOKE_DATA_DIR",
    "SMOKE_REPORTS_DIR",
    "SMOKE_STREAM_DIR",
    "SMOKE_WINDOWED_DIR",
    "SMOKE_SPARK_CHECKPOINT_DIR",
)


def _demo_run_folder(echo: Any) -> Path:
    """A new folder for this demo run, data/demo/<UTC time>[-n]/, made SMOKE_HOME of this
    process (and of the processes it starts), so every default path lands in it."""
    import os
    from datetime import UTC, datetime

    from smoke_platform.core.settings import under_home

    base = under_home("data") / "demo"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        run = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            run.mkdir()
            break
        except FileExistsError:
            continue
    for var in DEMO_OWNED:
        if os.environ.pop(var, None) is not None:
            echo(f"(the demo ignores {var}: it writes only under its own run folder)")
    os.environ["SMOKE_HOME"] = str(run.resolve())
    echo(f"This demo run writes under {run}/")
    return run.resolve()


@app.command()
def broker(
    port: int = typer.Option(9092, help="port on 127.0.0.1"),
    partitions: int = typer.Option(3, help="partitions of smoke_sensor_data"),
) -> None:
    """Run the embedded Apache Kafka broker (KRaft; data under data/kafka) until Ctrl-C."""
    import signal

    from smoke_platform.core.settings import under_home
    from streaming.broker import create_topics, platform_topics, start_broker
    from streaming.config import StreamSettings

    data = under_home("data")
    proc, bootstrap = start_broker(data / "logs" / "broker.log", port, data_dir=data / "kafka")
    create_topics(bootstrap, platform_topics(StreamSettings(kafka_bootstrap=bootstrap), partitions))
    typer.echo(f"broker on {bootstrap} (topics created); Ctrl-C to stop")
    stop = {"now": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    while not stop["now"] and proc.alive():
        time.sleep(0.5)
    proc.stop()


@app.command()
def produce(
    source: str = typer.Option("live", help="live (simulated sensors) or csv"),
    csv: Path | None = typer.Option(None, help="Kaggle-format CSV for --source csv"),
    sensors: int = typer.Option(8, min=1),
    scenario: list[str] = typer.Option(
        [], help=f"restrict live sessions to these scenarios ({', '.join(SCENARIO_NAMES)})"
    ),
    count: int | None = typer.Option(None, help="stop after this many readings"),
    speed: str = typer.Option("max", help="'max', 'realtime' (1 Hz timing) or a speed-up factor"),
    seed: int = typer.Option(0),
    stamp_now: bool = typer.Option(False, help="event time = send time (latency tests)"),
) -> None:
    """Stream readings into smoke_sensor_data (SMOKE_KAFKA_BOOTSTRAP)."""
    import signal
    import threading

    from streaming.config import StreamSettings
    from streaming.producer import csv_source, live_source
    from streaming.producer import produce as run_producer

    if source == "csv":
        if csv is None:
            raise typer.BadParameter("--csv is required with --source csv")
        records = csv_source(csv, sensors)
    elif source == "live":
        records = live_source(seed, sensors, _scenarios(scenario) or None)
    else:
        raise typer.BadParameter(f"--source must be 'live' or 'csv', not {source!r}")
    pace = parse_speed(speed)
    settings = StreamSettings()
    require_broker(settings.kafka_bootstrap)
    # `make down` / docker stop / Ctrl-C: stop between readings, flush what was sent, exit.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
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
    idle_stop: float | None = typer.Option(None, help="exit after this many idle seconds"),
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
        settings.kafka_bootstrap,
        settings.topic,
        str(out),
        str(checkpoint),
        available_now,
        max_per_trigger,
        alerts_topic=settings.alerts_topic,
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
    from streaming.broker import create_topics, platform_topics
    from streaming.config import StreamSettings

    settings = StreamSettings()
    require_broker(settings.kafka_bootstrap)
    wanted = platform_topics(settings, partitions)
    create_topics(settings.kafka_bootstrap, wanted)
    typer.echo(f"topics on {settings.kafka_bootstrap}: {', '.join(wanted)}")


@app.command()
def bootstrap() -> None:
    """Initial training: when no model is promoted yet, materialise the asset graph (recorded
    in DAGSTER_HOME); then make sure the champion has a bento to serve."""
    from smoke_platform.core.settings import under_home
    from smoke_platform.stack import ensure_champion

    bento, model = ensure_champion(
        under_home("data") / "logs" / "initial-training.log", echo=typer.echo
    )
    typer.echo(f"champion {model}, bento {bento}: ready to serve")


@app.command()
def up(
    broker_port: int = typer.Option(9092),
    service_port: int = typer.Option(3001),
    dagster_port: int = typer.Option(3000),
    dashboard_port: int = typer.Option(3002, help="the live dashboard page"),
    worker_metrics_port: int = typer.Option(9108, help="first worker's; the next get +1, +2"),
    workers: int = typer.Option(1, min=1, help="stream workers (one consumer group)"),
    partitions: int = typer.Option(3, min=1, help="partitions of smoke_sensor_data"),
    sensors: int = typer.Option(8, min=1, help="simulated sensors the producer streams"),
    scenario: list[str] = typer.Option(
        [], help=f"restrict the producer to these scenarios ({', '.join(SCENARIO_NAMES)})"
    ),
    speed: str = typer.Option("realtime", help="producer pace: realtime, a factor, or max"),
    count: int | None = typer.Option(None, help="producer stops after this many readings"),
    spark: bool = typer.Option(True, help="run the Spark window job"),
) -> None:
    """Start the whole stack as local processes (no Docker); `smoke down` stops it."""
    from smoke_platform.stack import StackConfig
    from smoke_platform.stack import up as stack_up

    parse_speed(speed)
    _scenarios(scenario)
    ensure_dagster_home()
    cfg = StackConfig(
        broker_port=broker_port,
        service_port=service_port,
        dagster_port=dagster_port,
        dashboard_port=dashboard_port,
        worker_metrics_port=worker_metrics_port,
        partitions=partitions,
        workers=workers,
        sensors=sensors,
        scenarios=list(scenario),
        speed=speed,
        count=count,
        spark=spark,
    )
    stack_up(cfg, typer.echo)
    typer.echo(f"stack up; logs and process ids in {cfg.state_dir}/; stop it with `make down`")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def supervise(
    ctx: typer.Context,
    name: str = typer.Option(..., help="name shown by `smoke status`"),
    status_file: Path = typer.Option(..., help="JSON file with the supervised process's state"),
    min_backoff: float = typer.Option(1.0, min=0.0, help="first restart delay, seconds"),
    max_backoff: float = typer.Option(60.0, min=0.0, help="longest restart delay, seconds"),
) -> None:
    """Run the command after `--`, restarting it with back-off when it crashes."""
    from smoke_platform.procs import Supervisor

    if not ctx.args:
        raise typer.BadParameter("give the command to supervise after --")
    code = Supervisor(name, ctx.args, status_file, min_backoff, max_backoff).run()
    raise typer.Exit(code)


@app.command()
def status() -> None:
    """The stack's processes: alive or not, and each supervised worker's restarts."""
    import json

    from smoke_platform.procs import group_alive
    from smoke_platform.stack import StackConfig, read_pids

    cfg = StackConfig()
    pids = read_pids(cfg)
    if not pids:
        typer.echo(f"no stack recorded in {cfg.state_dir}/ (start one with `make up`)")
        raise typer.Exit(1)
    for name, pgid in pids.items():
        line = f"{name:<12} {'up' if group_alive(pgid) else 'DOWN':<5} pgid {pgid}"
        status_file = cfg.state_dir / "status" / f"{name}.json"
        if status_file.exists():
            st = json.loads(status_file.read_text())
            line += f"  {st['state']}, restarts {st['restarts']}"
            if "last_exit" in st:
                line += f", last exit {st['last_exit']}"
            if "pid" in st:
                line += f", pid {st['pid']}"
        typer.echo(line)


@app.command()
def dashboard(
    port: int = typer.Option(3002, help="port of the page"),
    host: str = typer.Option("127.0.0.1", help="address to bind (0.0.0.0 in a container)"),
    worker_metrics: list[str] = typer.Option(
        [],
        help="a stream worker's metrics URL (repeat for each; default: "
        "http://127.0.0.1:<SMOKE_WORKER_METRICS_PORT or 9108>/metrics)",
    ),
) -> None:
    """A live page without Docker: predictions, alarms by sensor, lag, fallback, the model;
    fed by the workers' and the service's (SMOKE_SERVICE_URL) Prometheus endpoints."""
    import signal

    from smoke_platform.dashboard import RecentAlerts, serve
    from streaming.config import StreamSettings

    settings = StreamSettings()
    urls = worker_metrics or [f"http://127.0.0.1:{settings.worker_metrics_port or 9108}/metrics"]
    alerts = RecentAlerts(settings.kafka(), settings.alerts_topic).start()
    server = serve(port, urls, settings.service_url, host, alerts=alerts)
    typer.echo(
        f"dashboard on http://{host}:{port}/ (workers: {', '.join(urls)}; "
        f"alerts: {settings.alerts_topic} on {settings.kafka_bootstrap})"
    )
    stop = {"now": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(now=True))
    while not stop["now"]:
        time.sleep(0.5)
    server.shutdown()
    server.server_close()
    alerts.stop()


@app.command()
def down() -> None:
    """Stop the stack `smoke up` started (SIGTERM, then SIGKILL after 30 s)."""
    from smoke_platform.stack import StackConfig
    from smoke_platform.stack import down as stack_down

    killed = stack_down(StackConfig(), typer.echo)
    typer.echo("stack down" + (f"; had to kill: {', '.join(killed)}" if killed else ""))


@app.command()
def config(
    as_json: bool = typer.Option(False, "--json", help="one JSON object per setting"),
) -> None:
    """The effective settings, by section, with where each value comes from (secrets
    masked): what this shell's environment gives every smoke process it starts."""
    from smoke_platform.config import render, settings_tree

    tree = settings_tree()
    if not as_json:
        typer.echo(render(tree), nl=False)
        return
    import json

    for section in tree.values():
        for s in section:
            row = {"section": s.section, "variable": s.variable, "value": s.shown()}
            typer.echo(json.dumps({**row, "source": s.source}))


@app.command("backup")
def backup_command(
    out: Path = typer.Option(
        None, "--out", help="archive to write (default: backups/smoke-<UTC time>.tar.gz)"
    ),
) -> None:
    """One archive of the model store and bentos, the Dagster instance (SQLite), the
    assets, reports and stream outputs. Never overwrites a file."""
    import time

    from smoke_platform.backup import backup
    from smoke_platform.core.settings import under_home

    target = out or under_home("backups") / time.strftime(
        "smoke-%Y%m%dT%H%M%SZ.tar.gz", time.gmtime()
    )
    manifest = backup(target, echo=typer.echo)
    champion = manifest["champion"] or "none"
    typer.echo(f"backup written: {target} (champion {champion})")


@app.command("restore")
def restore_command(
    archive: Path = typer.Argument(..., help="a `smoke backup` archive"),
    replace: Path = typer.Option(
        None, "--replace", help="write over a root that holds data: name that root (SMOKE_HOME)"
    ),
) -> None:
    """Bring a backup back into empty folders (or, with --replace <root>, over them:
    files are added and overwritten, none deleted)."""
    from smoke_platform.backup import restore

    ensure_dagster_home()
    manifest = restore(archive, replace, echo=typer.echo)
    champion = manifest["champion"] or "none"
    typer.echo(f"restored {archive} (made {manifest['created']}, champion {champion})")


def _default_homes() -> None:
    """Outside `make` (which exports them), the Dagster instance and the BentoML store are
    the same folders under SMOKE_HOME: `.dagster_home/` (SQLite, telemetry off, made on
    first use) and `.bentoml/`. Set either variable to use another."""
    import os

    from smoke_platform.core.settings import ToolHomes, home

    root = home().resolve()
    os.environ.setdefault("BENTOML_HOME", str(root / ".bentoml"))
    if ToolHomes().dagster_home is None:
        os.environ["DAGSTER_HOME"] = str(root / ".dagster_home")
        DEFAULT_DAGSTER_HOME["made_here"] = True


DEFAULT_DAGSTER_HOME: dict[str, bool] = {"made_here": False}


def ensure_dagster_home() -> None:
    """The instance folder exists before Dagster opens it (the default one is made here)."""
    from smoke_platform.core.settings import ToolHomes

    folder = ToolHomes().dagster_home
    if folder is None:
        raise RuntimeError("DAGSTER_HOME is set by `smoke` before Dagster opens it")
    if DEFAULT_DAGSTER_HOME["made_here"] and not folder.exists():
        folder.mkdir(parents=True)
        (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def main() -> None:
    """`smoke`: a mistake ends in a line or two saying what was wrong and what to do; the
    traceback only with `--debug` (or SMOKE_DEBUG=1)."""
    import sys

    from smoke_platform.errors import explain

    _default_homes()
    from smoke_platform.core.settings import CliSettings

    try:
        debug = "--debug" in sys.argv or CliSettings().debug
    except ValueError:  # SMOKE_DEBUG=maybe: say so, with the traceback (the user asked)
        debug = True
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    import warnings

    # Dagster marks the APIs we rely on (data versions, asset selections) as beta: that is
    # for us to track, not for a user's terminal.
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    try:
        app()
    except Exception as exc:
        if debug:
            raise
        typer.echo(f"error: {explain(exc)}", err=True)
        typer.echo("(run again with --debug for the details)", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
