"""Drift requests retraining only when live data drifted; weekly insights and retention;
run failures and drift reach the webhook (a real HTTP endpoint)."""

import math

import dagster as dg
import pandas as pd
import pytest

from smoke_platform.core.modeling import training_frame
from smoke_platform.core.simulate import generate_readings
from smoke_platform.defs.common.resources import (
    LocalFilesIOManager,
    ModelStoreResource,
    MonitoringSettingsResource,
    NotifierResource,
    PlatformSettingsResource,
)
from smoke_platform.defs.monitoring.assets import feature_drift, weekly_insights
from smoke_platform.defs.monitoring.checks import feature_drift_below_threshold
from smoke_platform.defs.monitoring.sensors import drift_sensor
from smoke_platform.defs.monitoring.tables import stream_table_compaction, stream_table_retention
from smoke_platform.reports.insights import insights
from smoke_platform_tests.conftest import assert_html_twin
from streaming.table_maintenance import stats
from streaming.tables import Tables, output_days, read_outputs

pytestmark = pytest.mark.dagster


@pytest.fixture(scope="module")
def readings() -> pd.DataFrame:
    return generate_readings(n_rows=8_000, seed=3, n_sensors=4)


def _as_worker_output(root, readings: pd.DataFrame, first: int = 0) -> None:
    """Predictions exactly as the worker's sink writes them (label as the 'model')."""
    preds = readings.assign(
        ts=readings["ts"].map(lambda t: t.isoformat()),
        fire_alarm=readings["fire_alarm"].astype(float),
        probability=readings["fire_alarm"].astype(float),
        is_fire=readings["fire_alarm"].astype(bool),
        model_version="smoke_detector:v1",
        scored_by="service",
        anomaly=False,
        partition=0,
        offset=range(first, first + len(readings)),
    ).drop(columns=["cnt", "row_index"])
    Tables(root).append("predictions", preds)


def _drift_run(tmp_path, readings, live, webhook_url="", model_name="drift_no_champion"):
    settings = PlatformSettingsResource(
        data_dir=str(tmp_path / "data"),
        stream_dir=str(tmp_path / "stream"),
        reports_dir=str(tmp_path / "reports"),
    )
    io = LocalFilesIOManager(settings=settings)
    # The training data as the training job's IO manager stored it.
    training_frame(readings).to_parquet(settings.path("assets", "training_dataset.parquet"))
    _as_worker_output(tmp_path / "stream", live)
    resources = {
        "settings": settings,
        "io_manager": io,
        "monitoring": MonitoringSettingsResource(),
        "notifier": NotifierResource(webhook_url=webhook_url),
        "model_store": ModelStoreResource(model_name=model_name),
    }
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [
            dg.AssetSpec("training_dataset").with_io_manager_key("io_manager"),
            feature_drift,
            feature_drift_below_threshold,
        ],
        instance=instance,
        resources=resources,
        selection=[feature_drift],
    )
    ctx = dg.build_sensor_context(instance=instance, resources={"notifier": resources["notifier"]})
    # The daemon's path (cursor, resources): one tick over the latest materialisation.
    return result, drift_sensor.evaluate_tick(ctx), instance


def test_undrifted_live_data_requests_no_training(tmp_path, readings, webhook):
    result, decision, _ = _drift_run(tmp_path, readings, readings, webhook.url)
    meta = result.asset_materializations_for_node("feature_drift")[0].metadata
    assert meta["max_psi"].value < 0.01 and meta["drifted_features"].value == []
    [check] = result.get_asset_check_evaluations()
    assert check.passed
    assert decision.run_requests == [] and "no retraining" in decision.skip_message
    assert webhook.posts == []


def test_a_sensor_moved_to_another_room_requests_no_training(tmp_path, readings, webhook):
    # Only site-dependent columns move (a colder, higher room): the model ignores them.
    moved = readings.assign(
        temperature_c=readings["temperature_c"] + 15,
        pressure_hpa=readings["pressure_hpa"] - 50,
    )
    result, decision, _ = _drift_run(tmp_path, readings, moved, webhook.url)
    meta = result.asset_materializations_for_node("feature_drift")[0].metadata
    assert meta["drifted_features"].value == [] and meta["max_psi"].value < 0.25
    assert "no champion yet" in meta["features_from"].value
    site = meta["site_only_psi"].value
    assert "temperature_c" in site and "pressure_hpa" in site and "drifted" in site
    [check] = result.get_asset_check_evaluations()
    assert check.passed
    assert decision.run_requests == [] and webhook.posts == []
    text = (tmp_path / "reports" / "drift" / "report.md").read_text()
    assert "Site-dependent columns (not used by the model, never a trigger)" in text


