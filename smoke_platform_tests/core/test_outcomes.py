"""Operators' verdicts as labels and as the alerts' real record (pure rules)."""

import numpy as np
import pandas as pd
import pytest

from smoke_platform.core.modeling import operator_frame, session_holdout, training_frame
from smoke_platform.core.outcomes import (
    cap_per_sensor,
    is_operator,
    labelled_readings,
    operator_figures,
    outcome_figures,
    outcomes_table,
)
from smoke_platform.core.simulate import generate_readings
from smoke_platform.core.verdicts import Lifecycle


def _alert(sensor, raised, closed=None, verdict=None, acked=None, **kw):
    return Lifecycle(
        f"{sensor}@{raised}",
        "alert",
        sensor,
        "critical",
        raised,
        closed,
        acknowledged_by="Ana" if acked else None,
        acknowledged_at=acked,
        verdict=verdict,
        **kw,
    )


def _predictions(sensors, start="2026-12-01T10:00:00+00:00", n=60):
    """Scored readings at 1 Hz per sensor, with real measurements from the simulator."""
    base = generate_readings(n_rows=n * len(sensors), seed=5, n_sensors=1).reset_index(drop=True)
    stamps = pd.date_range(start, periods=n, freq="s")
    rows = []
    for i, sensor in enumerate(sensors):
        part = base.iloc[i * n : (i + 1) * n].copy()
        part["sensor_id"] = sensor
        part["ts"] = [t.isoformat() for t in stamps]
        part["fire_alarm"] = np.nan  # live readings carry no label
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def test_a_verdict_labels_its_sensors_readings_from_open_to_close_and_nothing_else():
    preds = _predictions(["a", "b"])
    outcomes = outcomes_table(
        [
            _alert("a", "2026-12-01T10:00:10+00:00", "2026-12-01T10:00:29+00:00", "false_alarm"),
            _alert("b", "2026-12-01T10:00:40Z", "2026-12-01T10:00:49Z", "fire"),
            _alert("a", "2026-12-01T10:00:50+00:00", "2026-12-01T10:00:55+00:00", "test"),
            _alert("b", "2026-12-01T10:00:00+00:00", None, None),  # unresolved
        ]
    )
    labels = labelled_readings(outcomes, preds)
    by_alert = labels.groupby("alert_id")
    assert by_alert.size().to_dict() == {
        "a@2026-12-01T10:00:10+00:00": 20,
        "b@2026-12-01T10:00:40Z": 10,
    }
    assert by_alert["fire_alarm"].unique().map(list).to_dict() == {
        "a@2026-12-01T10:00:10+00:00": [0],
        "b@2026-12-01T10:00:40Z": [1],
    }
    false_alarm = labels[labels["verdict"] == "false_alarm"]
    assert set(false_alarm["sensor_id"]) == {"a"}
    assert false_alarm["ts"].min() == "2026-12-01T10:00:10+00:00"
    assert false_alarm["ts"].max() == "2026-12-01T10:00:29+00:00"
    assert set(labels["session_id"]) == set(labels["alert_id"])  # each alert one session
    assert is_operator(labels).all()
    assert outcomes["day"].unique().tolist() == ["2026-12-01"]


def test_an_alert_still_open_is_labelled_to_its_resolution():
    preds = _predictions(["a"])
    rec = _alert("a", "2026-12-01T10:00:50+00:00", None, "false_alarm")
    rec.resolved_at = "2026-12-01T10:00:54+00:00"
    assert len(labelled_readings(outcomes_table([rec]), preds)) == 5


def test_no_sensor_holds_more_than_its_cap_and_whole_newest_alerts_are_kept():
    preds = _predictions(["a", "b"])
    outcomes = outcomes_table(
        [
            _alert("a", "2026-12-01T10:00:00+00:00", "2026-12-01T10:00:19+00:00", "false_alarm"),
            _alert("a", "2026-12-01T10:00:30+00:00", "2026-12-01T10:00:39+00:00", "false_alarm"),
            _alert("b", "2026-12-01T10:00:00+00:00", "2026-12-01T10:00:49+00:00", "fire"),
        ]
    )
    labels = labelled_readings(outcomes, preds)
    capped = cap_per_sensor(labels, 25)
    sizes = capped.groupby("sensor_id").size().to_dict()
    assert sizes == {"a": 10, "b": 25}  # a: the newest alert whole; b: one alert, cut
    assert set(capped.loc[capped["sensor_id"] == "a", "alert_id"]) == {
        "a@2026-12-01T10:00:30+00:00"
    }
    assert len(cap_per_sensor(labels, 1_000)) == len(labels)


