"""Stream output as daily-partitioned Dagster assets, discovered by a sensor."""

import json

import dagster as dg
import pandas as pd
import pytest

from smoke_platform.defs.common.resources import (
    MonitoringSettingsResource,
    PlatformSettingsResource,
)
from smoke_platform.defs.monitoring.assets import stream_predictions
from smoke_platform.defs.monitoring.partitions import stream_dates
from smoke_platform.defs.monitoring.sensors import stream_partition_sensor
from streaming.table_maintenance import stats
from streaming.tables import Tables

pytestmark = pytest.mark.dagster


def _worker_output(root, day, first, n, fire):
    """Files exactly as the worker writes them (its sink), for one day."""
    ts = pd.date_range(f"{day}T10:00:00Z", periods=n, freq="s").map(lambda t: t.isoformat())
    preds = pd.DataFrame(
        {
            "sensor_id": "sensor-000",
            "ts": ts,
            "probability": 0.9 if fire else 0.1,
            "is_fire": fire,
            "model_version": "smoke_detector:v1",
            "scored_by": "service",
            "partition": 0,
            "offset": range(first, first + n),
        }
    )
    alerts = (
        pd.DataFrame(
            [
                {
                    "alert_id": f"sensor-000@{ts[0]}",
                    "event": "open",
                    "ts": ts[0],
                    "sensor_id": "sensor-000",
                    "severity": "warning",
                }
            ]
        )
        if fire
        else (pd.DataFrame())
    )
    Tables(root).append("predictions", preds)
    Tables(root).append("alerts", alerts)


def test_a_partition_appears_for_each_day_of_stream_output(tmp_path):
    settings = PlatformSettingsResource(stream_dir=str(tmp_path / "processed_stream"))
    root = tmp_path / "processed_stream"
    _worker_output(root, "2026-11-26", 0, 50, fire=True)
    _worker_output(root, "2026-11-27", 50, 30, fire=False)
    resources = {"settings": settings, "monitoring": MonitoringSettingsResource()}
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=resources)
        result = stream_partition_sensor(ctx)
        [added] = result.dynamic_partitions_requests
        assert sorted(added.partition_keys) == ["2026-11-26", "2026-11-27"]
        assert sorted(r.partition_key for r in result.run_requests) == ["2026-11-26", "2026-11-27"]
        instance.add_dynamic_partitions(stream_dates.name, list(added.partition_keys))
        mat = dg.materialize(
            [stream_predictions],
            instance=instance,
            partition_key="2026-11-26",
            resources={"settings": settings},
            selection=[stream_predictions],
        )
        meta = mat.asset_materializations_for_node("stream_predictions")[0].metadata
        assert meta["dagster/row_count"].value == 50 and meta["alerts_opened"].value == 1
        # the table as the run read it: both days' rows, one commit per write so far
        assert meta["table_rows"].value == stats(root / "predictions")["rows"] > 50
        assert meta["table_version"].value == stats(root / "predictions")["version"] >= 1
        # A day that is already known asks for no new partition, and the same files for
        # no run at all; a new file for a finished day asks for one run of that day.
        again = stream_partition_sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
        )
        assert not again.dynamic_partitions_requests and not again.run_requests
        assert "nothing new to register" in again.skip_reason.skip_message
        _worker_output(root, "2026-11-27", 80, 10, fire=False)
        third = stream_partition_sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=again.cursor)
        )
        assert [r.partition_key for r in third.run_requests] == ["2026-11-27"]