def test_drift_of_a_feature_the_champion_uses_requests_training_naming_it(
    tmp_path, readings, webhook, served_model
):
    from smoke_platform_tests.conftest import MODEL_NAME

    # The fleet's VOC readings triple (a firmware change, a new sensor model).
    drifted = readings.assign(tvoc_ppb=readings["tvoc_ppb"] * 3)
    result, decision, _ = _drift_run(tmp_path, readings, drifted, webhook.url, MODEL_NAME)
    meta = result.asset_materializations_for_node("feature_drift")[0].metadata
    assert meta["features_from"].value == f"champion {served_model.version}"
    assert "tvoc_ppb" in meta["drifted_features"].value
    assert set(meta["drifted_features"].value) <= set(served_model.features)
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    [request] = decision.run_requests
    assert request.tags["smoke/trigger"] == "feature_drift"
    assert "tvoc_ppb" in request.tags["smoke/drifted_features"]
    assert "tvoc_ppb" in request.tags["smoke/reason"]
    assert float(request.tags["smoke/max_psi"]) == pytest.approx(meta["max_psi"].value, abs=1e-3)
    assert drift_sensor.job_name == "training_job"
    [post] = webhook.posts
    assert "retraining requested" in post["text"] and "tvoc_ppb" in post["text"]
    assert post["blocks"][0]["type"] == "section"
    assert (tmp_path / "reports" / "drift" / "psi.png").exists()


def test_drift_on_too_few_readings_is_reported_but_not_acted_on(tmp_path, readings, webhook):
    few = readings.iloc[:1_000].assign(tvoc_ppb=readings["tvoc_ppb"].iloc[:1_000] * 3)
    result, decision, _ = _drift_run(tmp_path, readings, few, webhook.url)
    meta = result.asset_materializations_for_node("feature_drift")[0].metadata
    assert meta["max_psi"].value > 0.25 and not meta["enough_data"].value
    assert meta["drifted_features"].value == []
    assert decision.run_requests == [] and "too few" in decision.skip_message
    assert "Not enough live data" in (tmp_path / "reports" / "drift" / "report.md").read_text()
    assert_html_twin(tmp_path / "reports" / "drift" / "report.md", charts=1)
    assert webhook.posts == []


def test_insights_equal_a_hand_computation():
    # s1: a labelled fire, one true alert. s2: a nuisance (cooking steam) scored as fire for
    # two readings, one false alert. s3: quiet.
    ts = [f"2026-11-2{d}T10:00:0{i}+00:00" for d in (2, 3) for i in range(3)]
    preds = pd.DataFrame(
        {
            "sensor_id": ["s1", "s1", "s2", "s2", "s3", "s3"],
            "session_id": ["a", "a", "b", "b", "c", "c"],
            "scenario": ["wood_fire", "wood_fire", "cooking_steam", "cooking_steam", "x", "x"],
            "ts": ts,
            "fire_alarm": [1.0, 1.0, 0.0, 0.0, 0.0, None],
            "is_fire": [True, True, True, True, False, False],
            "anomaly": [True, False, False, False, False, False],
        }
    )
    alerts = pd.DataFrame(
        [
            {
                "alert_id": "a1",
                "event": "open",
                "sensor_id": "s1",
                "ts": ts[0],
                "severity": "critical",
            },
            {
                "alert_id": "a1",
                "event": "close",
                "sensor_id": "s1",
                "ts": ts[1],
                "severity": "critical",
            },
            {
                "alert_id": "a2",
                "event": "open",
                "sensor_id": "s2",
                "ts": ts[2],
                "severity": "warning",
            },
        ]
    )
    f = insights(preds, alerts, pd.DataFrame())
    assert f["days"] == ["2026-11-22", "2026-11-23"]
    assert (f["sessions"], f["fire_sessions"], f["alerts_opened"]) == (3, 1, 2)
    assert f["alerts_by_severity"] == {"critical": 1, "warning": 1}
    assert f["alert_precision"] == 0.5
    assert f["noisy_sensors"].index[0] == "s2"
    assert f["noisy_sensors"].loc["s2"].tolist() == [2, 1]
    assert f["false_alarm_causes"]["false_alarm_readings"].to_dict() == {"cooking_steam": 2}
    assert f["daily"]["alerts_opened"].tolist() == [2, 0]
    assert f["daily"]["anomaly_share"].tolist() == pytest.approx([1 / 3, 0])


