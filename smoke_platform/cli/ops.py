"""`smoke config`, `backup`, `restore`: operating a deployment."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from smoke_platform.cli.app import app
from smoke_platform.runs import (
    ensure_dagster_home,
)


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
