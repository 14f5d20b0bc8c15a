"""The platform's schedule policy, in one place: cron in UTC, running from the first deploy."""

from __future__ import annotations

import dagster as dg


def utc_schedule(job: dg.UnresolvedAssetJobDefinition, cron: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
