"""The Dagster code location: graph snapshot, schedules, blocking checks, the report."""

import re
import subprocess
import sys

import dagster as dg
import pytest

from smoke_platform.definitions import defs
from smoke_platform.defs.common.resources import LocalFilesIOManager, PlatformSettingsResource
from smoke_platform_tests.conftest import assert_html_twin

pytestmark = pytest.mark.dagster

QUALITY_ASSETS = {"raw_sensor_readings", "data_quality_report"}
EXPECTED_ASSETS = QUALITY_ASSETS | {
    "training_dataset",
    "candidate_models",
    "smoke_classifier",
    "training_report",
    "real_reference_evaluation",
    "smoke_detector_bento",
    "stream_predictions",
    "windowed_analytics",
    "operator_labels",
    "model_performance_report",
    "feature_drift",
    "weekly_insights",
    "stream_table_compaction",
    "stream_table_retention",
}
RAW_CHECKS = {
    f"raw_sensor_readings_{n}"
    for n in (
        "schema",
        "no_nulls",
        "physical_ranges",
        "unique_readings",
        "time_ordered",
        "no_stuck_sensors",
    )
}
CEILING = "raw_sensor_readings_ceiling_share"
EXPECTED_CHECKS = RAW_CHECKS | {
    CEILING,
    "training_dataset_no_leakage_features",
    "training_dataset_sessions_disjoint",
    "challenger_recall",
    "challenger_false_alarm_rate",
    "challenger_detection_latency",
    "model_performance_report_no_degradation",
    "feature_drift_below_threshold",
    "champion_meets_the_real_reference_targets",
}


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return defs()


def test_asset_graph_snapshot(definitions):
    graph = definitions.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == EXPECTED_ASSETS
    checks = {k.name for k in graph.asset_check_keys}
    assert checks == EXPECTED_CHECKS
    report = graph.get(dg.AssetKey("data_quality_report"))
    assert report.parent_keys == {dg.AssetKey("raw_sensor_readings")}
    lineage = ["raw_sensor_readings", "training_dataset", "candidate_models", "smoke_classifier"]
    for parent, child in zip(lineage, [*lineage[1:], "smoke_detector_bento"], strict=True):
        assert dg.AssetKey(parent) in graph.get(dg.AssetKey(child)).parent_keys
    # ... and on from the model to the live outputs and the reports over them.
    live = {
        "stream_predictions": {"smoke_classifier"},
        "windowed_analytics": {"smoke_classifier"},
        "operator_labels": {"stream_predictions"},
        "model_performance_report": {"stream_predictions", "operator_labels"},
        "feature_drift": {"stream_predictions", "training_dataset"},
        "weekly_insights": {"stream_predictions", "windowed_analytics"},
    }
    for child, parents in live.items():
        assert graph.get(dg.AssetKey(child)).parent_keys == {dg.AssetKey(p) for p in parents}
    # Degradation, drift and saturation warn (the drift sensor acts on drift); the rest block.
    warnings_only = {
        CEILING,
        "model_performance_report_no_degradation",
        "feature_drift_below_threshold",
        "champion_meets_the_real_reference_targets",
    }
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).blocking == (key.name not in warnings_only), key


def test_performance_schedule_every_twelve_hours(definitions):
    schedule = definitions.resolve_schedule_def("performance_job_schedule")
    assert (schedule.cron_schedule, schedule.job_name) == ("0 */12 * * *", "performance_job")


def test_weekly_insights_on_sundays_and_drift_retrains(definitions):
    schedule = definitions.resolve_schedule_def("insights_job_schedule")
    assert (schedule.cron_schedule, schedule.job_name) == ("0 3 * * 0", "insights_job")
    retention = definitions.resolve_schedule_def("stream_table_retention_job_schedule")
    assert (retention.cron_schedule, retention.job_name) == (
        "0 4 * * *",
        "stream_table_retention_job",
    )
    assert definitions.resolve_sensor_def("drift_sensor").job_name == "training_job"
    performance = definitions.resolve_job_def("performance_job")
    assert {k.to_user_string() for k in performance.asset_layer.selected_asset_keys} == {
        "model_performance_report",
        "feature_drift",
    }


def test_verdicts_reach_labels_and_training_through_one_sensor(definitions):
    sensor = definitions.resolve_sensor_def("verdicts_sensor")
    assert {j.name for j in sensor.jobs} == {"operator_labels_job", "training_job"}
    labels = definitions.resolve_job_def("operator_labels_job")
    assert labels.partitions_def.name == "stream_dates"


def test_without_a_broker_the_verdicts_sensor_skips_naming_the_setting():
    import time

    from smoke_platform.defs.common.resources import (
        KafkaResource,
        ModelStoreResource,
        PlatformSettingsResource,
        TrainingSettingsResource,
    )
    from smoke_platform.defs.monitoring.outcomes import verdicts_sensor

    resources = {
        "settings": PlatformSettingsResource(),
        "kafka": KafkaResource(kafka_bootstrap="127.0.0.1:9"),
        "training": TrainingSettingsResource(),
        "model_store": ModelStoreResource(),
    }
    started = time.monotonic()
    with dg.build_sensor_context(resources=resources) as context:
        result = verdicts_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "127.0.0.1:9 (SMOKE_KAFKA_BOOTSTRAP)" in (result.skip_message or "")
    assert time.monotonic() - started < 20  # well inside a sensor's 60 s evaluation limit


