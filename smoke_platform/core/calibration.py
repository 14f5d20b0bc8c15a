"""How far the simulator is from real sensors: per scenario and channel (each measurement,
and each rate of rise the models learn from), the Kolmogorov-Smirnov distance between
simulated readings and the real reference readings of the same class (normal or fire),
and whether each real excerpt's median lies inside the simulated class's 0.5-99.5 % range
(coverage: a model never saw what lies outside).

The real reference rows are the external validation set: they calibrate the simulator
(this module, `smoke_platform_tests/core/test_calibration.py`) and judge models; no
classifier is ever fitted on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from smoke_platform.core.explain import EXPLAINED
from smoke_platform.core.features import RISE_FEATURES, add_rises
from smoke_platform.core.metrics import LABEL

CLASSES = {0: "normal", 1: "fire"}
COVERAGE = (0.005, 0.995)
# The measurements, and the rates of rise over each sensor's last 30 s: how much a channel
# moves from second to second is what the rises see (and what a model learns from them).
CHANNELS: tuple[str, ...] = (*EXPLAINED, *RISE_FEATURES)


def with_rises(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its rates of rise (computed per sensor unless it already has them)."""
    return frame if set(RISE_FEATURES) <= set(frame.columns) else add_rises(frame)


def _real_by_class(real: pd.DataFrame) -> dict[int, pd.DataFrame]:
    return {label: real[real[LABEL] == label] for label in CLASSES}


def distances(sim: pd.DataFrame, real: pd.DataFrame) -> pd.DataFrame:
    """KS distance per (group, measurement): `normal` and `fire` pool every scenario's
    readings of that class, then one group per simulated scenario (its readings of the
    class its scenario has most of) against the real readings of that class."""
    sim, reals = with_rises(sim), _real_by_class(with_rises(real))
    groups: list[tuple[str, int, pd.DataFrame]] = [
        (CLASSES[label], label, sim[sim[LABEL] == label]) for label in CLASSES
    ]
    if "scenario" in sim.columns:
        for name, part in sim.groupby("scenario", sort=True):
            label = int(part[LABEL].mean() >= 0.5)
            groups.append((f"scenario {name}", label, part[part[LABEL] == label]))
    rows = []
    for group, label, part in groups:
        if part.empty or reals[label].empty:
            continue
        for ch in CHANNELS:
            a, b = part[ch].to_numpy("float64"), reals[label][ch].to_numpy("float64")
            rows.append(
                {
                    "group": group,
                    "class": CLASSES[label],
                    "measurement": ch,
                    "ks": float(ks_2samp(a, b).statistic),
                    "sim_median": float(np.median(a)),
                    "real_median": float(np.median(b)),
                }
            )
    return pd.DataFrame(rows)


