"""The stream worker's daily outputs as Dagster assets, so lineage runs from the raw data
and the model to live predictions. The files stay where the worker wrote them (never
copied or modified); materialising a partition records what is there."""

from pathlib import Path

import dagster as dg
import pandas as pd

from smoke_platform.defs.common.resources import ModelStoreResource, PlatformSettingsResource
from smoke_platform.defs.monitoring.partitions import stream_dates


def stream_dir(settings: PlatformSettingsResource) -> Path:
    return Path(settings.stream_dir)


def read_day(root: Path, kind: str, date: str) -> pd.DataFrame:
    files = sorted((root / kind / f"date={date}").glob("*.parquet"))
    return (
        pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        if files
        else (pd.DataFrame())
    )


@dg.asset(
    group_name="monitoring",
    kinds={"kafka", "parquet"},
    owners=["team:data-platform"],
    partitions_def=stream_dates,
    deps=["smoke_classifier"],
)
def stream_predictions(
    context: dg.AssetExecutionContext, settings: PlatformSettingsResource
) -> dg.MaterializeResult:
    """One day of the stream worker's scored readings and alerts (data/processed_stream)."""
    date = context.partition_key
    root = stream_dir(settings)
    preds, alerts = read_day(root, "predictions", date), read_day(root, "alerts", date)
    if preds.empty:
        raise dg.Failure(f"no predictions under {root}/predictions/date={date}")
    opened = alerts[alerts["event"] == "open"] if not alerts.empty else alerts
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(preds),
            "sensors": int(preds["sensor_id"].nunique()),
            "fire_share": float(preds["is_fire"].mean()),
            "alerts_opened": len(opened),
            "scored_by": dg.MetadataValue.json(preds["scored_by"].value_counts().to_dict()),
            "model_versions": dg.MetadataValue.json(sorted(preds["model_version"].unique())),
            "path": dg.MetadataValue.path(str((root / "predictions" / f"date={date}").resolve())),
        }
    )


@dg.asset(
    group_name="monitoring",
    kinds={"markdown"},
    owners=["team:ml"],
    deps=[stream_predictions],
)
def model_performance_report(
    context: dg.AssetExecutionContext,
    settings: PlatformSettingsResource,
    model_store: ModelStoreResource,
) -> dg.MaterializeResult:
    """Recall, false alarms, latency and calibration on labelled live data vs training."""
    from smoke_platform.reports.performance import write_performance_report
    from streaming.sink import read_outputs

    preds = read_outputs(stream_dir(settings), "predictions")
    if preds.empty or preds["fire_alarm"].isna().all():
        raise dg.Failure("no labelled stream predictions yet (data/processed_stream)")
    version = str(preds["model_version"].mode().iloc[0])
    info = model_store.info(version)
    threshold = float(info["metadata"]["threshold"]) if info else 0.5
    training = info["metadata"].get("holdout_metrics", {}) if info else {}
    path, m = write_performance_report(
        preds, threshold, training, settings.report_dir("performance")
    )
    return dg.MaterializeResult(
        metadata={
            "report_path": dg.MetadataValue.path(str(path.resolve())),
            "report": dg.MetadataValue.md(path.read_text(encoding="utf-8")),
            "model_version": version,
            **{
                k: dg.MetadataValue.float(float(m[k]))
                for k in ("recall", "false_alarm_rate", "precision", "f1")
            },
            "training_recall": dg.MetadataValue.float(float(training.get("recall", float("nan")))),
            "training_false_alarm_rate": dg.MetadataValue.float(
                float(training.get("false_alarm_rate", float("nan")))
            ),
        }
    )