def test_todays_growing_output_is_registered_at_most_every_refresh_interval(tmp_path):
    """A live stream writes a file per batch: today's new files wait for the refresh
    interval (a run per file was ~2,900 runs a day), a new day never waits."""
    from datetime import UTC, datetime, timedelta

    root = tmp_path / "processed_stream"
    settings = PlatformSettingsResource(
        stream_dir=str(root), windowed_dir=str(tmp_path / "windowed")
    )
    resources = {"settings": settings, "monitoring": MonitoringSettingsResource()}
    today = datetime.now(UTC).date()
    _worker_output(root, today.isoformat(), 0, 20, fire=False)

    def tick(instance, cursor):
        ctx = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
        return stream_partition_sensor(ctx)

    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(instance, None)
        assert [r.partition_key for r in first.run_requests] == [today.isoformat()]
        cursor = first.cursor
        for batch in range(1, 6):  # five more worker batches within the hour
            _worker_output(root, today.isoformat(), batch * 20, 20, fire=False)
            result = tick(instance, cursor)
            assert not result.run_requests, batch
            assert "at most every 60 min" in result.skip_reason.skip_message
            cursor = result.cursor
        tomorrow = (today + timedelta(days=1)).isoformat()
        _worker_output(root, tomorrow, 120, 5, fire=False)
        result = tick(instance, cursor)
        assert [r.partition_key for r in result.run_requests] == [tomorrow]
        # An hour later, today's files that grew meanwhile are registered once.
        state = json.loads(result.cursor)
        for name in state:
            state[name]["at"] -= 3_601
        later = tick(instance, json.dumps(state))
        assert [r.partition_key for r in later.run_requests] == [today.isoformat()]


def test_spark_windows_become_partitions_of_windowed_analytics(tmp_path):
    """A day of the Spark job's window files: the sensor asks for that asset only."""
    from smoke_platform.defs.monitoring.assets import windowed_analytics

    windowed = tmp_path / "windowed"
    day = windowed / "date=2026-11-27"
    day.mkdir(parents=True)
    starts = pd.date_range("2026-11-27T10:00:00", periods=4, freq="min")
    pd.DataFrame(
        {
            "sensor_id": ["s1", "s1", "s2", "s2"],
            "window_start": starts,
            "window_end": starts + pd.Timedelta(minutes=5),
            "quality_score": [1.0, 0.8, 1.0, 1.0],
            "anomaly": [False, True, False, False],
            "fire_share": [0.0, 0.9, 0.1, 0.6],
        }
    ).to_parquet(day / "batch-00000003.parquet", index=False)
    settings = PlatformSettingsResource(
        stream_dir=str(tmp_path / "stream"), windowed_dir=str(windowed)
    )
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(
            instance=instance,
            resources={"settings": settings, "monitoring": MonitoringSettingsResource()},
        )
        result = stream_partition_sensor(ctx)
        [request] = result.run_requests
        assert request.partition_key == "2026-11-27"
        assert request.asset_selection == [windowed_analytics.key]
        instance.add_dynamic_partitions(stream_dates.name, ["2026-11-27"])
        mat = dg.materialize(
            [windowed_analytics],
            instance=instance,
            partition_key="2026-11-27",
            resources={"settings": settings},
        )
        meta = mat.asset_materializations_for_node("windowed_analytics")[0].metadata
    assert meta["dagster/row_count"].value == 4 and meta["sensors"].value == 2
    assert meta["mean_quality_score"].value == pytest.approx(0.95)
    assert (meta["anomalous_windows"].value, meta["fire_windows"].value) == (1, 2)


def test_the_cli_registers_stream_days_from_the_configured_folders(tmp_path, monkeypatch):
    """`smoke demo` registers the stream days itself; it must read SMOKE_STREAM_DIR's
    value (outside a run an unresolved EnvVar field reads as the variable's name)."""
    from smoke_platform.runs import register_stream_days

    root = tmp_path / "configured-stream"
    _worker_output(root, "2026-11-20", 0, 40, fire=False)
    monkeypatch.setenv("SMOKE_STREAM_DIR", str(root))
    monkeypatch.setenv("SMOKE_WINDOWED_DIR", str(tmp_path / "no-windows"))
    assert register_stream_days() == ["2026-11-20"]
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("stream_predictions"))
    assert event is not None and event.asset_materialization.partition == "2026-11-20"
    assert event.asset_materialization.metadata["dagster/row_count"].value == 40
