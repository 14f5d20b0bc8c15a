"""Mistakes a user can make, told in a line or two: what was wrong, the value, what to do.

`smoke` prints `explain(exc)` instead of a traceback (`--debug` or `SMOKE_DEBUG=1` shows
the traceback)."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """A mistake in input, settings or environment, with its message ready for people."""


def _settings_error(exc: Any) -> str:
    """A pydantic-settings failure names the SMOKE_* variable, its value and the rule."""
    lines = []
    for err in exc.errors()[:5]:
        field = ".".join(str(p) for p in err.get("loc", ()))
        value = err.get("input")
        lines.append(f"SMOKE_{field.upper()}={value!r}: {err.get('msg', 'invalid')}")
    return "invalid setting: " + "; ".join(lines)


def explain(exc: BaseException) -> str:
    """One or two lines for any error the command line can end in."""
    import pydantic

    from smoke_platform.core.verdicts import VerdictError

    cause: BaseException | None = exc
    while cause is not None:  # frameworks wrap ours (Dagster: loading the definitions)
        if isinstance(cause, (UserError, VerdictError)):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"no such file or folder: {exc.filename}"
    if isinstance(exc, pydantic.ValidationError) and exc.title.endswith("Settings"):
        return _settings_error(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__
