"""The data-quality report: per-column statistics, check outcomes and distribution plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from smoke_platform.core.features import LOG_SCALED
from smoke_platform.core.quality import CheckOutcome, run_all_checks
from smoke_platform.core.schema import FIELD_BY_NAME, MEASUREMENTS
from smoke_platform.reports.markdown import MarkdownReport, pyplot


def column_profile(df: pd.DataFrame) -> pd.DataFrame:
    """Nulls, out-of-range count, min / median / p99 / max per measurement."""
    rows = []
    for col in MEASUREMENTS:
        spec, values = FIELD_BY_NAME[col], pd.to_numeric(df[col], errors="coerce")
        out_of_range = ((values < spec.min) | (values > spec.max)).sum()
        rows.append(
            {
                "column": col,
                "unit": spec.unit,
                "nulls": int(values.isna().sum()),
                "out_of_range": int(out_of_range),
                "min": values.min(),
                "median": values.median(),
                "p99": values.quantile(0.99),
                "max": values.max(),
                "allowed": spec.allowed(),
            }
        )
    return pd.DataFrame(rows).set_index("column")


def _distribution_figure(df: pd.DataFrame):
    plt = pyplot()
    fig, axes = plt.subplots(3, 4, figsize=(16, 10))
    labels = df["fire_alarm"].fillna(-1).astype(int)
    for ax, col in zip(axes.flat, MEASUREMENTS, strict=True):
        values = pd.to_numeric(df[col], errors="coerce")
        if col in LOG_SCALED:
            values = np.log10(values.clip(lower=0) + 1)
        for label, colour, name in ((0, "tab:blue", "no fire"), (1, "tab:red", "fire")):
            ax.hist(values[labels == label], bins=50, alpha=0.55, color=colour, label=name)
        ax.set_title(f"log10(1+{col})" if col in LOG_SCALED else col, fontsize=9)
    axes.flat[0].legend()
    fig.suptitle("Distributions by label")
    return fig


def _sessions_figure(df: pd.DataFrame):
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4))
    per_session = df.groupby("session_id").agg(rows=("ts", "size"), fire=("fire_alarm", "mean"))
    left.hist(per_session["rows"], bins=30, color="tab:gray")
    left.set_title("readings per session")
    group = "scenario" if "scenario" in df.columns else "sensor_id"
    share = df.groupby(group)["fire_alarm"].agg(["mean", "size"]).sort_values("size")
    right.barh(share.index.astype(str), share["size"], color="tab:purple")
    right.set_title(f"readings per {group}")
    return fig


def checks_table(outcomes: dict[str, CheckOutcome]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "check": n,
                "passed": o.passed,
                "failures": o.failure_count,
                "detail": o.describe()[:200],
            }
            for n, o in outcomes.items()
        ]
    ).set_index("check")


def write_quality_report(
    df: pd.DataFrame,
    directory: Path,
    source: str = "",
    reference: pd.DataFrame | None = None,
) -> tuple[Path, dict]:
    """Write the report; return its path and headline metrics (for Dagster metadata)."""
    outcomes = run_all_checks(df)
    profile = column_profile(df)
    metrics = {
        "rows": len(df),
        "sessions": int(df["session_id"].nunique()),
        "fire_share": float(df["fire_alarm"].mean()),
        "checks_passed": sum(o.passed for o in outcomes.values()),
        "checks_total": len(outcomes),
        "null_cells": int(profile["nulls"].sum()),
        "out_of_range_cells": int(profile["out_of_range"].sum()),
    }
    rep = MarkdownReport("Data-quality report: raw sensor readings", directory)
    rep.text(
        f"Source: `{source or 'unknown'}`. Generated {pd.Timestamp.now('UTC'):%Y-%m-%d %H:%M} UTC."
    )
    rep.heading("Summary")
    rep.table(pd.Series(metrics, name="value", dtype=object).to_frame())
    rep.heading("Checks")
    rep.table(checks_table(outcomes))
    rep.heading("Columns")
    rep.table(profile)
    if reference is not None:
        _ceiling_section(rep, df, reference)
    rep.heading("Distributions")
    rep.figure(
        _distribution_figure(df), "distributions", "Measurement distributions, fire vs no fire"
    )
    rep.figure(_sessions_figure(df), "sessions", "Session lengths and readings per scenario")
    return rep.write(), metrics


def _ceiling_section(rep: MarkdownReport, df: pd.DataFrame, reference: pd.DataFrame) -> None:
    """How often each channel sits at its sensor's ceiling, beside the real readings."""
    from smoke_platform.core.quality import (
        CEILING_TOLERANCE,
        CEILINGS,
        ceiling_ranges,
        ceiling_shares,
        ceilings_outside,
    )

    shares, ranges = ceiling_shares(df), ceiling_ranges(reference)
    rep.heading("Readings at the sensor's ceiling")
    rep.text(
        "A channel pinned at its sensor's ceiling is saturated: the reading says only "
        '"at least this much". Real sensors (the reference excerpts, per excerpt) '
        f"against these readings; outside that range by more than {CEILING_TOLERANCE:.0%} "
        "the `raw_sensor_readings_ceiling_share` check warns."
    )
    rep.table(
        pd.DataFrame(
            {
                "ceiling": CEILINGS,
                "share at ceiling": shares,
                "real sensors (min)": {c: r[0] for c, r in ranges.items()},
                "real sensors (max)": {c: r[1] for c, r in ranges.items()},
            }
        )
    )
    outside = ceilings_outside(shares, ranges)
    rep.text("**Outside the real range:** " + "; ".join(outside) if outside else "All within.")
