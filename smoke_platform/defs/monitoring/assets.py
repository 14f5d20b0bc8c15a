"""The stream outputs as Dagster assets, and the reports over them.

The worker's predictions and the Spark job's windows are daily-partitioned assets, so
lineage runs from the raw data and the model to live predictions and on to the
performance, drift and weekly insights reports. Stream files stay where the worker and
the Spark job wrote them (never copied); materialising a partition records what is there.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from smoke_platform.core.drift import feature_drift as drift_table
from smoke_platform.core.features import (
    FEATURE_COLUMNS,
    MODEL_FEATURES,
    add_rises,
    build_features,
)
from smoke_platform.core.metrics import LIVE_METADATA
from smoke_platform.core.schema import MEASUREMENTS
from smoke_platform.defs.common.resources import (
    ModelStoreResource,
    MonitoringSettingsResource,
    PlatformSettingsResource,
)
from smoke_platform.defs.monitoring.partitions import stream_dates
from smoke_platform.reports.markdown import markdown_table, report_metadata
from streaming.table_maintenance import stats
from streaming.tables import output_days, read_outputs


def stream_sources(settings: PlatformSettingsResource) -> dict[dg.AssetKey, Path]:
    """Each daily stream asset and the folder whose `date=` subfolders are its partitions."""
    return {
        dg.AssetKey("stream_predictions"): settings.stream_root / "predictions",
        dg.AssetKey("windowed_analytics"): settings.windowed_root,
    }


def days_by_source(settings: PlatformSettingsResource) -> dict[dg.AssetKey, dict[str, Path]]:
    """Each daily stream asset's days of output and their folders: what the sensor and
    `smoke demo` register as partitions (one listing for both)."""
    return {
        key: {day: root / f"date={day}" for day in output_days(root)}
        for key, root in stream_sources(settings).items()
    }


def recent_days(root: Path, kind: str, n: int) -> list[str]:
    """The newest `n` days of output (relative to the data, so a replayed week reports as one)."""
    return output_days(root, kind)[-n:]


# The stream outputs: one partition per day, downstream of the model that produced them.
STREAM_DAY: dict[str, Any] = {
    "group_name": "monitoring",
    "owners": ["team:data-platform"],
    "partitions_def": stream_dates,
    "deps": ["smoke_classifier"],
}


def read_day(root: Path | str, kind: str, date: str) -> tuple[pd.DataFrame, Path]:
    """One day of one output kind and its folder; a day with no rows fails the run."""
    folder = Path(root, kind, f"date={date}")
    frame = read_outputs(root, kind, [date])
    if frame.empty:
        raise dg.Failure(f"no rows under {folder}")
    return frame, folder


@dg.asset(kinds={"kafka", "deltalake"}, **STREAM_DAY)
def stream_predictions(
    context: dg.AssetExecutionContext, settings: PlatformSettingsResource
) -> dg.MaterializeResult:
    """One day of the stream worker's scored readings and alerts (the Delta tables under
    data/processed_stream, read with the day's predicate)."""
    date = context.partition_key
    root = settings.stream_root
    preds, folder = read_day(root, "predictions", date)
    alerts = read_outputs(root, "alerts", [date])
    opened = alerts[alerts["event"] == "open"] if not alerts.empty else alerts
    table = stats(root / "predictions")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(preds),
            "table_version": table["version"],  # the Delta table as this run read it
            "table_rows": table["rows"],
            "table_files": table["files"],
            "sensors": int(preds["sensor_id"].nunique()),
            "fire_share": float(preds["is_fire"].mean()),
            "alerts_opened": len(opened),
            "scored_by": dg.MetadataValue.json(preds["scored_by"].value_counts().to_dict()),
            "model_versions": dg.MetadataValue.json(sorted(preds["model_version"].unique())),
            "path": dg.MetadataValue.path(str(folder.resolve())),
        }
    )


# The ML team's reports over the live predictions.
ML_REPORT: dict[str, Any] = {
    "group_name": "monitoring",
    "kinds": {"markdown"},
    "owners": ["team:ml"],
    "deps": [stream_predictions],
}


@dg.asset(**{**ML_REPORT, "deps": [stream_predictions, dg.AssetKey("operator_labels")]})
def model_performance_report(
    context: dg.AssetExecutionContext,
    settings: PlatformSettingsResource,
    model_store: ModelStoreResource,
) -> dg.MaterializeResult:
    """Recall, false alarms, latency and calibration on labelled live data vs training."""
    from smoke_platform.reports.performance import service_health, write_performance_report

    preds = read_outputs(settings.stream_root, "predictions")
    if preds.empty or preds["fire_alarm"].isna().all():
        raise dg.Failure("no labelled stream predictions yet (data/processed_stream)")
    version = str(preds["model_version"].mode().iloc[0])
    info = model_store.info(version)
    if info is None:  # never guess a threshold: the report would judge another model
        raise dg.Failure(
            f"the model that scored the stream, {version}, is not in the BentoML store "
            "(BENTOML_HOME): point BENTOML_HOME at the store the service "
            "uses, or train one with `smoke materialize`"
        )
    threshold = float(info["metadata"]["threshold"])
    training = info["metadata"].get("holdout_metrics", {})
    service = service_health(
        settings.service_url, settings.api_key, verify=settings.service_verify()
    )
    outcomes = read_outputs(settings.labels_root, "outcomes")
    path, m = write_performance_report(
        preds, threshold, training, settings.report_dir("performance"), service, outcomes
    )
    verdicts = m["verdicts"]
    return dg.MaterializeResult(
        metadata={
            **report_metadata(path),
            "model_version": version,
            "service_ready": dg.MetadataValue.bool(bool(service["ready"])),
            "service_model_version": str(service["version"]),
            **{k: dg.MetadataValue.float(float(m[k])) for k in LIVE_METADATA},
            "training_recall": dg.MetadataValue.float(float(training.get("recall", float("nan")))),
            "training_false_alarm_rate": dg.MetadataValue.float(
                float(training.get("false_alarm_rate", float("nan")))
            ),
            "alerts_by_verdict": dg.MetadataValue.json(verdicts["by_verdict"]),
            "alert_precision_by_verdict": dg.MetadataValue.float(
                float("nan") if verdicts["precision"] is None else verdicts["precision"]
            ),
            "median_time_to_acknowledge_s": dg.MetadataValue.float(
                float("nan") if verdicts["ack_median_s"] is None else verdicts["ack_median_s"]
            ),
        }
    )


