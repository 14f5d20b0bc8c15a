"""Pandera schemas for readings frames, built from the one field table in `schema`.

Each named check is its own small `DataFrameSchema` so that Dagster can show (and
block on) each property separately; `run_check` turns pandera's failure cases into
a summary that names the column, the count and sample bad values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from smoke_platform.core.schema import FIELDS, ID_PATTERN, pandas_dtype

# A continuously varying channel that repeats the exact same value this long is stuck.
STUCK_RUN_SECONDS = 600
STUCK_CHANNELS = ("temperature_c", "humidity_pct", "raw_h2", "raw_ethanol", "pressure_hpa")


def is_stuck(run_length: Any) -> Any:
    """The stuck rule, for the batch check here and the stream's trouble signals
    (`core.trouble`): a run of this many identical readings (at 1 Hz, `STUCK_RUN_SECONDS`)."""
    return run_length >= STUCK_RUN_SECONDS


def run_lengths(
    values: np.ndarray,
    starts: np.ndarray,
    grouped: np.ndarray,
    carried_values: np.ndarray,
    carried: np.ndarray,
) -> np.ndarray:
    """Per row and channel, how many readings in a row (this one included) the sensor's
    channel has held exactly this value, continuing each sensor's stored run. `values`:
    rows grouped by sensor (time order within), `starts`: each group's first row,
    `grouped`: each row's sensor number; `carried_values`, `carried`: per sensor and
    channel, the value and length of the run it stored (NaN and 0 for a new sensor). The
    stream's trouble signals call a run `is_stuck` as this module's batch check does."""
    n, width = values.shape
    previous = np.empty_like(values)
    previous[1:] = values[:-1]
    previous[starts] = carried_values
    same = values == previous
    first = np.zeros(n, dtype=bool)
    first[starts] = True
    barrier = ~same | first[:, None]
    rows = np.arange(n)[:, None]
    last_barrier = np.maximum.accumulate(np.where(barrier, rows, 0), axis=0)
    lengths = rows - last_barrier + 1
    cols = np.arange(width)[None, :]
    continued = (same & first[:, None])[last_barrier, cols]
    return lengths + np.where(continued, carried[grouped], 0)


def _dtype_schema() -> pa.DataFrameSchema:
    """Types, and identifiers in the contract's character set (as the service checks)."""
    cols = {
        f.name: pa.Column(
            pandas_dtype(f),
            checks=pa.Check.str_matches(ID_PATTERN) if f.dtype == "str" else None,
            nullable=True,
            required=f.required,
        )
        for f in FIELDS
    }
    return pa.DataFrameSchema(cols, name="schema")


def _null_schema() -> pa.DataFrameSchema:
    cols = {f.name: pa.Column(nullable=False) for f in FIELDS if f.required}
    return pa.DataFrameSchema(cols, name="no_nulls")


def _range_schema() -> pa.DataFrameSchema:
    cols = {}
    for f in FIELDS:
        if f.min is None and f.max is None:
            continue
        check = (
            pa.Check.in_range(f.min, f.max)
            if f.max is not None
            else pa.Check.greater_than_or_equal_to(f.min)
        )
        cols[f.name] = pa.Column(checks=check, nullable=True, required=f.required)
    return pa.DataFrameSchema(cols, name="physical_ranges")


def _cell_mask(df: pd.DataFrame, ok: dict[str, pd.Series]) -> pd.DataFrame:
    """Pandera wants a same-shape boolean frame: True everywhere but the checked cells."""
    mask = pd.DataFrame(True, index=df.index, columns=df.columns)
    for col, values in ok.items():
        mask[col] = values.to_numpy()
    return mask


def _unique(df: pd.DataFrame) -> pd.DataFrame:
    return _cell_mask(df, {"ts": ~df.duplicated(["sensor_id", "ts"], keep=False)})


def _session_key(df: pd.DataFrame) -> pd.Series:
    return df["sensor_id"].astype(str) + "\x1f" + df["session_id"].astype(str)


def _time_ordered(df: pd.DataFrame) -> pd.DataFrame:
    step = df.groupby(_session_key(df), sort=False)["ts"].diff()
    return _cell_mask(df, {"ts": step.isna() | (step > pd.Timedelta(0))})


def _not_stuck(df: pd.DataFrame) -> pd.DataFrame:
    key = _session_key(df)
    out = {}
    for col in STUCK_CHANNELS:
        values = df[col]
        new_run = (values != values.shift()) | (key != key.shift())
        run_id = new_run.cumsum()
        run_len = run_id.map(run_id.value_counts())
        out[col] = ~is_stuck(run_len)
    return _cell_mask(df, out)


