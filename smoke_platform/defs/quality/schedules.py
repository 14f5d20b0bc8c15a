"""Data-quality job: reload raw readings, run the blocking checks, rewrite the report."""

import dagster as dg

from smoke_platform.defs.common.automation import utc_schedule

data_quality_job = dg.define_asset_job(
    "data_quality_job",
    selection=dg.AssetSelection.assets("raw_sensor_readings", "data_quality_report"),
    description="Reload raw readings, run the blocking quality checks, write the report.",
)

data_quality_job_schedule = utc_schedule(data_quality_job, "0 */6 * * *")
