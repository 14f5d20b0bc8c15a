"""Settings of the reading contract and the data root, from SMOKE_* variables."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
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


def _settings(**extra: object) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix="SMOKE_", frozen=True, extra="ignore", **extra)  # type: ignore[typeddict-item]


class ServiceSettings(BaseSettings):
    """The service's guard: keys, limits and API processes (bentos/guard.py)."""

    model_config = _settings()

    # Comma-separated keys (rotation: several valid at once); unset = the API is open.
    api_key: pydantic.SecretStr = pydantic.SecretStr("")
    rate_limit_per_s: Annotated[float, pydantic.Field(ge=0)] = 0.0  # per client; 0 = unlimited
    rate_limit_burst: Annotated[float | None, pydantic.Field(gt=0)] = None  # default 2 x rate
    max_request_bytes: Annotated[int, pydantic.Field(gt=0)] = 4 * 1024 * 1024
    auth_failures_per_s: Annotated[float, pydantic.Field(ge=0)] = 1.0  # per address; 0 = off
    auth_failures_burst: Annotated[float, pydantic.Field(gt=0)] = 10.0
    # API worker processes: a whole number >= 1, or `cpu_count`.
    service_workers: str = "1"

    @pydantic.field_validator("service_workers")
    @classmethod
    def _workers(cls, raw: str) -> str:
        raw = raw.strip() or "1"
        if raw != "cpu_count" and (not raw.isdigit() or int(raw) < 1):
            raise ValueError(
                f"SMOKE_SERVICE_WORKERS={raw!r}: allowed is a whole number >= 1 or 'cpu_count'"
            )
        return raw

    def keys(self) -> list[bytes]:
        return [k.strip().encode() for k in self.api_key.get_secret_value().split(",") if k.strip()]

    def workers(self) -> int:
        if self.service_workers == "cpu_count":
            return os.cpu_count() or 1
        return int(self.service_workers)


class ModelSettings(BaseSettings):
    """Which model the service packages and serves (smoke_platform/modelstore.py)."""

    model_config = _settings(protected_namespaces=())

    model_name: str = "smoke_detector"  # `<name>:latest` is the champion
    model_tag: str = ""  # an exact version; empty = the champion

    def served_tag(self) -> str:
        return self.model_tag or f"{self.model_name}:latest"


class StackSettings(BaseSettings):
    """`smoke up`'s state: logs and process ids (smoke_platform/stack.py)."""

    model_config = _settings()

    stack_dir: Path = Path(".stack")  # under SMOKE_HOME when relative


class CliSettings(BaseSettings):
    """How `smoke` reports a mistake."""

    model_config = _settings()

    debug: bool = False  # tracebacks, as `--debug`


class ToolHomes(BaseSettings):
    """Where the tools underneath keep their state, by their own variables (BENTOML_HOME,
    DAGSTER_HOME; `smoke` sets both under SMOKE_HOME when they are unset)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    bentoml_home: Path | None = None
    dagster_home: Path | None = None


def set_variables(names: Iterable[str]) -> dict[str, str]:
    """Those of `names` that are set in this process's environment, with their values: how
    the Dagster resources learn which of their variables to bind (`EnvVar`)."""
    return {name: os.environ[name] for name in names if name in os.environ}
