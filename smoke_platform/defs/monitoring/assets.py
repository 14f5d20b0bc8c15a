"""The stream worker's daily outputs as Dagster assets, so lineage runs from the raw data
and the model to live predictions. The files stay where the worker wrote them (never
copied or modified); materialising a partition records what is there."""

from pathlib import Path

import dagster as dg
import pandas as pd

from smoke_platform.defs.common.resources import PlatformSettingsResource
from smoke_platform.defs.monitoring.partitions import stream_dates


def stream_dir(settings: PlatformSettingsResource) -> Path:
    return Path(settings.data_dir, "processed_stream")


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
