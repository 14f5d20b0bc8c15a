"""`smoke generate`, `materialize`, `demo`, `bootstrap`: data and the asset graph."""

from __future__ import annotations

from pathlib import Path

import typer

from smoke_platform.cli.app import app
from smoke_platform.runs import (
    MONITORING_REPORTS,
    champion_summary,
    demo_run_folder,
    materialize_all,
    register_stream_days,
)


@app.command()
def generate(
    out: Path | None = typer.Option(
        None, help="CSV to write [default: data/generated/smoke_detection_iot.csv under SMOKE_HOME]"
    ),
    rows: int = typer.Option(60_000, min=1, max=10_000_000),
    seed: int = typer.Option(0, min=0),
    sensors: int = typer.Option(8, min=1),
    overwrite: bool = typer.Option(False, help="replace the CSV if it exists"),
) -> None:
    """Write generated readings as a Kaggle-format CSV (unnamed index column, bracketed headers)."""
    from smoke_platform.core.settings import under_home
    from smoke_platform.core.simulate import generate_kaggle

    out = out or under_home("data/generated/smoke_detection_iot.csv")
    if out.is_dir():
        from smoke_platform.errors import UserError

        raise UserError(f"--out {out} is a folder: name the CSV file to write")
    if out.exists() and not overwrite:
        typer.echo(f"{out} exists: pass --overwrite to replace it, or --out another path", err=True)
        raise typer.Exit(2)

    frame = generate_kaggle(rows, seed, sensors)
    out.parent.mkdir(parents=True, exist_ok=True)
    kaggle = frame.drop(columns=["sensor_id", "session_id", "scenario"])
    kaggle.index.name = None
    kaggle.to_csv(out)
    typer.echo(f"wrote {len(frame)} rows, {frame['session_id'].nunique()} sessions to {out}")


@app.command()
def materialize(select: str = typer.Option("*", help="Dagster asset selection")) -> None:
    """Materialise assets (with their blocking checks) in one process, recorded in DAGSTER_HOME."""
    ok, elapsed, reports = materialize_all(select)
    for asset, path in reports.items():
        typer.echo(f"report {asset}: {path}")
    typer.echo(f"materialisation {'succeeded' if ok else 'FAILED'} in {elapsed:.1f} s")
    raise typer.Exit(0 if ok else 1)


@app.command()
def demo(
    stream: bool = typer.Option(True, help="also run the streaming part"),
    spark: bool = typer.Option(True, help="and the Spark window job over the stream"),
) -> None:
    """The end-to-end demo on embedded defaults: every asset, every check, every report.

    Its data, reports and stream outputs go to a new folder of its own, data/demo/<time>/
    (under SMOKE_HOME); the trained models are added to the model store (BENTOML_HOME) and
    the runs to Dagster's history (DAGSTER_HOME). Nothing of an earlier run or of a
    deployment is replaced or deleted."""

    run = demo_run_folder(typer.echo)
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
        from smoke_platform.defs.common.resources import PlatformSettingsResource, bind
        from streaming.demo import run_stream_demo

        settings = bind(PlatformSettingsResource, resolved=True)
        windowed = settings.windowed_root if spark else None

        def monitoring_reports(service_url: str) -> None:
            """While the demo's service still runs: its health is part of a report."""
            nonlocal ok
            days = register_stream_days()
            typer.echo(f"registered stream output as Dagster asset partitions: {', '.join(days)}")
            ok, _, more = materialize_all(MONITORING_REPORTS, {"service_url": service_url})
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
    from smoke_platform.core.settings import ToolHomes

    homes = ToolHomes()
    typer.echo(
        f"This run's data, reports and stream outputs are under {run}/; its models are in "
        f"the model store {homes.bentoml_home}/ and its runs in Dagster's history "
        f"{homes.dagster_home}/."
    )
    typer.echo("Serve it: `make serve` (bentoml serve smoke_detector:latest on 127.0.0.1:3001).")
    typer.echo(f"Open the Dagster UI on it: `SMOKE_HOME={run} make ui` (http://127.0.0.1:3000).")
    raise typer.Exit(0 if ok else 1)


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
