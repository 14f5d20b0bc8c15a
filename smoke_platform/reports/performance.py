"""Model performance on labelled live data: the same metrics as training, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from smoke_platform.core.metrics import LIVE_HEADLINE as HEADLINE
from smoke_platform.core.metrics import evaluate
from smoke_platform.core.schema import READING_PERIOD_S
from smoke_platform.reports.markdown import MarkdownReport, counts_text, pyplot


def live_metrics(predictions: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Metrics on the predictions that carry a label (simulated or replayed data)."""
    labelled = predictions[predictions["fire_alarm"].notna()].copy()
    labelled["fire_alarm"] = labelled["fire_alarm"].astype(int)
    labelled["ts"] = pd.to_datetime(labelled["ts"], utc=True, format="ISO8601")
    if "session_id" not in labelled or labelled["session_id"].isna().all():
        labelled["session_id"] = labelled["sensor_id"]
    return evaluate(labelled, labelled["probability"].to_numpy(), threshold)


def rate_by(predictions: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Share of readings alarmed, by sensor and by hour of day (UTC)."""
    hours = pd.to_datetime(predictions["ts"], utc=True, format="ISO8601").dt.hour
    return predictions.groupby("sensor_id")["is_fire"].mean(), predictions.groupby(hours)[
        "is_fire"
    ].mean()


def service_health(
    url: str, api_key: str = "", timeout_s: float = 3.0, verify: str | bool = True
) -> dict[str, Any]:
    """Is the service ready, and which model version does it serve (its own endpoints;
    `verify`: the CA an HTTPS service's certificate is checked against)."""
    import httpx

    from smoke_platform.serving import auth_headers

    headers = auth_headers(api_key)
    try:
        with httpx.Client(timeout=timeout_s, verify=verify) as client:
            ready = client.get(f"{url}/readyz").status_code == 200
            info = client.post(f"{url}/model_info", json={}, headers=headers)
        version = info.json().get("version") if info.status_code == 200 else None
    except httpx.HTTPError as exc:
        return {"url": url, "ready": False, "version": None, "error": type(exc).__name__}
    return {"url": url, "ready": ready, "version": version, "error": None}


def write_performance_report(
    predictions: pd.DataFrame,
    threshold: float,
    training: dict[str, Any],
    directory: Path,
    service: dict[str, Any] | None = None,
    outcomes: pd.DataFrame | None = None,
) -> tuple[Path, dict[str, Any]]:
    metrics = live_metrics(predictions, threshold)
    by_sensor, by_hour = rate_by(predictions)
    rep = MarkdownReport("Model performance on live data", directory)
    versions = ", ".join(sorted(predictions["model_version"].astype(str).unique()))
    rep.text(
        f"{len(predictions):,} scored readings, {int(metrics['rows']):,} labelled; "
        f"model version(s): {versions}; scored by: "
        + counts_text(predictions["scored_by"].value_counts().to_dict())
        + "."
    )
    if service is not None:
        if service["ready"]:
            rep.text(
                f"Service {service['url']}: ready; serving model {service['version'] or 'unknown'}."
            )
        else:  # a fact about now, not about the stream above (scored by the versions named)
            rep.text(
                f"Service {service['url']}: not answering when this report was written "
                f"({service['error'] or 'readyz'}); the figures above do not depend on it."
            )
    rep.heading("Live vs training (held-out sessions)")
    rep.table(
        pd.DataFrame(
            {
                "live": {k: metrics[k] for k in HEADLINE},
                "training": {k: training.get(k) for k in HEADLINE},
            }
        )
    )
    lat = metrics["latency"]

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f}"

    rep.text(
        f"Detection latency: median {fmt(lat['median_s'])} s, p90 {fmt(lat['p90_s'])} s over "
        f"{lat['fire_sessions']} fire sessions, {lat['missed_sessions']} missed; in event "
        "time (from the fire's first labelled reading to the first alarmed one, by the "
        "readings' own timestamps: a stream replayed faster than real time shows the "
        "sensor's delay, not wall-clock seconds)."
    )
    live_gap, sensor_gap = lat.get("reading_interval_s"), READING_PERIOD_S
    if live_gap and live_gap < sensor_gap / 1.5:
        rep.text(
            f"**These latencies are compressed**: a session's readings are {live_gap:.2f} s "
            f"apart by their timestamps, where a sensor reports every {sensor_gap:g} s. They "
            f"were time-stamped as they were sent while replayed about "
            f"{sensor_gap / live_gap:.0f}x faster than real time (as `make demo` does), so "
            "each latency above is about that many times shorter than a sensor's."
        )
    rep.heading("Alarm rate by sensor")
    rep.table(by_sensor.rename("alarm_share").to_frame())
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    by_hour.plot.bar(ax=a, title="alarm share by hour (UTC)")
    cal = metrics["calibration"]
    if cal:
        b.plot(cal["mean_predicted"], cal["fraction_positive"], marker="o")
        b.plot([0, 1], [0, 1], ls="--", c="grey")
    b.set(title="calibration (live)", xlabel="mean predicted", ylabel="fraction fire")
    rep.figure(fig, "live", "Alarm share by hour and live calibration")
    metrics["verdicts"] = _verdicts_section(rep, outcomes)
    return rep.write(), metrics


def _verdicts_section(rep: MarkdownReport, outcomes: pd.DataFrame | None) -> dict[str, Any]:
    """What operators said of the alerts: the only real labels a deployment gets."""
    from smoke_platform.core.outcomes import OUTCOME_COLUMNS, outcome_figures

    if outcomes is None or outcomes.empty:
        outcomes = pd.DataFrame(columns=OUTCOME_COLUMNS)
    f = outcome_figures(outcomes)
    rep.heading("Alerts as operators judged them")
    if not f["alerts"]:
        rep.text(
            "No alert registered with operators' verdicts yet (`operator_labels`: "
            "`smoke alerts resolve ID --verdict fire|false_alarm|test|unknown --by NAME`)."
        )
        return f
    precision = "n/a" if f["precision"] is None else f"{f['precision']:.2f}"
    rep.text(
        f"{f['alerts']} alerts: " + counts_text(f["by_verdict"]) + ". Alert precision by "
        f"verdict (fires among alerts judged fire or false alarm): {precision}."
    )

    def secs(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.0f} s"

    rep.text(
        f"Time to acknowledge ({f['acknowledged']} acknowledged), from the reading that "
        f"raised the alert (wall-clock time for a live feed): median {secs(f['ack_median_s'])}, "
        f"p90 {secs(f['ack_p90_s'])}."
    )
    if len(f["false_alarms_per_sensor_week"]):
        rep.text("False alarms per sensor and ISO week:")
        rep.table(f["false_alarms_per_sensor_week"])
    return f
