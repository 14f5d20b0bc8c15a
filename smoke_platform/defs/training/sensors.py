"""Start training when the raw data changed: a new materialisation of the same data (the
6-hourly quality job re-reads it) trains nothing."""

import dagster as dg

from smoke_platform.defs.training.schedules import training_job

RAW = dg.AssetKey("raw_sensor_readings")
DATASET = dg.AssetKey("training_dataset")
DATA_VERSION_TAG = "dagster/data_version"
# Dagster tags each materialisation with the data versions of the inputs it read.
TRAINED_ON_TAG = f"dagster/input_data_version/{RAW.to_user_string()}"


def _tags(event: dg.EventLogEntry | None) -> dict[str, str]:
    mat = event.asset_materialization if event is not None else None
    return dict(mat.tags or {}) if mat is not None else {}


@dg.asset_sensor(
    asset_key=RAW,
    job=training_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def new_raw_data_sensor(
    context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
) -> dg.RunRequest | dg.SkipReason:
    """A training run when `raw_sensor_readings` lands with a data version (its content
    fingerprint) that the newest training dataset was not built from; the skip reason on
    the sensor's tick says why nothing ran."""
    version = _tags(asset_event).get(DATA_VERSION_TAG)
    dataset = context.instance.get_latest_materialization_event(DATASET)
    trained_on = _tags(dataset).get(TRAINED_ON_TAG)
    if version is not None and version == trained_on:
        return dg.SkipReason(
            f"raw readings unchanged (data version {version}): the current training dataset "
            f"(run {dataset.run_id if dataset else '?'}) was built from them"
        )
    landed = version or f"{asset_event.run_id or 'runless'}-{asset_event.timestamp:.6f}"
    context.log.info("raw readings changed (data version %s): requesting training", landed)
    return dg.RunRequest(
        run_key=f"raw_sensor_readings-{landed}",
        tags={"trigger": "new_raw_data", "raw_data_version": landed},
    )
