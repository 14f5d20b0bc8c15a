"""What operators' verdicts teach: labels for the next model and the alerts' real record.

Pure (pandas, no Kafka, no Dagster). An alert resolved as `fire` or `false_alarm` labels
the readings its sensor sent from the alert's open to its close (`fire` -> 1,
`false_alarm` -> 0; `test` and `unknown` label nothing). The rows keep the features the
worker computed when it scored them (its rates of rise over the sensor's own history),
so the next model learns from what the live model saw. Each alert is one session: a
session-aware split never puts one alert on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import numpy as np
import pandas as pd

from smoke_platform.core.metrics import LABEL
from smoke_platform.core.verdicts import Lifecycle

OPERATOR_LABELS = {"fire": 1, "false_alarm": 0}
OPERATOR_SCENARIO = "operator_"  # + verdict: the scenario of an operator-labelled session
OUTCOME_COLUMNS = [f.name for f in fields(Lifecycle)]


def outcomes_table(lifecycles: Iterable[Lifecycle]) -> pd.DataFrame:
    """One row per raised alert or trouble signal with what operators said of it, and the
    UTC day it was raised (the partition it belongs to)."""
    # Text or nothing in every column: a verdict event from a stray producer may carry a
    # number or a list where a name belongs, and the day's file must still be written.
    rows = [
        {k: None if v is None else str(v) for k, v in rec.as_event().items()} for rec in lifecycles
    ]
    frame = pd.DataFrame(rows, columns=OUTCOME_COLUMNS, dtype=object)
    raised = pd.to_datetime(frame["raised_at"], utc=True, errors="coerce", format="ISO8601")
    frame["day"] = raised.dt.strftime("%Y-%m-%d")
    return frame


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def labelled_readings(outcomes: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The scored readings each `fire`/`false_alarm` alert covers (its sensor, from its
    open to its close, else to its resolution), labelled by the verdict: the stored
    prediction rows with `fire_alarm` set, `session_id` the alert id, `scenario`
    operator_<verdict>, and `alert_id`, `verdict` added."""
    alerts = outcomes[(outcomes["source"] == "alert") & outcomes["verdict"].isin(OPERATOR_LABELS)]
    if alerts.empty or predictions.empty:
        return predictions.iloc[0:0].assign(alert_id=pd.Series(dtype=str), verdict="")
    ts = _utc(predictions["ts"])
    parts = []
    for rec in alerts.itertuples(index=False):
        start = _utc(pd.Series([rec.raised_at])).iloc[0]
        end = _utc(pd.Series([rec.closed_at or rec.resolved_at])).iloc[0]
        if pd.isna(start) or pd.isna(end):
            continue
        rows = predictions[(predictions["sensor_id"] == rec.subject) & (ts >= start) & (ts <= end)]
        parts.append(
            rows.assign(
                **{
                    LABEL: OPERATOR_LABELS[rec.verdict],
                    "session_id": rec.alert_id,
                    "scenario": OPERATOR_SCENARIO + rec.verdict,
                    "alert_id": rec.alert_id,
                    "verdict": rec.verdict,
                }
            )
        )
    if not parts:
        return predictions.iloc[0:0].assign(alert_id=pd.Series(dtype=str), verdict="")
    return pd.concat(parts, ignore_index=True).sort_values(["alert_id", "ts"], kind="stable")


def cap_per_sensor(labels: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """At most `max_rows` operator-labelled rows per sensor, whole alerts, newest first (a
    sensor whose newest alert alone is longer keeps that alert's first `max_rows`): one
    noisy detector cannot teach the model its own quirks."""
    if labels.empty:
        return labels
    kept = []
    for _, rows in labels.groupby("sensor_id", sort=True):
        total = 0
        newest_first = rows.groupby("alert_id", sort=False)["ts"].min().sort_values(ascending=False)
        for alert in newest_first.index:
            alert_rows = rows[rows["alert_id"] == alert]
            if total + len(alert_rows) > max_rows:
                if total == 0:
                    kept.append(alert_rows.iloc[:max_rows])
                break
            kept.append(alert_rows)
            total += len(alert_rows)
    return pd.concat(kept, ignore_index=True)


def is_operator(frame: pd.DataFrame) -> pd.Series:
    """True for operator-labelled rows (never part of the simulated holdout's figures)."""
    if "scenario" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["scenario"].astype(str).str.startswith(OPERATOR_SCENARIO)


def operator_figures(frame: pd.DataFrame, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """A model on operator-labelled readings at its threshold: how many, recall on the
    fires, the share of false-alarm readings it still flags, and how many false-alarm
    alerts it would still flag at least once."""
    y = frame[LABEL].to_numpy().astype(int)
    flagged = np.asarray(scores) >= threshold
    fires, nots = y == 1, y == 0
    false_alerts = frame.loc[nots, "session_id"]
    still = frame.loc[nots & flagged, "session_id"].nunique() if nots.any() else 0
    return {
        "rows": len(frame),
        "alerts": int(frame["session_id"].nunique()),
        "fire_rows": int(fires.sum()),
        "recall": float(flagged[fires].mean()) if fires.any() else None,
        "false_alarm_rate": float(flagged[nots].mean()) if nots.any() else None,
        "false_alarm_alerts": int(false_alerts.nunique()),
        "false_alarm_alerts_still_flagged": int(still),
    }


def outcome_figures(outcomes: pd.DataFrame) -> dict[str, Any]:
    """The alerts' real record: verdicts, alert precision by verdict (fires among alerts
    judged fire or false alarm), false alarms per sensor and ISO week, and time from the
    alert to its acknowledgement (from the reading that raised it)."""
    alerts = outcomes[outcomes["source"] == "alert"]
    verdicts = alerts["verdict"].fillna("unresolved").value_counts().to_dict()
    fire, false = verdicts.get("fire", 0), verdicts.get("false_alarm", 0)
    false_alarms = alerts[alerts["verdict"] == "false_alarm"]
    weeks = _utc(false_alarms["raised_at"]).dt.strftime("%G-W%V")
    per_week = (
        false_alarms.assign(week=weeks.to_numpy())
        .groupby(["subject", "week"])
        .size()
        .unstack(fill_value=0)
        .rename_axis(index="sensor", columns=None)
    )
    waited = (_utc(alerts["acknowledged_at"]) - _utc(alerts["raised_at"])).dt.total_seconds()
    waited = waited.dropna()
    return {
        "alerts": len(alerts),
        "by_verdict": {str(k): int(v) for k, v in sorted(verdicts.items())},
        "precision": fire / (fire + false) if fire + false else None,
        "false_alarms_per_sensor_week": per_week,
        "acknowledged": len(waited),
        "ack_median_s": float(waited.median()) if len(waited) else None,
        "ack_p90_s": float(waited.quantile(0.9)) if len(waited) else None,
    }
