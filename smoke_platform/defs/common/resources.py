"""Shared resources: paths and settings, the model store, and the local-files IO manager."""

import pickle
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pandas as pd

from smoke_platform import modelstore
from smoke_platform.core.drift import SIGNIFICANT_PSI
from smoke_platform.core.modeling import Bars
from smoke_platform.core.scoring import ScoringModel
from smoke_platform.core.settings import set_variables, under_home
from smoke_platform.notify import Notifier
from streaming.config import StreamSettings

_STREAM = StreamSettings.model_fields

# Environment variable -> resource field (documented in README "Configuration").
SETTINGS_ENV: dict[str, tuple[str, type]] = {
    "data_dir": ("SMOKE_DATA_DIR", str),
    "reports_dir": ("SMOKE_REPORTS_DIR", str),
    "kaggle_csv": ("SMOKE_KAGGLE_CSV", str),
    "seed": ("SMOKE_SEED", int),
    "n_rows": ("SMOKE_ROWS", int),
    "n_sensors": ("SMOKE_SENSORS", int),
    "stream_dir": ("SMOKE_STREAM_DIR", str),  # the same variable the stream worker reads
    "windowed_dir": ("SMOKE_WINDOWED_DIR", str),  # ... and the Spark job
    "service_url": ("SMOKE_SERVICE_URL", str),  # the service the worker calls
    "api_key": ("SMOKE_API_KEY", str),
    "reference_csv": ("SMOKE_REFERENCE_CSV", str),
}


class PlatformSettingsResource(dg.ConfigurableResource):
    """Where data and reports live, and what to ingest (a Kaggle CSV, else generated data)."""

    data_dir: str = "data"
    reports_dir: str = "reports"
    kaggle_csv: str = ""
    seed: int = 0
    n_rows: int = 60_000
    n_sensors: int = 8
    # Shared with the worker and the Spark job: their defaults, declared once.
    stream_dir: str = _STREAM["stream_dir"].default
    windowed_dir: str = _STREAM["windowed_dir"].default
    service_url: str = _STREAM["service_url"].default
    api_key: str = _STREAM["api_key"].default
    # Labelled real readings (Kaggle format) every model is also judged on; empty: the
    # public excerpts shipped with the platform (smoke_platform/reference_data/).
    reference_csv: str = ""

    def path(self, *parts: str) -> Path:
        p = under_home(self.data_dir).joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def report_dir(self, name: str) -> Path:
        p = under_home(self.reports_dir) / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def stream_root(self) -> Path:
        """The stream worker's output folder (relative settings are under SMOKE_HOME)."""
        return under_home(self.stream_dir)

    @property
    def windowed_root(self) -> Path:
        """The Spark window job's output folder."""
        return under_home(self.windowed_dir)


TRAINING_ENV: dict[str, tuple[str, type]] = {
    "cv_folds": ("SMOKE_CV_FOLDS", int),
}


class TrainingSettingsResource(dg.ConfigurableResource):
    """How candidates are evaluated and what a model must reach before it can serve."""

    cv_folds: int = 4
    holdout_fraction: float = 0.25
    target_false_alarm_rate: float = 0.01
    min_recall: float = Bars.min_recall
    max_false_alarm_rate: float = Bars.max_false_alarm_rate
    max_median_latency_s: float = Bars.max_median_latency_s
    max_missed_fire_sessions: int = Bars.max_missed_fire_sessions
    # A pydantic field (copied per instance), not a shared class attribute.
    candidates: list[str] = ["logistic_regression", "random_forest", "hist_gradient_boosting"]  # noqa: RUF012

    def bars(self) -> Bars:
        return Bars(
            self.min_recall,
            self.max_false_alarm_rate,
            self.max_median_latency_s,
            self.max_missed_fire_sessions,
        )


MONITORING_ENV: dict[str, tuple[str, type]] = {
    "drift_psi_threshold": ("SMOKE_DRIFT_PSI_THRESHOLD", float),
    "drift_window_days": ("SMOKE_DRIFT_WINDOW_DAYS", int),
    "drift_min_rows": ("SMOKE_DRIFT_MIN_ROWS", int),
    "retention_days": ("SMOKE_STREAM_RETENTION_DAYS", int),
    "stream_refresh_minutes": ("SMOKE_STREAM_REFRESH_MINUTES", int),
}


