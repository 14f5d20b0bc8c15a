"""Notice new days of stream output: add the partition, request its materialisation."""

import dagster as dg

from smoke_platform.defs.common.resources import PlatformSettingsResource
from smoke_platform.defs.monitoring.assets import stream_dir, stream_predictions
from smoke_platform.defs.monitoring.partitions import stream_dates

stream_predictions_job = dg.define_asset_job(
    "stream_predictions_job",
    selection=[stream_predictions],
    partitions_def=stream_dates,
)


@dg.sensor(
    job=stream_predictions_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def stream_partition_sensor(
    context: dg.SensorEvaluationContext, settings: PlatformSettingsResource
) -> dg.SensorResult:
    """A partition per date folder the worker writes; a run whenever a day's files change."""
    root = stream_dir(settings) / "predictions"
    days = sorted(p.name.split("=", 1)[1] for p in root.glob("date=*") if p.is_dir())
    known = set(context.instance.get_dynamic_partitions(stream_dates.name or ""))
    requests = []
    for day in days:
        files = sorted((root / f"date={day}").glob("*.parquet"))
        # The run key changes when the day's newest file changes: one run per update.
        version = f"{len(files)}-{max(f.stat().st_mtime_ns for f in files)}" if files else "0"
        requests.append(dg.RunRequest(run_key=f"{day}:{version}", partition_key=day))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[
            stream_dates.build_add_request([d for d in days if d not in known])
        ],
    )