def _frame_schema(name: str, fn: Callable[[pd.DataFrame], Any], error: str) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(checks=[pa.Check(fn, name=name, error=error)], name=name)


def quality_schemas() -> dict[str, pa.DataFrameSchema]:
    """Every data-quality property a readings frame must have, by check name."""
    return {
        "schema": _dtype_schema(),
        "no_nulls": _null_schema(),
        "physical_ranges": _range_schema(),
        "unique_readings": _frame_schema(
            "unique_readings", _unique, "duplicate reading: same sensor_id and ts"
        ),
        "time_ordered": _frame_schema(
            "time_ordered", _time_ordered, "ts does not increase within the session"
        ),
        "no_stuck_sensors": _frame_schema(
            "no_stuck_sensors",
            _not_stuck,
            f"value repeated for >= {STUCK_RUN_SECONDS} consecutive readings",
        ),
    }


@dataclass
class CheckOutcome:
    """Result of one quality check on a frame."""

    name: str
    passed: bool
    failure_count: int = 0
    by_column: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        if self.passed:
            return f"{self.name}: passed"
        parts = [
            f"column {col!r}: {info['count']} bad rows ({info['check']}), e.g. {info['samples']}"
            for col, info in self.by_column.items()
        ]
        return f"{self.name}: {self.failure_count} failures; " + "; ".join(parts)


def _expand_frame_cases(cases: pd.DataFrame) -> pd.DataFrame:
    """Frame-level checks report {column: value} dicts; give each its own column/value."""
    is_cell = cases["failure_case"].map(lambda v: isinstance(v, dict))
    if not is_cell.any():
        return cases
    cells = cases[is_cell]
    cells = cells.assign(
        column=cells["failure_case"].map(lambda d: next(iter(d))),
        failure_case=cells["failure_case"].map(lambda d: next(iter(d.values()))),
    )
    if is_cell.all():
        return cells.reset_index(drop=True)
    return pd.concat([cases[~is_cell], cells], ignore_index=True)


def _summarise(name: str, cases: pd.DataFrame) -> CheckOutcome:
    cases = _expand_frame_cases(cases)
    cases = cases.assign(column=cases["column"].fillna(cases["check"]).astype(str))
    by_column: dict[str, dict[str, Any]] = {}
    for col, grp in cases.groupby("column", sort=True):
        samples = pd.unique(grp["failure_case"].astype(str))[:5].tolist()
        by_column[str(col)] = {
            "count": len(grp),
            "check": ", ".join(sorted(set(grp["check"].astype(str)))),
            "samples": samples,
        }
    return CheckOutcome(name, False, len(cases), by_column)


def run_check(name: str, df: pd.DataFrame) -> CheckOutcome:
    """Validate `df` against one named quality schema and summarise the failures."""
    schema = quality_schemas()[name]
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return _summarise(name, exc.failure_cases)
    return CheckOutcome(name, True)


def run_all_checks(df: pd.DataFrame) -> dict[str, CheckOutcome]:
    return {name: run_check(name, df) for name in quality_schemas()}


# A share of readings at a channel's ceiling this far outside what real sensors show is
# worth a look (a saturated sensor, or a simulator that saturates where sensors do not).
CEILING_TOLERANCE = 0.01
CEILINGS = {f.name: float(f.max) for f in FIELDS if f.measurement and f.max is not None}


def ceiling_shares(df: pd.DataFrame) -> dict[str, float]:
    """Per measurement, the share of readings exactly at its sensor's ceiling (where it
    saturates; a value above it is out of range, the physical-ranges check's business)."""
    return {c: float((df[c] == top).mean()) for c, top in CEILINGS.items() if c in df}


def ceiling_ranges(reference: pd.DataFrame, by: str = "excerpt") -> dict[str, tuple[float, float]]:
    """Per measurement, the least and the most of its readings at the ceiling in any one
    excerpt of the real reference readings."""
    per = pd.DataFrame({key: ceiling_shares(rows) for key, rows in reference.groupby(by)}).T
    return {c: (float(per[c].min()), float(per[c].max())) for c in per.columns}


def ceilings_outside(
    shares: dict[str, float], ranges: dict[str, tuple[float, float]], tol: float = CEILING_TOLERANCE
) -> list[str]:
    """The channels whose share at the ceiling leaves the reference range (by more than
    `tol`), each with its figures."""
    return [
        f"{c}: {share:.1%} of readings at its ceiling {CEILINGS[c]:g}, real sensors "
        f"{ranges[c][0]:.1%}-{ranges[c][1]:.1%}"
        for c, share in shares.items()
        if c in ranges and not ranges[c][0] - tol <= share <= ranges[c][1] + tol
    ]
