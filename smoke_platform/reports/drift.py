"""Feature drift report: PSI per model feature, live vs training, with the thresholds used."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from smoke_platform.core.drift import KS_CORROBORATION, MODERATE_PSI
from smoke_platform.reports.markdown import MarkdownReport, pyplot


def write_drift_report(
    drift: pd.DataFrame,
    threshold: float,
    live_rows: int,
    train_rows: int,
    directory: Path,
    min_rows: int = 0,
    site: pd.DataFrame | None = None,
    features_from: str = "the model feature list",
) -> Path:
    rep = MarkdownReport("Feature drift: live readings vs training data", directory)
    drifted = drift.loc[drift["status"] == "drifted", "feature"].tolist()
    rep.text(
        f"{live_rows:,} live readings against {train_rows:,} training rows, on the features "
        f"of {features_from}. Population stability index per feature (bins at the training "
        f"deciles): < {MODERATE_PSI} stable, {MODERATE_PSI}–{threshold} moderate, >= "
        f"{threshold} drifted (retraining is requested) when the Kolmogorov-Smirnov distance "
        f"(`ks`, rank-based: heavy tails and readings piled at a floor do not sway it) "
        f"corroborates it with at least {KS_CORROBORATION}."
    )
    if live_rows < min_rows:
        rep.text(
            f"**Not enough live data to act on: {live_rows:,} readings, drift needs "
            f"{min_rows:,}.** PSI compares populations; a few sensors over minutes are not the "
            "training population, so the figures below are shown but retraining is not requested."
        )
    else:
        rep.text(
            f"**Drifted: {', '.join(drifted)}**"
            if drifted
            else "**No feature crosses the threshold.**"
        )
    rep.table(drift.set_index("feature"))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(drift) + 1))
    enough = live_rows >= min_rows
    colours = drift["status"].map({"drifted": "tab:red", "moderate": "tab:orange"}).fillna("grey")
    if not enough:  # figures to look at, not verdicts: no alarm colours
        colours = pd.Series("lightsteelblue", index=drift.index)
    ax.barh(drift["feature"], drift["psi"].fillna(0), color=colours)
    ax.axvline(threshold, ls="--", c="tab:red")
    ax.axvline(MODERATE_PSI, ls=":", c="tab:orange")
    ax.invert_yaxis()
    title = "drift per feature"
    if not enough:
        title += f"\nnot enough live data ({live_rows:,} < {min_rows:,} readings): not acted on"
    ax.set(xlabel="PSI", title=title)
    rep.figure(fig, "psi", "PSI per feature (dashed: retraining threshold)")
    if site is not None and len(site):
        rep.heading("Site-dependent columns (not used by the model, never a trigger)")
        rep.text(
            "Temperature, humidity, pressure and the raw gas signals move with a sensor's room "
            "and its own baseline; the model does not use them, so their drift is context "
            "(a moved or recalibrated sensor), never a reason to retrain."
        )
        rep.table(site.set_index("feature"))
    return rep.write()
