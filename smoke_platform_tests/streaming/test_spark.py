"""Spark windows over the real broker: equal to pandas, watermark semantics, restarts."""

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smoke_platform.core.features import add_rises
from smoke_platform.core.trouble import SILENT_INTERVALS
from streaming.admin import create_topics
from streaming.config import StreamSettings
from streaming.producer import ReadingProducer, produce, scenario_records
from streaming.spark_job import PERCENTILE_CHANNELS, STATS_CHANNELS, spark_session, start_query
from streaming.table_maintenance import stats
from streaming.tables import is_table, read_outputs

pytestmark = [pytest.mark.spark, pytest.mark.kafka]


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", app="smoke-tests")
    yield session
    session.stop()


def _topic(broker, name):
    create_topics(broker, {name: 3})
    return StreamSettings(kafka_bootstrap=broker, topic=name)


def _run(spark, settings, tmp, out="win", ckpt="ckpt", model_tag=None, alerts_topic=None):
    q = start_query(
        spark,
        settings.kafka_bootstrap,
        settings.topic,
        str(tmp / out),
        str(tmp / ckpt),
        available_now=True,
        model_tag=model_tag,
        alerts_topic=alerts_topic,
    )
    q.awaitTermination(600)
    return q


def _windows(tmp, out="win"):
    assert is_table(Path(tmp, out))  # a Delta table, written by Delta's Spark connector
    return read_outputs(Path(tmp, out), "")


def _reference(records: list[dict]) -> pd.DataFrame:
    """The same statistics in pandas: every 5-minute window sliding by 1 minute."""
    df = pd.DataFrame(records)
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601").dt.tz_localize(None)
    rows = []
    for start in pd.date_range(
        df["ts"].min().floor("min") - pd.Timedelta(minutes=4), df["ts"].max(), freq="1min"
    ):
        inside = df[(df["ts"] >= start) & (df["ts"] < start + pd.Timedelta(minutes=5))]
        for sensor, g in inside.groupby("sensor_id"):
            row = {"sensor_id": sensor, "window_start": start, "readings": len(g)}
            for ch in STATS_CHANNELS:
                row |= {
                    f"{ch}_mean": g[ch].mean(),
                    f"{ch}_min": g[ch].min(),
                    f"{ch}_max": g[ch].max(),
                    f"{ch}_std": g[ch].std(),
                }
            for ch in PERCENTILE_CHANNELS:
                # The inverted-CDF reading: an actual value, no interpolation.
                row |= {
                    f"{ch}_p{int(q * 100)}": np.quantile(g[ch], q, method="inverted_cdf")
                    for q in (0.5, 0.95)
                }
            row["tvoc_ppb_over_1000_share"] = (g["tvoc_ppb"] > 1000).mean()
            # The silent rule on the window's own intervals (core.trouble's bound).
            gaps = np.diff(np.sort(g["ts"].astype("int64").to_numpy() / 1e9))
            row["max_gap_s"] = gaps.max() if len(gaps) else 0.0
            bound = max(60.0, SILENT_INTERVALS * (statistics.median(gaps) if len(gaps) else 0.0))
            row["silent"] = bool(row["max_gap_s"] > bound)
            rows.append(row)
    return pd.DataFrame(rows)


def test_windows_equal_a_pandas_reference(spark, broker, tmp_path, served_model):
    settings = _topic(broker, "spark-ref")
    create_topics(broker, {"spark-ref-alerts": 1})
    records = scenario_records(["wood_fire", "cooking_steam"], seconds=600, seed=5)
    # The kitchen's sensor goes quiet for 130 s (its silence bound is 60 s).
    quiet = [r for r in records if r["sensor_id"] == "sensor-001"][200:330]
    records = [r for r in records if not any(r is q for q in quiet)]
    produce(records, settings, echo=lambda *_: None)
    _run(spark, settings, tmp_path, model_tag=served_model.version, alerts_topic="spark-ref-alerts")
    got = _windows(tmp_path)
    assert len(got.columns) >= 25 + 4
    ref = _reference(records)
    merged = got.merge(ref, on=["sensor_id", "window_start"], suffixes=("", "_ref"))
    assert len(merged) == len(got) > 10  # every emitted window has its reference
    for col in [c for c in ref.columns if c not in ("sensor_id", "window_start")]:
        np.testing.assert_allclose(merged[col], merged[f"{col}_ref"], rtol=1e-9, err_msg=col)
    assert (got["quality_score"] == 1.0).all()
    silent = got[got["silent"]]
    assert set(silent["sensor_id"]) == {"sensor-001"} and silent["max_gap_s"].min() > 130
    # Parity of training and Spark: each window's fire share and top probability are the
    # model's on the rises training computes over the whole stream (Spark keeps each
    # sensor's last 30 s in its state store between micro-batches).
    frame = add_rises(pd.DataFrame(records).assign(ts=lambda f: pd.to_datetime(f["ts"], utc=True)))
    scored = served_model.score(frame).assign(ts=frame["ts"].dt.tz_localize(None))
    scored["sensor_id"] = frame["sensor_id"]
    for row in merged.itertuples():
        inside = scored[
            (scored["sensor_id"] == row.sensor_id)
            & (scored["ts"] >= row.window_start)
            & (scored["ts"] < row.window_start + pd.Timedelta(minutes=5))
        ]
        assert row.fire_share == pytest.approx(inside["is_fire"].mean(), abs=1e-12)
        assert row.max_probability == pytest.approx(inside["probability"].max(), rel=1e-9)
    # The fire's windows alert, the kitchen's do not: a steam episode's onset rises too
    # and this small test model flags a few of its readings (3 % of a window at most),
    # far below a window's alerting share.
    fire = got[got["sensor_id"] == "sensor-000"]
    kitchen = got[got["sensor_id"] == "sensor-001"]
    assert fire["fire_share"].max() > 0.5 and kitchen["fire_share"].max() < 0.1
    assert fire["tvoc_spike"].any() or fire["temperature_rise"].any()
    # Window alerts reach smoke_alerts in the worker's alert schema.
    from streaming.admin import read_topic

    alerts = [json.loads(m.value()) for m in read_topic(broker, "spark-ref-alerts")]
    assert alerts and {a["sensor_id"] for a in alerts} == {"sensor-000"}
    assert {"alert_id", "event", "severity", "ts", "probability", "source"} <= set(alerts[0])


