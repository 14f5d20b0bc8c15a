"""`smoke tables`: the stream's Delta tables (version, files, rows, size) and the one-way
import of earlier releases' Parquet output."""

from __future__ import annotations

from pathlib import Path

import typer

from smoke_platform.cli.app import app

tables = typer.Typer(
    help="The stream's Delta tables: version, files, rows, size; import old Parquet output",
    invoke_without_command=True,
)
app.add_typer(tables, name="tables")


def _roots() -> tuple[Path, Path]:
    from smoke_platform.core.settings import under_home
    from streaming.config import StreamSettings

    s = StreamSettings()
    return Path(under_home(s.stream_dir)), Path(under_home(s.windowed_dir))


@tables.callback()
def show(ctx: typer.Context) -> None:
    """Each table's version, files, rows, size and days."""
    if ctx.invoked_subcommand is not None:
        return
    from tabulate import tabulate

    from streaming.table_maintenance import legacy_folders, stats, tables_under
    from streaming.tables import is_table

    stream, windowed = _roots()
    found = tables_under(stream)
    if is_table(windowed):
        found["windows"] = windowed
    rows = []
    for name, path in found.items():
        s = stats(path)
        rows.append([name, s["version"], s["files"], s["rows"], _size(s["bytes"]), s["days"], path])
    if rows:
        headers = ["table", "version", "files", "rows", "size", "days", "path"]
        typer.echo(tabulate(rows, headers=headers))
    else:
        typer.echo(f"no tables under {stream} yet (the stream worker creates them)")
    for folder in legacy_folders(stream):
        typer.echo(
            f"{folder} holds Parquet files of an earlier release: move the folder's parent "
            "aside and run `smoke tables import <it>`"
        )


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@tables.command("import")
def import_(
    path: Path = typer.Argument(
        ..., help="an earlier release's stream folder (predictions/, alerts/ of date= folders)"
    ),
) -> None:
    """Copy earlier releases' Parquet output into the tables; deletes nothing, and
    importing the same folder twice adds nothing."""
    from smoke_platform.errors import UserError
    from streaming.table_maintenance import import_parquet

    if not path.is_dir():
        what = "a file" if path.exists() else "no such folder"
        raise UserError(
            f"PATH {path}: {what}; give the folder holding the old output "
            "(predictions/, alerts/ with date=YYYY-MM-DD/ Parquet files)"
        )
    stream, _ = _roots()
    try:
        done = import_parquet(path, stream)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not done:
        typer.echo(f"nothing to import from {path} (no Parquet output, or imported already)")
    for kind, n in done.items():
        typer.echo(f"{kind}: {n:,} rows imported into {stream / kind}")
