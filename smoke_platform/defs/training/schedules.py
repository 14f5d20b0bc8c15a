"""Training job: re-check the raw data, train, gate, report, rebuild the bento. Daily 02:00."""

import dagster as dg

from smoke_platform.defs.common.automation import utc_schedule

training_job = dg.define_asset_job(
    "training_job",
    selection=(
        dg.AssetSelection.groups("training", "serving")
        # Re-run the raw data's blocking checks first: never train on data that fails them.
        | dg.AssetSelection.checks_for_assets(dg.AssetKey("raw_sensor_readings"))
    ),
    description="Train candidates, promote only a better model, build the bento.",
    op_retry_policy=dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL),
)

training_job_schedule = utc_schedule(training_job, "0 2 * * *")
