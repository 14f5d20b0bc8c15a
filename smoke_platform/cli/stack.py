"""`smoke up`, `supervise`, `status`, `dashboard`, `down`: the stack as local processes."""

from __future__ import annotations

from pathlib import Path

import typer

from smoke_platform.cli.app import SCENARIO_NAMES, _scenarios, app, parse_speed
from smoke_platform.runs import (
    ensure_dagster_home,
)


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
    count: int | None = typer.Option(None, min=0, help="producer stops after this many readings"),
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
    from smoke_platform.dashboard import RecentAlerts, serve
    from smoke_platform.procs import StopFlag
    from streaming.config import StreamSettings

    settings = StreamSettings()
    urls = worker_metrics or [f"http://127.0.0.1:{settings.worker_metrics_port or 9108}/metrics"]
    alerts = RecentAlerts(settings.kafka(), settings.alerts_topic).start()
    server = serve(port, urls, settings.service_url, host, alerts=alerts, settings=settings)
    typer.echo(
        f"dashboard on http://{host}:{port}/ (workers: {', '.join(urls)}; "
        f"alerts: {settings.alerts_topic} on {settings.kafka_bootstrap})"
    )
    StopFlag.on_signals().wait(float("inf"))
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
