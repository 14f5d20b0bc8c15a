"""Blocking data-quality checks on the raw readings, one per pandera quality schema."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from smoke_platform.core.quality import (
    CEILING_TOLERANCE,
    CheckOutcome,
    ceiling_ranges,
    ceiling_shares,
    ceilings_outside,
    quality_schemas,
    run_check,
)
from smoke_platform.defs.common.resources import PlatformSettingsResource
from smoke_platform.defs.ingest.assets import raw_sensor_readings

_DESCRIPTIONS = {
    "schema": "every contract column is present with its dtype",
    "no_nulls": "required fields are never null",
    "physical_ranges": "values lie within the sensors' physical ranges",
    "unique_readings": "no two readings share sensor_id and ts",
    "time_ordered": "ts strictly increases within each recording session",
    "no_stuck_sensors": "no continuously varying channel repeats one value for 10 minutes",
}


def check_name(name: str) -> str:
    return f"raw_sensor_readings_{name}"


def check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    """A Dagster check result naming the column, the count and sample bad values."""
    return dg.AssetCheckResult(
        check_name=check_name(outcome.name),
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.describe()[:2000],
        metadata={
            "failure_count": dg.MetadataValue.int(outcome.failure_count),
            "failures_by_column": dg.MetadataValue.json(outcome.by_column),
        },
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            check_name(name), asset=raw_sensor_readings, blocking=True, description=desc
        )
        for name, desc in _DESCRIPTIONS.items()
    ],
    can_subset=True,
)
def raw_sensor_readings_quality(
    context: dg.AssetCheckExecutionContext, raw_sensor_readings: pd.DataFrame
) -> Iterator[dg.AssetCheckResult]:
    """Pandera quality schemas as blocking checks: a failure stops downstream assets."""
    wanted = {key.name for key in context.selected_asset_check_keys}
    for name in quality_schemas():
        if check_name(name) in wanted:
            yield check_result(run_check(name, raw_sensor_readings))


@dg.asset_check(asset=raw_sensor_readings, blocking=False)
def raw_sensor_readings_ceiling_share(
    settings: PlatformSettingsResource, raw_sensor_readings: pd.DataFrame
) -> dg.AssetCheckResult:
    """How often each channel sits at its sensor's ceiling stays within what the real
    reference readings show (warning: a saturated fleet, or simulated data that saturates
    where real sensors do not)."""
    from smoke_platform.reference import REFERENCE_CSV, load_reference

    ranges = ceiling_ranges(load_reference(settings.reference_csv or str(REFERENCE_CSV)))
    shares = ceiling_shares(raw_sensor_readings)
    outside = ceilings_outside(shares, ranges)
    return dg.AssetCheckResult(
        passed=not outside,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "; ".join(outside)
            if outside
            else f"every channel's share at its ceiling within the real readings' range "
            f"(+/- {CEILING_TOLERANCE:.0%})"
        )[:2000],
        metadata={
            "ceiling_share": dg.MetadataValue.json({c: round(v, 6) for c, v in shares.items()}),
            "real_range": dg.MetadataValue.json({c: list(r) for c, r in ranges.items()}),
        },
    )
