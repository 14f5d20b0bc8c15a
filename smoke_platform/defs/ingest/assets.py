"""Raw sensor readings: a real Kaggle-format CSV when configured, else the seeded simulator."""

import dagster as dg
import pandas as pd

from smoke_platform.core.io import read_kaggle_csv, to_canonical
from smoke_platform.core.schema import FIELDS
from smoke_platform.core.simulate import generate_kaggle
from smoke_platform.defs.common.resources import PlatformSettingsResource

READINGS_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(
            f.name,
            f.dtype,
            description=f"{f.description}"
            + (f" [{f.unit}], allowed {f.allowed()}" if f.unit else ""),
        )
        for f in FIELDS
    ]
)


def readings_metadata(df: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """Row count, sessions, sensors and class balance, shown in the Dagster UI."""
    labels = df["fire_alarm"].dropna()
    meta: dict[str, dg.MetadataValue] = {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "sessions": dg.MetadataValue.int(int(df["session_id"].nunique())),
        "sensors": dg.MetadataValue.int(int(df["sensor_id"].nunique())),
        "fire_share": dg.MetadataValue.float(float(labels.mean()) if len(labels) else 0.0),
        "fire_rows": dg.MetadataValue.int(int(labels.sum())),
        "first_ts": dg.MetadataValue.text(str(df["ts"].min())),
        "last_ts": dg.MetadataValue.text(str(df["ts"].max())),
        "dagster/column_schema": dg.MetadataValue.table_schema(READINGS_TABLE_SCHEMA),
    }
    if "scenario" in df.columns and df["scenario"].notna().any():
        counts = df.groupby("scenario")["session_id"].nunique().to_dict()
        meta["sessions_by_scenario"] = dg.MetadataValue.json(
            {str(k): int(v) for k, v in counts.items()}
        )
    return meta


@dg.asset(
    group_name="ingest",
    kinds={"pandas", "parquet"},
    owners=["team:data-platform"],
    tags={"layer": "raw"},
)
def raw_sensor_readings(
    context: dg.AssetExecutionContext, settings: PlatformSettingsResource
) -> dg.Output[pd.DataFrame]:
    """Sensor readings exactly as received (renamed to canonical columns, values untouched)."""
    if settings.kaggle_csv:
        context.log.info("loading Kaggle-format CSV %s", settings.kaggle_csv)
        df, source = to_canonical(read_kaggle_csv(settings.kaggle_csv)), settings.kaggle_csv
    else:
        df = to_canonical(generate_kaggle(settings.rows, settings.seed, settings.sensors))
        source = f"simulator(seed={settings.seed}, rows={settings.rows})"
    meta = readings_metadata(df)
    meta["source"] = dg.MetadataValue.text(source)
    version = fingerprint(df)
    meta["data_fingerprint"] = dg.MetadataValue.text(version)
    # The content's version: downstream runs record which data they read, and the
    # training sensor trains only when it changed.
    return dg.Output(df, metadata=meta, data_version=dg.DataVersion(version))


def fingerprint(df: pd.DataFrame) -> str:
    """A content hash, so downstream assets (and the model) can name the data they used."""
    return f"{int(pd.util.hash_pandas_object(df, index=False).sum()) & 0xFFFFFFFFFFFF:012x}"