def _two_months(tmp_path, readings):
    """Stream output of today and of 40 days ago, old windows, and raw data."""
    stream, windowed = tmp_path / "stream", tmp_path / "windowed"
    today = pd.Timestamp.now(tz="UTC").normalize()
    old = readings.iloc[:100].assign(ts=today - pd.Timedelta(days=40))
    recent = readings.iloc[100:].assign(
        ts=today + pd.to_timedelta(range(len(readings) - 100), unit="s")
    )
    _as_worker_output(stream, old)
    _as_worker_output(stream, recent, first=100)
    (windowed / f"date={(today - pd.Timedelta(days=40)):%Y-%m-%d}").mkdir(parents=True)
    raw = tmp_path / "data" / "raw" / "readings.parquet"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(b"raw data is never removed")
    settings = PlatformSettingsResource(
        data_dir=str(tmp_path / "data"),
        stream_dir=str(stream),
        windowed_dir=str(windowed),
        reports_dir=str(tmp_path / "reports"),
    )
    return settings, today, raw


def test_weekly_insights_report(tmp_path, readings):
    settings, _today, _raw = _two_months(tmp_path, readings)
    result = dg.materialize([weekly_insights], resources={"settings": settings})
    meta = result.asset_materializations_for_node("weekly_insights")[0].metadata
    assert meta["readings"].value == len(readings)  # the old day is in the newest 7 days
    assert math.isnan(meta["alert_precision"].value)  # no alerts, so no precision
    report = (tmp_path / "reports" / "insights" / "report.md").read_text()
    assert_html_twin(tmp_path / "reports" / "insights" / "report.md", charts=1)
    assert (
        "Noisiest sensors" in report and (tmp_path / "reports" / "insights" / "week.png").exists()
    )


def test_retention_deletes_old_days_vacuums_and_keeps_raw_data(tmp_path, readings):
    settings, today, raw = _two_months(tmp_path, readings)
    stream = settings.stream_root
    before = stats(stream / "predictions")
    result = dg.materialize(
        [stream_table_retention],
        resources={
            "settings": settings,
            "monitoring": MonitoringSettingsResource(
                stream_retention_days=30, table_vacuum_retention_hours=0
            ),
        },
    )
    meta = result.asset_materializations_for_node("stream_table_retention")[0].metadata
    assert len(meta["removed_past_retention"].value) == 2  # old predictions + old windows
    assert output_days(stream, "predictions") == [f"{today:%Y-%m-%d}"]
    assert output_days(settings.windowed_root) == [] and raw.exists()
    assert meta["files_vacuumed"].value["predictions"] >= 1  # the old day's file is gone
    assert meta["predictions_rows"].value == len(readings) - 100 < before["rows"]
    assert meta["predictions_version"].value > before["version"]
    assert len(read_outputs(stream, "predictions")) == len(readings) - 100
    # a checkpoint: a new reader starts from it
    assert list((stream / "predictions" / "_delta_log").glob("*.checkpoint.parquet"))


def test_compaction_merges_a_days_files_and_keeps_every_row(tmp_path, readings):
    stream = tmp_path / "stream"
    day = readings.assign(ts=pd.Timestamp("2026-11-20T10:00:00Z"))
    for i in range(0, 600, 100):  # six commits, as six worker batches would
        _as_worker_output(stream, day.iloc[i : i + 100], first=i)
    before = read_outputs(stream, "predictions")
    settings = PlatformSettingsResource(stream_dir=str(stream), windowed_dir=str(tmp_path / "w"))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("stream_dates", ["2026-11-20"])
        result = dg.materialize(
            [stream_table_compaction],
            partition_key="2026-11-20",
            resources={"settings": settings},
            instance=instance,
        )
    meta = result.asset_materializations_for_node("stream_table_compaction")[0].metadata
    assert meta["files_removed"].value == 6 and meta["files_added"].value == 1
    assert meta["predictions_files"].value == 1
    after = read_outputs(stream, "predictions")
    pd.testing.assert_frame_equal(before, after)


def test_the_compaction_schedule_asks_for_today_hourly_and_for_the_day_that_closed(tmp_path):
    from datetime import UTC, datetime

    from smoke_platform.defs.monitoring.tables import stream_table_compaction_schedule

    def tick(instance, at):
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=at) as ctx:
            return stream_table_compaction_schedule(ctx)

    midnight, morning = (
        datetime(2026, 11, 21, 0, 30, tzinfo=UTC),
        datetime(2026, 11, 21, 9, 30, tzinfo=UTC),
    )
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        skipped = tick(instance, midnight)
        assert isinstance(skipped, dg.SkipReason) and "2026-11-20" in skipped.skip_message
        instance.add_dynamic_partitions("stream_dates", ["2026-11-20", "2026-11-21"])
        assert [r.partition_key for r in tick(instance, midnight)] == ["2026-11-20", "2026-11-21"]
        [today] = tick(instance, morning)
        assert today.partition_key == "2026-11-21" and today.run_key.endswith("T09")
