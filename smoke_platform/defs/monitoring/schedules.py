"""Model performance and drift every 12 hours; historical insights weekly on Sunday."""

import dagster as dg

performance_job = dg.define_asset_job(
    "performance_job",
    selection=["model_performance_report", "feature_drift"],
    description="Model performance on labelled live data vs training, and feature drift.",
)

performance_job_schedule = dg.ScheduleDefinition(
    job=performance_job,
    cron_schedule="0 */12 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

insights_job = dg.define_asset_job(
    "insights_job",
    selection=["weekly_insights"],
    description="The week in the stream, then retention of old stream output.",
)

insights_job_schedule = dg.ScheduleDefinition(
    job=insights_job,
    cron_schedule="0 3 * * 0",  # Sundays 03:00 UTC, after the nightly training
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
