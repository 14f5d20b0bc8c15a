"""Weekly historical insights over the stream outputs: what happened, what was noisy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from smoke_platform.reports.markdown import MarkdownReport, counts_text, pyplot


def alert_outcomes(predictions: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """Opened alerts with the label of the reading that opened them (NaN if unlabelled):
    an alert is true when that reading was recorded during a fire."""
    if alerts.empty:
        return pd.DataFrame(columns=["alert_id", "sensor_id", "ts", "severity", "true_alert"])
    opened = alerts[alerts["event"] == "open"][["alert_id", "sensor_id", "ts", "severity"]]
    labels = predictions[["sensor_id", "ts", "fire_alarm", "scenario"]].drop_duplicates(
        ["sensor_id", "ts"]
    )
    out = opened.merge(labels, on=["sensor_id", "ts"], how="left")
    out["true_alert"] = out["fire_alarm"].map({1: True, 0: False})
    return out.drop(columns="fire_alarm")


def _days(ts: pd.Series) -> pd.Series:
    """Each time's UTC day, as the stream tables file it."""
    import pyarrow as pa

    from smoke_platform.core.days import utc_days

    return pd.Series(utc_days(pa.array(ts.astype(str), pa.string())).to_pylist(), ts.index)


def insights(
    predictions: pd.DataFrame, alerts: pd.DataFrame, windows: pd.DataFrame
) -> dict[str, Any]:
    """The week's figures (all derived from the frames; the report renders them)."""
    preds = predictions.copy()
    preds["date"] = _days(preds["ts"])
    outcomes = alert_outcomes(preds, alerts)
    judged = outcomes.dropna(subset=["true_alert"])
    labelled = preds[preds["fire_alarm"].notna()]
    false_pos = labelled[(labelled["is_fire"]) & (labelled["fire_alarm"] == 0)]
    fire_sessions = labelled.loc[labelled["fire_alarm"] == 1, "session_id"].nunique()
    daily = preds.groupby("date").agg(
        readings=("sensor_id", "size"),
        alarm_share=("is_fire", "mean"),
        anomaly_share=("anomaly", "mean"),
    )
    daily["alerts_opened"] = (
        outcomes.groupby(_days(outcomes["ts"])).size().reindex(daily.index).fillna(0)
    )
    if not windows.empty and "quality_score" in windows:
        day = pd.to_datetime(windows["window_start"], utc=True).dt.strftime("%Y-%m-%d")
        daily["window_quality"] = windows.groupby(day)["quality_score"].mean()
    false_alerts = outcomes[outcomes["true_alert"].eq(False)]
    noisy = (
        pd.concat(
            [
                false_pos.groupby("sensor_id").size().rename("false_alarm_readings"),
                false_alerts.groupby("sensor_id").size().rename("false_alerts"),
            ],
            axis=1,
        )
        .fillna(0)
        .astype(int)
        .sort_values(["false_alerts", "false_alarm_readings"], ascending=False)
    )
    causes = (
        false_pos.groupby(false_pos["scenario"].fillna("unknown"))
        .size()
        .rename("false_alarm_readings")
        .sort_values(ascending=False)
        .to_frame()
    )
    return {
        "days": sorted(daily.index),
        "readings": len(preds),
        "sensors": int(preds["sensor_id"].nunique()),
        "sessions": int(preds["session_id"].nunique()),
        "fire_sessions": int(fire_sessions),
        "alerts_opened": len(outcomes),
        "alerts_by_severity": outcomes["severity"].value_counts().to_dict(),
        "alert_precision": float(judged["true_alert"].mean()) if len(judged) else None,
        "daily": daily,
        "noisy_sensors": noisy.head(10),
        "false_alarm_causes": causes,
    }


def write_insights_report(figures: dict[str, Any], directory: Path) -> Path:
    rep = MarkdownReport("Weekly insights", directory)
    precision = figures["alert_precision"]
    rep.text(
        f"Days {figures['days'][0]} to {figures['days'][-1]}: {figures['readings']:,} readings "
        f"from {figures['sensors']} sensors in {figures['sessions']} sessions; "
        f"{figures['fire_sessions']} sessions recorded a fire. "
        f"{figures['alerts_opened']} alerts opened "
        f"({counts_text(figures['alerts_by_severity'])}); "
        "alert precision (opened during a labelled fire): "
        f"{'n/a' if precision is None else f'{precision:.1%}'}."
    )
    rep.heading("Per day")
    rep.table(figures["daily"])
    for heading, key in (
        ("Noisiest sensors (false alarms)", "noisy_sensors"),
        ("False-alarm causes by scenario", "false_alarm_causes"),
    ):
        rep.heading(heading)
        if figures[key].empty:
            rep.text("No false alarms this week.")
        else:
            rep.table(figures[key])
    plt = pyplot()
    daily = figures["daily"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    daily["alerts_opened"].plot.bar(ax=a, title="alerts opened per day")
    quality = [c for c in ("window_quality", "anomaly_share", "alarm_share") if c in daily]
    daily[quality].plot(ax=b, marker="o", title="quality and alarm trend")
    rep.figure(fig, "week", "Alerts per day; window data-quality score and alarm/anomaly shares")
    return rep.write()