def test_operator_rows_join_training_as_their_own_sessions_and_strata():
    sim = training_frame(generate_readings(n_rows=4_000, seed=1))
    preds = _predictions(["a", "b"])
    outcomes = outcomes_table(
        [
            _alert("a", "2026-12-01T10:00:00+00:00", "2026-12-01T10:00:19+00:00", "false_alarm"),
            _alert("b", "2026-12-01T10:00:00+00:00", "2026-12-01T10:00:19+00:00", "false_alarm"),
        ]
    )
    ops = operator_frame(labelled_readings(outcomes, preds))
    assert list(ops.columns) == list(sim.columns)
    assert (ops["fire_alarm"] == 0).all() and len(ops) == 40
    frame = pd.concat([sim, ops.assign(ts=pd.Timestamp("2026-12-01"))], ignore_index=True)
    held = session_holdout(frame, 0.25, seed=0)
    # Two false-alarm alerts: one is held out whole, the other trains; never split.
    per_alert = frame[is_operator(frame)].assign(h=held).groupby("session_id")["h"].agg(set)
    assert sorted(map(sorted, per_alert)) == [[False], [True]]


def test_operator_figures_equal_a_hand_count():
    frame = pd.DataFrame(
        {
            "session_id": ["x"] * 4 + ["y"] * 4 + ["z"] * 2,
            "fire_alarm": [0] * 8 + [1] * 2,
        }
    )
    scores = np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.1, 0.9, 0.2])
    f = operator_figures(frame, scores, threshold=0.5)
    assert f == {
        "rows": 10,
        "alerts": 3,
        "fire_rows": 2,
        "recall": 0.5,
        "false_alarm_rate": 1 / 8,
        "false_alarm_alerts": 2,
        "false_alarm_alerts_still_flagged": 1,
    }


def test_the_alerts_record_precision_false_alarms_per_week_and_time_to_acknowledge():
    outcomes = outcomes_table(
        [
            _alert("a", "2026-11-30T10:00:00+00:00", verdict="false_alarm",
                   acked="2026-11-30T10:01:00+00:00"),
            _alert("a", "2026-12-01T10:00:00+00:00", verdict="false_alarm",
                   acked="2026-12-01T10:03:00+00:00"),
            _alert("a", "2026-12-08T10:00:00+00:00", verdict="false_alarm"),
            _alert("b", "2026-12-01T10:00:00+00:00", verdict="fire",
                   acked="2026-12-01T10:00:20+00:00"),
            _alert("b", "2026-12-02T10:00:00+00:00", verdict="test"),
            _alert("c", "2026-12-02T10:00:00+00:00"),
        ]
    )  # fmt: skip
    trouble = outcomes_table([Lifecycle("t1", "trouble", "c", "silent", "2026-12-02T10:00:00Z")])
    f = outcome_figures(pd.concat([outcomes, trouble], ignore_index=True))
    assert f["alerts"] == 6  # trouble signals are not alerts
    assert f["by_verdict"] == {"false_alarm": 3, "fire": 1, "test": 1, "unresolved": 1}
    assert f["precision"] == pytest.approx(1 / 4)
    weeks = f["false_alarms_per_sensor_week"]
    assert weeks.to_dict(orient="index") == {"a": {"2026-W49": 2, "2026-W50": 1}}
    assert f["acknowledged"] == 3
    assert f["ack_median_s"] == 60.0
    assert f["ack_p90_s"] == pytest.approx(156.0)  # 20, 60, 180 s: linear 90th percentile


def test_no_verdicts_yet_gives_no_precision_and_no_waiting_time():
    f = outcome_figures(outcomes_table([_alert("a", "2026-12-01T10:00:00Z")]))
    assert f["precision"] is None and f["ack_median_s"] is None
    assert f["by_verdict"] == {"unresolved": 1}


def test_outcomes_hold_text_whatever_a_stray_verdict_carried(tmp_path):
    rec = _alert("a", "2026-12-01T10:00:00Z", verdict="false_alarm")
    rec.note, rec.acknowledged_by = ["not", "text"], 42  # as a stray verdict event left them
    frame = outcomes_table([rec, _alert("b", "2026-12-01T11:00:00Z")])
    frame.to_parquet(tmp_path / "part.parquet", index=False)  # the asset's write
    assert frame.loc[0, "note"] == "['not', 'text']" and frame.loc[0, "acknowledged_by"] == "42"
    assert frame.loc[1, "verdict"] is None and frame.loc[0, "day"] == "2026-12-01"
