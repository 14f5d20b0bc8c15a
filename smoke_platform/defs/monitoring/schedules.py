"""Model performance every 12 hours."""

import dagster as dg

performance_job = dg.define_asset_job(
    "performance_job",
    selection=["model_performance_report"],
    description="Model performance on labelled live data vs training.",
)

performance_job_schedule = dg.ScheduleDefinition(
    job=performance_job,
    cron_schedule="0 */12 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
