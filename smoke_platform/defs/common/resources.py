"""Shared resources: paths and settings, and the Parquet IO manager that stores frames."""

import os
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

# Environment variable -> resource field (documented in README "Configuration").
SETTINGS_ENV: dict[str, tuple[str, type]] = {
    "data_dir": ("SMOKE_DATA_DIR", str),
    "reports_dir": ("SMOKE_REPORTS_DIR", str),
    "kaggle_csv": ("SMOKE_KAGGLE_CSV", str),
    "seed": ("SMOKE_SEED", int),
    "n_rows": ("SMOKE_ROWS", int),
    "n_sensors": ("SMOKE_SENSORS", int),
}


class PlatformSettingsResource(dg.ConfigurableResource):
    """Where data and reports live, and what to ingest (a Kaggle CSV, else generated data)."""

    data_dir: str = "data"
    reports_dir: str = "reports"
    kaggle_csv: str = ""
    seed: int = 0
    n_rows: int = 60_000
    n_sensors: int = 8

    def path(self, *parts: str) -> Path:
        p = Path(self.data_dir, *parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def report_dir(self, name: str) -> Path:
        p = Path(self.reports_dir, name)
        p.mkdir(parents=True, exist_ok=True)
        return p


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores each DataFrame asset as `<data_dir>/assets/<asset key>.parquet`."""

    settings: PlatformSettingsResource

    def _path(self, key: dg.AssetKey) -> Path:
        return self.settings.path("assets", *key.path[:-1], f"{key.path[-1]}.parquet")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        path = self._path(context.asset_key)
        obj.to_parquet(path, index=False)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path.resolve()))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        return pd.read_parquet(self._path(context.asset_key))


def settings_from_env() -> PlatformSettingsResource:
    """Settings bound to `EnvVar`s where the variable is set, defaults otherwise.

    Dagster resolves `EnvVar` when a run starts, so the daemon and the webserver pick
    up the values of their own environment; unset variables keep the defaults.
    """
    fields: dict[str, Any] = {}
    for field, (var, kind) in SETTINGS_ENV.items():
        if var in os.environ:
            fields[field] = dg.EnvVar.int(var) if kind is int else dg.EnvVar(var)
    return PlatformSettingsResource(**fields)


@dg.definitions
def resources() -> dg.Definitions:
    settings = settings_from_env()
    return dg.Definitions(
        resources={"settings": settings, "io_manager": ParquetIOManager(settings=settings)}
    )
