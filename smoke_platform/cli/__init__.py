"""The `smoke` command line: one module per command group (data, stream, stack, ops) on
one Typer application; orchestration they share with the demo and the tests is in
`smoke_platform.runs`."""

from __future__ import annotations

import typer

from smoke_platform.cli import alerts, data, ops, stack, stream, tables  # noqa: F401
from smoke_platform.cli.app import app
from smoke_platform.runs import default_homes

__all__ = ["app", "main"]


def main() -> None:
    """`smoke`: a mistake ends in a line or two saying what was wrong and what to do; the
    traceback only with `--debug` (or SMOKE_DEBUG=1)."""
    import sys

    from smoke_platform.errors import explain

    default_homes()
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
        raise SystemExit(_exit_code(exc)) from None


def _exit_code(exc: BaseException) -> int:
    """78 (`EXIT_CONFIG`) when a setting is wrong: an invalid SMOKE_* value, or a
    `ConfigError` (credentials, a CA, a missing ACL), which a supervisor does not restart;
    else the code of the `UserError` behind `exc`, or 2."""
    import pydantic

    from smoke_platform.errors import EXIT_CONFIG, UserError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, UserError):
            return cause.exit_code
        if isinstance(cause, pydantic.ValidationError) and cause.title.endswith("Settings"):
            return EXIT_CONFIG
        cause = cause.__cause__ or cause.__context__
    return 2
