"""Data-quality job: reload raw readings, run the blocking checks, rewrite the report."""

import dagster as dg

data_quality_job = dg.define_asset_job(
    "data_quality_job",
    selection=dg.AssetSelection.assets("raw_sensor_readings", "data_quality_report"),
    description="Reload raw readings, run the blocking quality checks, write the report.",
)

data_quality_job_schedule = dg.ScheduleDefinition(
    job=data_quality_job,
    cron_schedule="0 */6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
