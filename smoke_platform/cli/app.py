"""The `smoke` Typer application and what its command groups share."""

from __future__ import annotations

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
    from streaming.admin import answers_metadata

    if not answers_metadata(bootstrap, timeout=timeout):
        raise UserError(
            f"no Kafka broker answers at {bootstrap} (SMOKE_KAFKA_BOOTSTRAP) within "
            f"{timeout:g} s: start one with `smoke broker` or `make up`, or set "
            "SMOKE_KAFKA_BOOTSTRAP to your brokers"
        )