class MonitoringSettingsResource(dg.ConfigurableResource):
    """Drift threshold and window, and how long stream output is kept (raw data: always)."""

    drift_psi_threshold: float = SIGNIFICANT_PSI
    drift_window_days: int = 7
    # PSI compares populations: a handful of sensors for minutes is not the training
    # population, so below this many live readings drift is reported, never acted on.
    drift_min_rows: int = 5_000
    retention_days: int = 30
    # Today's stream output grows by a file per worker batch: it is registered with Dagster
    # at most this often (a new day, or a finished day that changed, at once).
    stream_refresh_minutes: int = 60


class NotifierResource(dg.ConfigurableResource):
    """Run failures, drift and degradation: logged, and posted to `SMOKE_WEBHOOK_URL` if set."""

    webhook_url: str = ""

    def notify(self, title: str, text: str, level: str = "info", **fields: Any) -> bool:
        return Notifier(self.webhook_url, source="dagster").notify(title, text, level, **fields)


class ModelStoreResource(dg.ConfigurableResource):
    """The BentoML model store (`$BENTOML_HOME`); `<model_name>:latest` is the champion."""

    model_name: str = modelstore.MODEL_NAME

    @property
    def champion_tag(self) -> str:
        return f"{self.model_name}:latest"

    def champion_info(self) -> dict[str, Any] | None:
        return modelstore.model_info(self.champion_tag)

    def info(self, tag: str) -> dict[str, Any] | None:
        return modelstore.model_info(tag)

    def load(self, tag: str | None = None) -> ScoringModel:
        return modelstore.load_model(tag or self.champion_tag)

    def save(self, model: ScoringModel, labels: dict[str, str], metadata: dict[str, Any]) -> str:
        return modelstore.save_model(model, self.model_name, labels, metadata)


class LocalFilesIOManager(dg.ConfigurableIOManager):
    """DataFrames as `<data_dir>/assets/<key>.parquet`, other values as `<key>.pkl`."""

    settings: PlatformSettingsResource

    def _path(self, key: dg.AssetKey, suffix: str) -> Path:
        return self.settings.path("assets", *key.path[:-1], f"{key.path[-1]}{suffix}")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if isinstance(obj, pd.DataFrame):
            path = self._path(context.asset_key, ".parquet")
            obj.to_parquet(path, index=False)
        else:
            path = self._path(context.asset_key, ".pkl")
            path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path.resolve()))})

    def load_input(self, context: dg.InputContext) -> Any:
        parquet = self._path(context.asset_key, ".parquet")
        if parquet.exists():
            return pd.read_parquet(parquet)
        return pickle.loads(self._path(context.asset_key, ".pkl").read_bytes())


NOTIFIER_ENV: dict[str, tuple[str, type]] = {"webhook_url": ("SMOKE_WEBHOOK_URL", str)}
MODEL_STORE_ENV: dict[str, tuple[str, type]] = {"model_name": ("SMOKE_MODEL_NAME", str)}

R = TypeVar("R", bound=dg.ConfigurableResource)


def from_env(
    cls: type[R], env: dict[str, tuple[str, type]], resolved: bool = False, **fixed: Any
) -> R:
    """A resource bound to `EnvVar`s where the variable is set, defaults otherwise.

    Dagster resolves `EnvVar` when a run starts, so the daemon and the webserver pick
    up the values of their own environment; unset variables keep the defaults. Code that
    reads the fields outside a run (the CLI) asks for `resolved` values instead: an
    unresolved `EnvVar` field reads as the variable's name.
    """
    from smoke_platform.errors import UserError

    fields: dict[str, Any] = dict(fixed)
    given = set_variables(var for var, _ in env.values())
    for field, (var, kind) in env.items():
        if var not in given:
            continue
        try:  # a bad value fails when the definitions load, naming the variable
            value = kind(given[var])
        except ValueError:
            raise UserError(
                f"{var}={given[var]!r} is not a valid {kind.__name__} "
                f"(e.g. {var}={cls.model_fields[field].default})"
            ) from None
        if resolved or kind is float:  # Dagster has no float EnvVar: read at load time
            fields[field] = value
        else:
            fields[field] = dg.EnvVar.int(var) if kind is int else dg.EnvVar(var)
    return cls(**fields)


@dg.definitions
def resources() -> dg.Definitions:
    settings = from_env(PlatformSettingsResource, SETTINGS_ENV)
    return dg.Definitions(
        resources={
            "settings": settings,
            "io_manager": LocalFilesIOManager(settings=settings),
            "training": from_env(TrainingSettingsResource, TRAINING_ENV),
            "monitoring": from_env(MonitoringSettingsResource, MONITORING_ENV),
            "notifier": from_env(NotifierResource, NOTIFIER_ENV),
            "model_store": from_env(ModelStoreResource, MODEL_STORE_ENV),
        }
    )
