"""Model performance and drift every 12 hours; historical insights weekly on Sunday."""

import dagster as dg

from smoke_platform.defs.common.automation import utc_schedule

performance_job = dg.define_asset_job(
    "performance_job",
    selection=["model_performance_report", "feature_drift"],
    description="Model performance on labelled live data vs training, and feature drift.",
)

performance_job_schedule = utc_schedule(performance_job, "0 */12 * * *")

insights_job = dg.define_asset_job(
    "insights_job",
    selection=["weekly_insights"],
    description="The week in the stream.",
)

# Sundays 03:00 UTC, after the nightly training.
insights_job_schedule = utc_schedule(insights_job, "0 3 * * 0")
