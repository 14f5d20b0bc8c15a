"""Shared resources: paths and settings, the model store, and the local-files IO manager."""

import pickle
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pandas as pd

from smoke_platform import modelstore
from smoke_platform.core.modeling import Bars
from smoke_platform.core.scoring import ScoringModel
from smoke_platform.core.settings import (
    DataSettings,
    KafkaSettings,
    ModelSettings,
    MonitoringSettings,
    NotifySettings,
    PathSettings,
    ServiceSettings,
    SparkSettings,
    StreamSettings,
    TrainingSettings,
    WorkerSettings,
    default,
    under_home,
    variable,
    where_set,
)
from smoke_platform.notify import Notifier

# Every field of a resource below that shares its name with a field of one of the settings
# tree's sections is that setting: its default is the section's, and `bind` binds it to the
# section's variable. The other fields are Dagster configuration only.


class PlatformSettingsResource(dg.ConfigurableResource):
    """Where data and reports live, and what to ingest (a Kaggle CSV, else generated data)."""

    data_dir: str = default(PathSettings, "data_dir")
    reports_dir: str = default(PathSettings, "reports_dir")
    kaggle_csv: str = default(PathSettings, "kaggle_csv")
    seed: int = default(DataSettings, "seed")
    rows: int = default(DataSettings, "rows")
    sensors: int = default(DataSettings, "sensors")
    # Shared with the worker and the Spark job.
    stream_dir: str = default(WorkerSettings, "stream_dir")
    windowed_dir: str = default(SparkSettings, "windowed_dir")
    service_url: str = default(ServiceSettings, "service_url")
    api_key: str = ""  # SMOKE_API_KEY, bound as an EnvVar: never shown in the UI
    service_ca_file: str = default(ServiceSettings, "service_ca_file")
    reference_csv: str = default(PathSettings, "reference_csv")

    def path(self, *parts: str) -> Path:
        p = under_home(self.data_dir).joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def report_dir(self, name: str) -> Path:
        p = under_home(self.reports_dir) / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def service_verify(self) -> str | bool:
        """How the service's certificate is checked (HTTPS): its CA, else the system's."""
        return str(under_home(self.service_ca_file)) if self.service_ca_file else True

    @property
    def stream_root(self) -> Path:
        """The stream worker's output folder (relative settings are under SMOKE_HOME)."""
        return under_home(self.stream_dir)

    @property
    def labels_root(self) -> Path:
        """Operators' verdicts and the readings they label (`operator_labels`)."""
        return under_home(self.data_dir) / "operator_labels"

    @property
    def windowed_root(self) -> Path:
        """The Spark window job's output folder."""
        return under_home(self.windowed_dir)


class TrainingSettingsResource(dg.ConfigurableResource):
    """How candidates are evaluated and what a model must reach before it can serve."""

    cv_folds: int = default(TrainingSettings, "cv_folds")
    operator_max_sensor_share: float = default(TrainingSettings, "operator_max_sensor_share")
    retrain_after_verdicts: int = default(TrainingSettings, "retrain_after_verdicts")
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


class KafkaResource(dg.ConfigurableResource):
    """The broker and the topics operators' verdicts are folded from."""

    kafka_bootstrap: str = default(KafkaSettings, "kafka_bootstrap")
    alerts_topic: str = default(KafkaSettings, "alerts_topic")
    trouble_topic: str = default(KafkaSettings, "trouble_topic")
    verdicts_topic: str = default(KafkaSettings, "verdicts_topic")

    def stream_settings(self) -> StreamSettings:
        return StreamSettings(
            kafka_bootstrap=self.kafka_bootstrap,
            alerts_topic=self.alerts_topic,
            trouble_topic=self.trouble_topic,
            verdicts_topic=self.verdicts_topic,
        )


class MonitoringSettingsResource(dg.ConfigurableResource):
    """Drift threshold and window, and how long stream output is kept (raw data: always)."""

    drift_psi_threshold: float = default(MonitoringSettings, "drift_psi_threshold")
    drift_window_days: int = default(MonitoringSettings, "drift_window_days")
    drift_min_rows: int = default(MonitoringSettings, "drift_min_rows")
    stream_retention_days: int = default(MonitoringSettings, "stream_retention_days")
    table_vacuum_retention_hours: int = default(MonitoringSettings, "table_vacuum_retention_hours")
    stream_refresh_minutes: int = default(MonitoringSettings, "stream_refresh_minutes")


class NotifierResource(dg.ConfigurableResource):
    """Run failures, drift and degradation: logged, and posted to `SMOKE_WEBHOOK_URL` if set."""

    webhook_url: str = default(NotifySettings, "webhook_url")

    def notify(self, title: str, text: str, level: str = "info", **fields: Any) -> bool:
        return Notifier(self.webhook_url, source="dagster").notify(title, text, level, **fields)


class ModelStoreResource(dg.ConfigurableResource):
    """The BentoML model store (`$BENTOML_HOME`); `<model_name>:latest` is the champion."""

    model_name: str = default(ModelSettings, "model_name")

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


R = TypeVar("R", bound=dg.ConfigurableResource)

SECTIONS = (
    PathSettings,
    KafkaSettings,
    DataSettings,
    WorkerSettings,
    SparkSettings,
    ServiceSettings,
    TrainingSettings,
    MonitoringSettings,
    NotifySettings,
    ModelSettings,
)


def bind(cls: type[R], resolved: bool = False, **fixed: Any) -> R:
    """`cls` with each field that is a setting of the tree bound to its variable where the
    variable is set (defaults otherwise): no table of names, the tree is the table.

    Dagster resolves `EnvVar` when a run starts, so the daemon and the webserver pick up
    the values of their own environment and secrets never show in the UI. Code that reads
    the fields outside a run (the CLI) asks for `resolved` values instead: an unresolved
    `EnvVar` field reads as the variable's name. A bad value fails when the definitions
    load, naming the variable, the value and an example."""
    import pydantic

    from smoke_platform.errors import SECRET_WORDS, ConfigError

    fields: dict[str, Any] = dict(fixed)
    for section in SECTIONS:
        bound = {f: var for f, var in where_set(section).items() if f in cls.model_fields}
        if not bound:
            continue
        try:
            values = section()
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if not err.get("loc"):  # a rule over several settings: its message names them
                raise ConfigError(message) from None
            name = str(err["loc"][0])
            var = variable(section, name)
            shown = "***" if any(w in name for w in SECRET_WORDS) else repr(err.get("input"))
            raise ConfigError(
                f"{var}={shown}: {message} (e.g. {var}={default(section, name)})"
            ) from None
        for field, var in bound.items():
            value = getattr(values, field)
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            if resolved or isinstance(value, float):  # Dagster has no float EnvVar
                fields[field] = value
            elif isinstance(value, int) and not isinstance(value, bool):
                fields[field] = dg.EnvVar.int(var)
            else:
                fields[field] = dg.EnvVar(var)
    return cls(**fields)


@dg.definitions
def resources() -> dg.Definitions:
    settings = bind(PlatformSettingsResource)
    return dg.Definitions(
        resources={
            "settings": settings,
            "io_manager": LocalFilesIOManager(settings=settings),
            "training": bind(TrainingSettingsResource),
            "monitoring": bind(MonitoringSettingsResource),
            "notifier": bind(NotifierResource),
            "model_store": bind(ModelStoreResource),
            "kafka": bind(KafkaResource),
        }
    )
