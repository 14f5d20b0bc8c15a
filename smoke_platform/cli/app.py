"""The `smoke` Typer application and what its command groups share."""

from __future__ import annotations

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


def require_broker(conn: Any, timeout: float = 10.0, writes: list[str] | None = None) -> None:
    """Fail at once, naming the setting, when no Kafka broker answers, it refuses this
    client, or its ACLs deny writing to `writes` (`conn`: a bootstrap string or
    `settings.kafka()`; instead of a minute of librdkafka's connection errors)."""
    from smoke_platform.errors import ConfigError, UserError
    from streaming.admin import missing_acls, principal, probe

    why = probe(conn, timeout=timeout)
    if why is not None and why.startswith("no Kafka broker answers"):
        raise UserError(
            f"{why} (SMOKE_KAFKA_BOOTSTRAP): start one with `smoke broker` or `make up`, or "
            "set SMOKE_KAFKA_BOOTSTRAP to your brokers"
        )
    if why is not None:
        raise ConfigError(why)
    missing = missing_acls(conn, writes=writes or [], timeout=timeout)
    if missing:
        raise ConfigError(f"the broker's ACLs deny {principal(conn)}: {'; '.join(missing)}")
