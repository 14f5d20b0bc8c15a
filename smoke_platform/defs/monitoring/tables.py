"""Maintenance of the stream's Delta tables (`streaming.tables`), as assets on schedules.

- `stream_table_compaction`, one partition per day: merges a day's small files (each
  worker commits one per table every `SMOKE_TABLE_COMMIT_INTERVAL_S`) into few large
  ones, in every table. Scheduled hourly for today, whose growing file list slows every
  commit, and at 00:30 for the day that closed.
- `stream_table_retention`: deletes the days past `SMOKE_STREAM_RETENTION_DAYS`, vacuums
  the files no version within `SMOKE_TABLE_VACUUM_RETENTION_HOURS` needs, and writes a
  checkpoint. Raw data is never touched. Scheduled daily.

Both record each table's version, files, rows and bytes, so the Dagster UI shows the
tables' history beside the runs that changed them.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from smoke_platform.defs.common.automation import utc_schedule
from smoke_platform.defs.common.resources import (
    MonitoringSettingsResource,
    PlatformSettingsResource,
)
from smoke_platform.defs.monitoring.partitions import stream_dates
from streaming.table_maintenance import compact, stats, tables_under, vacuum
from streaming.tables import output_days, remove_days_before

MAINTENANCE: dict[str, Any] = {
    "group_name": "maintenance",
    "owners": ["team:data-platform"],
    "kinds": {"deltalake"},
}


def stream_tables(settings: PlatformSettingsResource) -> dict[str, Path]:
    """Every stream table: the worker's (predictions, alerts, trouble) and the Spark
    job's windows once they are a table."""
    found = tables_under(settings.stream_root)
    if (settings.windowed_root / "_delta_log").is_dir():
        found["windows"] = settings.windowed_root
    return found


def _table_metadata(tables: dict[str, Path]) -> dict[str, Any]:
    return {
        f"{name}_{key}": value
        for name, path in tables.items()
        for key, value in stats(path).items()
    }


@dg.asset(partitions_def=stream_dates, deps=["stream_predictions"], **MAINTENANCE)
def stream_table_compaction(
    context: dg.AssetExecutionContext, settings: PlatformSettingsResource
) -> dg.MaterializeResult:
    """One day of every stream table compacted into few large files (one commit each,
    while the workers go on appending; readers of earlier versions are unaffected until
    the files are vacuumed)."""
    day = context.partition_key
    tables = stream_tables(settings)
    if not tables:
        raise dg.Failure(f"no stream tables under {settings.stream_root}")
    merged = {}
    for name, path in tables.items():
        if day in output_days(path):
            merged[name] = compact(path, day)
            context.log.info("%s %s: %s", name, day, merged[name])
    return dg.MaterializeResult(
        metadata={
            "day": day,
            "files_removed": sum(m["files_removed"] for m in merged.values()),
            "files_added": sum(m["files_added"] for m in merged.values()),
            **_table_metadata(tables),
        }
    )


@dg.asset(**MAINTENANCE)
def stream_table_retention(
    context: dg.AssetExecutionContext,
    settings: PlatformSettingsResource,
    monitoring: MonitoringSettingsResource,
) -> dg.MaterializeResult:
    """Stream output past retention deleted (raw data is always kept), unreferenced files
    vacuumed, a checkpoint written."""
    import pandas as pd

    cutoff = (
        pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=monitoring.stream_retention_days)
    ).strftime("%Y-%m-%d")
    removed = [
        *[
            d
            for kind in ("predictions", "alerts", "trouble")
            for d in remove_days_before(settings.stream_root, cutoff, kind)
        ],
        *remove_days_before(settings.windowed_root, cutoff),
    ]
    tables = stream_tables(settings)
    vacuumed = {
        name: len(vacuum(path, monitoring.table_vacuum_retention_hours))
        for name, path in tables.items()
    }
    context.log.info("removed %s; vacuumed %s", removed, vacuumed)
    return dg.MaterializeResult(
        metadata={
            "cutoff": cutoff,
            "removed_past_retention": dg.MetadataValue.json(removed),
            "files_vacuumed": dg.MetadataValue.json(vacuumed),
            **_table_metadata(tables),
        }
    )


compaction_job = dg.define_asset_job(
    "stream_table_compaction_job",
    selection=[stream_table_compaction],
    description="Compact one day of every stream table.",
)


@dg.schedule(
    job=compaction_job,
    cron_schedule="30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def stream_table_compaction_schedule(
    context: dg.ScheduleEvaluationContext,
) -> list[dg.RunRequest] | dg.SkipReason:
    """Every hour at :30 UTC, today's partition (the workers append to it all day, and a
    table's commits slow down as its files grow); at 00:30 the day that just closed too."""
    at = context.scheduled_execution_time
    days = [at.strftime("%Y-%m-%d")]
    if at.hour == 0:
        days.insert(0, (at - timedelta(days=1)).strftime("%Y-%m-%d"))
    known = [d for d in days if context.instance.has_dynamic_partition("stream_dates", d)]
    if not known:
        return dg.SkipReason(f"no stream output on {' or '.join(days)}")
    return [
        dg.RunRequest(run_key=f"compact-{day}-{at:%Y%m%dT%H}", partition_key=day) for day in known
    ]


retention_job = dg.define_asset_job(
    "stream_table_retention_job",
    selection=[stream_table_retention],
    description="Delete stream output past retention, vacuum, checkpoint.",
)

# 04:00 UTC, after the nightly compaction and training.
retention_job_schedule = utc_schedule(retention_job, "0 4 * * *")
