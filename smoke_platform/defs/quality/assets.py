"""The data-quality report asset: a Markdown file with PNG plots, also shown in the UI."""

import dagster as dg
import pandas as pd

from smoke_platform.defs.common.resources import PlatformSettingsResource
from smoke_platform.reports.markdown import report_metadata
from smoke_platform.reports.quality import write_quality_report


@dg.asset(
    group_name="quality",
    kinds={"pandas", "markdown"},
    owners=["team:data-platform"],
    ins={"raw_sensor_readings": dg.AssetIn()},
)
def data_quality_report(
    context: dg.AssetExecutionContext,
    settings: PlatformSettingsResource,
    raw_sensor_readings: pd.DataFrame,
) -> dg.MaterializeResult:
    """Data-quality report (Markdown + PNG) over the raw readings."""
    from smoke_platform.reference import REFERENCE_CSV, load_reference

    path, metrics = write_quality_report(
        raw_sensor_readings,
        settings.report_dir("data_quality"),
        settings.kaggle_csv or "simulator",
        load_reference(settings.reference_csv or str(REFERENCE_CSV)),
    )
    context.log.info("data-quality report written to %s", path)
    meta: dict[str, dg.MetadataValue] = {
        **report_metadata(path),
    }
    meta.update({k: dg.MetadataValue.float(float(v)) for k, v in metrics.items()})
    return dg.MaterializeResult(metadata=meta)