def _send(settings, rec):
    producer = ReadingProducer(settings)
    producer.send_raw(json.dumps(rec).encode(), rec["sensor_id"].encode())
    assert producer.flush() == 0


def test_late_data_within_watermark_counts_later_data_is_dropped(
    spark, broker, tmp_path, served_model
):
    settings = _topic(broker, "spark-late")
    tag = {"model_tag": served_model.version}
    records = scenario_records(["normal_indoor"], seconds=600, seed=6)
    produce(records, settings, echo=lambda *_: None)
    _run(spark, settings, tmp_path, **tag)
    end = pd.Timestamp(records[-1]["ts"])
    # 1 minute late (inside the 2-minute watermark) and 8 minutes late (every window it
    # belongs to closed already).
    on_time = {**records[-1], "ts": (end - pd.Timedelta(minutes=1)).isoformat()}
    too_late = {**records[-1], "ts": (end - pd.Timedelta(minutes=8, seconds=30)).isoformat()}
    for rec in (on_time, too_late):
        _send(settings, rec)
    # Advance event time so the affected windows close.
    _send(settings, {**records[-1], "ts": (end + pd.Timedelta(minutes=10)).isoformat()})
    q = _run(spark, settings, tmp_path, **tag)
    dropped = sum(
        op.get("numRowsDroppedByWatermark", 0)
        for p in q.recentProgress
        for op in p.get("stateOperators", [])
    )
    assert dropped >= 1  # the too-late reading, once per sliding window it would join
    got = _windows(tmp_path)
    counts = got.set_index("window_start")["readings"]
    expected = _reference(records).set_index("window_start")["readings"]
    late_window = (end - pd.Timedelta(minutes=1)).floor("min").tz_localize(None)
    assert counts[late_window] == expected[late_window] + 1  # counted
    dropped_window = (end - pd.Timedelta(minutes=8, seconds=30)).floor("min").tz_localize(None)
    assert counts[dropped_window] == expected[dropped_window]  # not counted


def test_restart_resumes_from_checkpoint_without_duplicates(spark, broker, tmp_path, served_model):
    settings = _topic(broker, "spark-restart")
    tag = {"model_tag": served_model.version}
    records = scenario_records(["wood_fire", "normal_indoor"], seconds=900, seed=8)
    half = len(records) // 2
    produce(records[:half], settings, echo=lambda *_: None)
    _run(spark, settings, tmp_path, **tag)
    first = _windows(tmp_path)
    produce(records[half:], settings, echo=lambda *_: None)
    _run(spark, settings, tmp_path, **tag)
    both = _windows(tmp_path)
    assert len(both) > len(first)
    assert not both.duplicated(["sensor_id", "window_start"]).any()
    # Killed after the table's commit but before the checkpoint recorded the batch: the
    # restarted query runs that batch again, and Delta skips it (txnAppId/txnVersion).
    commits = sorted((tmp_path / "ckpt" / "commits").glob("[0-9]*"), key=lambda f: int(f.name))
    last = int(commits[-1].name)
    commits[-1].unlink()
    commits[-1].with_name(f".{last}.crc").unlink(missing_ok=True)  # its checksum too
    version = stats(tmp_path / "win")["version"]
    _run(spark, settings, tmp_path, **tag)
    assert (tmp_path / "ckpt" / "commits" / str(last)).exists()  # the batch ran again
    assert stats(tmp_path / "win")["version"] == version  # ... and added no commit
    pd.testing.assert_frame_equal(_windows(tmp_path), both)
    # Same result as one uninterrupted query over everything.
    _run(spark, settings, tmp_path, out="once", ckpt="ckpt-once", **tag)
    once = _windows(tmp_path, "once")
    keys = ["sensor_id", "window_start"]
    pd.testing.assert_frame_equal(
        both.sort_values(keys)[[*keys, "readings", "tvoc_ppb_mean"]].reset_index(drop=True),
        once.sort_values(keys)[[*keys, "readings", "tvoc_ppb_mean"]].reset_index(drop=True),
    )
