"""Mistakes a user can make, told in a line or two: what was wrong, the value, what to do.

`smoke` prints `explain(exc)` instead of a traceback (`--debug` or `SMOKE_DEBUG=1` shows
the traceback)."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """A mistake in input, settings or environment, with its message ready for people."""

    exit_code = 2


# sysexits' EX_CONFIG: a setting is wrong (credentials, a CA, a missing ACL). A supervisor
# (`smoke up`) does not restart a process that ends so: it would only fail again.
EXIT_CONFIG = 78


class ConfigError(UserError):
    """A setting the process cannot run with: restarting it would not help."""

    exit_code = EXIT_CONFIG


SECRET_WORDS = ("password", "api_key", "secret", "token")


def _settings_error(exc: Any) -> str:
    """A pydantic-settings failure names the SMOKE_* variable, its value and the rule."""
    lines = []
    for err in exc.errors()[:5]:
        field = ".".join(str(p) for p in err.get("loc", ()))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if not field:  # a rule over several settings: its message names them
            lines.append(message)
            continue
        value = "***" if any(w in field for w in SECRET_WORDS) else repr(err.get("input"))
        lines.append(f"SMOKE_{field.upper()}={value}: {message}")
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
