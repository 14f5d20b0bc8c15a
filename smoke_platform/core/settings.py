"""Settings of the reading contract and the data root, from SMOKE_* variables."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import pydantic
from pydantic_settings import BaseSettings, SettingsConfigDict


class InputSettings(BaseSettings):
    """What every entry point (service, worker, producer) accepts as a reading."""

    model_config = SettingsConfigDict(env_prefix="SMOKE_", frozen=True, extra="ignore")

    # History stays replayable (the public file is from 2022); 1970 or 9999 is a clock fault.
    reading_max_age_days: Annotated[float, pydantic.Field(gt=0)] = 3650.0
    # Kafka itself refuses records stamped more than 1 h ahead (log.message.timestamp.after.max.ms).
    reading_max_ahead_s: Annotated[float, pydantic.Field(ge=0)] = 3600.0


@functools.cache
def input_settings() -> InputSettings:
    return InputSettings()


class HomeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMOKE_", frozen=True, extra="ignore")

    # The root every relative path setting (data, reports, stream output, checkpoints, the
    # stack's state) is resolved under: a deployment's volume, a test's temporary folder.
    home: Path = Path(".")


def home() -> Path:
    """SMOKE_HOME (default: the current directory), read when asked (tests change it)."""
    return HomeSettings().home


def under_home(path: str | Path) -> Path:
    """An absolute path as it is; a relative one under SMOKE_HOME."""
    p = Path(path)
    return p if p.is_absolute() else home() / p