def coverage_gaps(sim: pd.DataFrame, real: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """`{(class, measurement): [real excerpts whose median lies outside the simulated
    class's 0.5-99.5 % range]}`, only where there are such excerpts."""
    gaps: dict[tuple[str, str], list[str]] = {}
    sim = with_rises(sim)
    for label, part in _real_by_class(with_rises(real)).items():
        simulated = sim[sim[LABEL] == label]
        for ch in CHANNELS:
            lo, hi = simulated[ch].quantile(list(COVERAGE))
            medians = part.groupby("excerpt")[ch].median()
            outside = sorted(str(e) for e, m in medians.items() if not lo <= m <= hi)
            if outside:
                gaps[(CLASSES[label], ch)] = outside
    return gaps


def drift(table: pd.DataFrame, baseline: dict[tuple[str, str], float], margin: float) -> list[str]:
    """Where the pooled class distances grew beyond `baseline` + `margin`."""
    pooled = table[table["group"].isin(CLASSES.values())]
    out = []
    for row in pooled.itertuples():
        key = (str(row.group), str(row.measurement))
        if key in baseline and row.ks > baseline[key] + margin:
            out.append(f"{key[0]} {key[1]}: KS {row.ks:.2f} > {baseline[key]:.2f} + {margin}")
    return out


def report_tables(sim: pd.DataFrame, real: pd.DataFrame) -> dict[str, Any]:
    """The calibration report's two tables: KS by group x measurement, and the gaps."""
    table = distances(sim, real)
    wide = table.pivot(index="group", columns="measurement", values="ks").round(2)
    gaps = coverage_gaps(sim, real)
    return {
        "ks": wide.loc[[g for g in table["group"].drop_duplicates()], list(CHANNELS)],
        "gaps": pd.DataFrame(
            [
                {"class": c, "measurement": m, "real excerpts outside": ", ".join(e)}
                for (c, m), e in gaps.items()
            ]
        ),
    }


# Measured on `generate_readings(60_000, seed=0)` (pooled class x measurement KS); the
# test fails when a change moves the simulator further from the real readings than this
# plus `DRIFT_MARGIN`. Re-measured on 2026-11-30 when the simulator gained realistic clean
# air, occupied rooms and VOC-led smouldering fires (before -> now): closer on normal
# TVOC 0.48 -> 0.42, normal eCO2 0.64 -> 0.30, fire particles (PM1.0 0.78 -> 0.73, NC0.5
# 0.71 -> 0.61, ...) and the occupied room's gap closed; further on fire TVOC 0.42 ->
# 0.68 (our fires, made strong enough to stand clear of occupied rooms, read ~10x the
# real fires' 1,100 ppb), fire eCO2 0.30 -> 0.39, the fires' raw H2/ethanol 0.72/0.88 ->
# 0.82/0.94, and normal particles 0.46-0.48 -> 0.55-0.59 (another draw of sessions: no
# particle model changed).
# Real recall/false alarms/ROC-AUC went 0.83/3.6 %/0.98 -> 0.79/0 %/0.98 with no alert on
# either normal excerpt (docs/model.md, "How far the simulator is from real sensors").
CALIBRATED_KS: dict[tuple[str, str], float] = {
    ("normal", "tvoc_ppb"): 0.42,
    ("normal", "eco2_ppm"): 0.30,
    ("normal", "raw_h2"): 0.38,
    ("normal", "raw_ethanol"): 0.26,
    ("normal", "pm1_0"): 0.55,
    ("normal", "pm2_5"): 0.57,
    ("normal", "nc0_5"): 0.52,
    ("normal", "nc1_0"): 0.59,
    ("normal", "nc2_5"): 0.54,
    ("fire", "tvoc_ppb"): 0.68,
    ("fire", "eco2_ppm"): 0.39,
    ("fire", "raw_h2"): 0.82,
    ("fire", "raw_ethanol"): 0.94,
    ("fire", "pm1_0"): 0.73,
    ("fire", "pm2_5"): 0.79,
    ("fire", "nc0_5"): 0.61,
    ("fire", "nc1_0"): 0.80,
    ("fire", "nc2_5"): 0.94,
    # The rates of rise, measured 2026-11-30 (session 11): real clean and occupied air
    # jitters more from second to second than ours (normal TVOC rise median 0.064 vs our
    # 0.010: the SGP30's read noise, TVOC steps of 7-9 ppb against our 1-3); our fires
    # still climb where the real excerpts sit on a plateau (fire TVOC rise 0.50 vs 0.06).
    # Simulating that read noise as measured made the thresholds unstable (docs/model.md).
    ("normal", "rise_tvoc_ppb"): 0.47,
    ("normal", "rise_pm1_0"): 0.30,
    ("normal", "rise_nc0_5"): 0.36,
    ("fire", "rise_tvoc_ppb"): 0.68,
    ("fire", "rise_pm1_0"): 0.44,
    ("fire", "rise_nc0_5"): 0.39,
}
DRIFT_MARGIN = 0.05
# What the simulator does not produce (known, reported, to close next): a sensor's
# warm-up minutes (no particles counted, 0-186), and the raw H2 signal of the fire excerpt
# that reads like clean air (4674-4848: its sensor's baseline sits above ours).
KNOWN_GAPS: dict[tuple[str, str], list[str]] = {
    ("normal", "pm1_0"): ["0-186"],
    ("normal", "pm2_5"): ["0-186"],
    ("normal", "nc0_5"): ["0-186"],
    ("normal", "nc1_0"): ["0-186"],
    ("fire", "raw_h2"): ["4674-4848"],
}