@dg.asset(kinds={"spark", "parquet"}, **STREAM_DAY)
def windowed_analytics(
    context: dg.AssetExecutionContext, settings: PlatformSettingsResource
) -> dg.MaterializeResult:
    """One day of the Spark job's 5-minute windows per sensor (data/windowed)."""
    windows, folder = read_day(settings.windowed_root, "", context.partition_key)
    # A retried Spark batch rewrites its own file, so (sensor, window) is unique per day.
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(windows),
            "sensors": int(windows["sensor_id"].nunique()),
            "mean_quality_score": float(windows["quality_score"].mean()),
            "anomalous_windows": int(windows["anomaly"].sum()),
            "fire_windows": int((windows["fire_share"] >= 0.5).sum()),
            "path": dg.MetadataValue.path(str(folder.resolve())),
        }
    )


def champion_features(model_store: ModelStoreResource) -> tuple[list[str], str]:
    """The features the serving model uses (its stored list, rates of rise included), and
    where the list came from; the model feature list before any model was promoted."""
    info = model_store.champion_info()
    if info is None:
        return list(MODEL_FEATURES), "the model feature list (no champion yet)"
    return list(model_store.load(info["tag"]).features), f"champion {info['tag']}"


@dg.asset(**ML_REPORT)
def feature_drift(
    settings: PlatformSettingsResource,
    monitoring: MonitoringSettingsResource,
    model_store: ModelStoreResource,
    training_dataset: pd.DataFrame,
) -> dg.MaterializeResult:
    """PSI and KS distance per feature the champion uses: the last days of live readings
    vs the training data. Site-dependent columns the model ignores are shown apart and
    never request training."""
    from smoke_platform.reports.drift import write_drift_report

    root = settings.stream_root
    days = recent_days(root, "predictions", monitoring.drift_window_days)
    live = read_outputs(root, "predictions", days)
    missing = [c for c in MEASUREMENTS if c not in live.columns]
    if live.empty or missing:
        raise dg.Failure(f"no live readings with all measurements under {root} (missing {missing})")
    live = build_features(add_rises(live.dropna(subset=list(MEASUREMENTS))))
    used, source = champion_features(model_store)
    threshold = monitoring.drift_psi_threshold
    table = drift_table(training_dataset, live, used, threshold)
    site = drift_table(training_dataset, live, [c for c in FEATURE_COLUMNS if c not in used])
    enough = len(live) >= monitoring.drift_min_rows
    path = write_drift_report(
        table,
        threshold,
        len(live),
        len(training_dataset),
        settings.report_dir("drift"),
        min_rows=monitoring.drift_min_rows,
        site=site,
        features_from=source,
    )
    drifted = table.loc[table["status"] == "drifted", "feature"].tolist() if enough else []
    return dg.MaterializeResult(
        metadata={
            "features_from": source,
            "site_only_psi": dg.MetadataValue.md(markdown_table(site, index=False)),
            "max_psi": dg.MetadataValue.float(float(table["psi"].max())),
            "threshold": dg.MetadataValue.float(monitoring.drift_psi_threshold),
            "drifted_features": dg.MetadataValue.json(drifted),
            "live_days": dg.MetadataValue.json(days),
            "live_rows": len(live),
            "enough_data": dg.MetadataValue.bool(enough),
            "psi": dg.MetadataValue.md(markdown_table(table, index=False)),
            **report_metadata(path),
        }
    )


@dg.asset(
    group_name="monitoring",
    kinds={"markdown"},
    owners=["team:data-platform"],
    deps=[stream_predictions, windowed_analytics],
)
def weekly_insights(settings: PlatformSettingsResource) -> dg.MaterializeResult:
    """The week in the stream: sessions, fires, alerts and their precision, noisy sensors,
    false-alarm causes, data-quality trend (retention: `stream_table_retention`)."""
    from smoke_platform.reports.insights import insights, write_insights_report

    root = settings.stream_root
    days = recent_days(root, "predictions", 7)
    preds = read_outputs(root, "predictions", days)
    if preds.empty:
        raise dg.Failure(f"no stream predictions under {root}")
    figures = insights(
        preds, read_outputs(root, "alerts", days), read_outputs(settings.windowed_root, "", days)
    )
    path = write_insights_report(figures, settings.report_dir("insights"))
    precision = figures["alert_precision"]
    return dg.MaterializeResult(
        metadata={
            "days": dg.MetadataValue.json(figures["days"]),
            "readings": figures["readings"],
            "fire_sessions": figures["fire_sessions"],
            "alerts_opened": figures["alerts_opened"],
            "alert_precision": dg.MetadataValue.float(
                float("nan") if precision is None else precision
            ),
            **report_metadata(path),
        }
    )