def test_quality_schedule_every_six_hours(definitions):
    schedule = definitions.resolve_schedule_def("data_quality_job_schedule")
    assert schedule.cron_schedule == "0 */6 * * *"
    assert schedule.job_name == "data_quality_job"
    job = definitions.resolve_job_def("data_quality_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == QUALITY_ASSETS


def test_definitions_validate_cli():
    """`dagster definitions validate` is what CI and a deployment run first."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "definitions",
            "validate",
            "-m",
            "smoke_platform.definitions",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def _resources(tmp_path, **settings):
    s = PlatformSettingsResource(
        data_dir=str(tmp_path / "data"), reports_dir=str(tmp_path / "reports"), **settings
    )
    return {"settings": s, "io_manager": LocalFilesIOManager(settings=s)}


def _assets(_definitions):
    """The unbound asset and check definitions, so tests can supply their own resources."""
    from smoke_platform.defs.ingest.assets import raw_sensor_readings
    from smoke_platform.defs.quality.assets import data_quality_report
    from smoke_platform.defs.quality.checks import (
        raw_sensor_readings_ceiling_share,
        raw_sensor_readings_quality,
    )

    return [
        raw_sensor_readings,
        raw_sensor_readings_quality,
        raw_sensor_readings_ceiling_share,
        data_quality_report,
    ]


def test_generated_graph_materialises_with_report(definitions, tmp_path):
    result = dg.materialize(
        _assets(definitions), resources=_resources(tmp_path, rows=5_000, seed=11)
    )
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == RAW_CHECKS | {CEILING}
    assert all(evaluations[name].passed for name in RAW_CHECKS)
    # The simulator pins TVOC at the SGP30's ceiling where real sensors never sit: a warning.
    ceiling = evaluations[CEILING]
    assert not ceiling.passed and ceiling.severity == dg.AssetCheckSeverity.WARN
    assert "tvoc_ppb" in ceiling.description and "real sensors 0.0%-0.0%" in ceiling.description
    share = ceiling.metadata["ceiling_share"].value["tvoc_ppb"]
    assert share > 0.01
    raw = result.asset_materializations_for_node("raw_sensor_readings")[0].metadata
    assert raw["dagster/row_count"].value == 5_000
    assert 0 < raw["fire_share"].value < 1
    report = tmp_path / "reports" / "data_quality" / "report.md"
    assert_html_twin(report, charts=2)
    text = report.read_text()
    assert "| raw_sensor_readings" not in text  # check names are short in the table
    assert "physical_ranges" in text and "![" in text
    assert (report.parent / "distributions.png").stat().st_size > 10_000
    section = text.split("## Readings at the sensor's ceiling", 1)[1]
    assert re.search(rf"\| tvoc_ppb +\| +60,000 +\| +{share:.4g} ", section), section
    assert "**Outside the real range:** tvoc_ppb" in section


def test_kaggle_csv_source(definitions, tmp_path, kaggle_sample_csv):
    result = dg.materialize(
        _assets(definitions), resources=_resources(tmp_path, kaggle_csv=str(kaggle_sample_csv))
    )
    assert result.success
    meta = result.asset_materializations_for_node("raw_sensor_readings")[0].metadata
    assert meta["dagster/row_count"].value == 6
    assert meta["sessions"].value == 2
    assert meta["source"].value == str(kaggle_sample_csv)
    [ceiling] = [e for e in result.get_asset_check_evaluations() if e.check_name == CEILING]
    assert ceiling.passed  # real readings, within the real range


def test_failing_check_blocks_downstream(definitions, tmp_path, kaggle_sample_csv):
    bad = tmp_path / "bad.csv"
    lines = kaggle_sample_csv.read_text().splitlines()
    lines[2] = lines[2].replace(",56.67,", ",156.67,")  # humidity 156.67 %
    bad.write_text("\n".join(lines) + "\n")
    result = dg.materialize(
        _assets(definitions),
        resources=_resources(tmp_path, kaggle_csv=str(bad)),
        raise_on_error=False,
    )
    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == ["raw_sensor_readings_physical_ranges"]
    assert "humidity_pct" in failed[0].description and "156.67" in failed[0].description
    assert "1 bad rows" in failed[0].description
    assert not result.asset_materializations_for_node("data_quality_report")
    assert not (tmp_path / "reports" / "data_quality" / "report.md").exists()


def test_demo_materialises_everything_but_stream_monitoring_first(definitions):
    from smoke_platform.runs import MONITORING_REPORTS, selected_keys

    monitoring = {
        k.to_user_string()
        for k in dg.AssetSelection.groups("monitoring").resolve(definitions.resolve_asset_graph())
    }
    assert monitoring == EXPECTED_ASSETS - {
        "raw_sensor_readings",
        "data_quality_report",
        "training_dataset",
        "candidate_models",
        "smoke_classifier",
        "training_report",
        "real_reference_evaluation",
        "smoke_detector_bento",
        "stream_table_compaction",
        "stream_table_retention",
    }
    maintenance = {"stream_table_compaction", "stream_table_retention"}
    assert {
        k.to_user_string()
        for k in dg.AssetSelection.groups("maintenance").resolve(definitions.resolve_asset_graph())
    } == maintenance
    first = {k.to_user_string() for k in selected_keys(definitions, "*")}
    assert first == EXPECTED_ASSETS - monitoring - maintenance
    later = {k.to_user_string() for k in selected_keys(definitions, MONITORING_REPORTS)}
    # The partitioned stream assets run per day (register_stream_days), the reports after.
    assert later == monitoring - {"stream_predictions", "windowed_analytics", "operator_labels"}
