"""Reading and converting Kaggle-format files into canonical readings frames."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smoke_platform.core.schema import (
    CANONICAL_TO_KAGGLE,
    FIELDS,
    KAGGLE_COLUMNS,
    KAGGLE_TO_CANONICAL,
    pandas_dtype,
)

DEFAULT_SENSOR_ID = "kaggle-0"


class KaggleFormatError(ValueError):
    """The file is not in the Kaggle smoke-detection format."""


def read_kaggle_csv(path: str | Path) -> pd.DataFrame:
    """Read a Kaggle-format CSV: unnamed row-index first column, bracketed headers."""
    frame = pd.read_csv(path, index_col=0)
    missing = [c for c in KAGGLE_COLUMNS if c not in frame.columns]
    if missing:
        raise KaggleFormatError(
            f"{path}: missing column(s) {missing}; found {list(frame.columns)}; "
            f"expected the header ',{','.join(KAGGLE_COLUMNS)}'"
        )
    for column in KAGGLE_COLUMNS:  # every Kaggle column is a number
        if not pd.api.types.is_numeric_dtype(frame[column]):
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column][values.isna() & frame[column].notna()]
            if not bad.empty:
                raise KaggleFormatError(
                    f"{path}: column {column!r} holds {str(bad.iloc[0])[:40]!r} at row "
                    f"{bad.index[0]!r}; allowed: numbers only"
                )
            frame[column] = values
    frame.index.name = "row_index"
    return frame


# A gap this much longer in `UTC` than in `CNT` means the recording stopped (new session).
SESSION_GAP_SECONDS = 60


def sessions_from_counter(cnt: pd.Series, utc: pd.Series) -> pd.Series:
    """Session numbers: `CNT` restarts at every recording session (docs/data.md); a clock jump
    that the counter does not share also starts one (excerpts of the file)."""
    d_cnt, d_utc = cnt.diff(), utc.diff()
    new = d_cnt.isna() | (d_cnt <= 0) | ((d_utc - d_cnt) > SESSION_GAP_SECONDS)
    return (new.cumsum() - 1).astype("int64")


def to_canonical(frame: pd.DataFrame, sensor_id: str = DEFAULT_SENSOR_ID) -> pd.DataFrame:
    """Rename Kaggle columns to canonical names and set canonical dtypes; values unchanged.

    `UTC` (Unix seconds) becomes the UTC timestamp `ts`. Files without `session_id`
    get one from the `CNT` restarts; files without `sensor_id` get `sensor_id`.
    """
    out = frame.rename(columns=KAGGLE_TO_CANONICAL)
    if "row_index" not in out.columns:
        out = out.reset_index(names="row_index") if out.index.name == "row_index" else out
    if "session_id" not in out.columns:
        session = sessions_from_counter(out["cnt"], out["ts"].astype("int64"))
        out["session_id"] = "s" + session.astype(str).str.zfill(4)
    if not pd.api.types.is_datetime64_any_dtype(out["ts"]):
        out["ts"] = pd.to_datetime(out["ts"], unit="s", utc=True)
    if "sensor_id" not in out.columns:
        out["sensor_id"] = sensor_id
    return _with_dtypes(out)


def _with_dtypes(out: pd.DataFrame) -> pd.DataFrame:
    for spec in FIELDS:
        if spec.name not in out.columns:
            continue
        if spec.dtype == "str":
            out[spec.name] = out[spec.name].astype("str")
        elif spec.dtype != "datetime":
            out[spec.name] = out[spec.name].astype(pandas_dtype(spec))
    ordered = [f.name for f in FIELDS if f.name in out.columns]
    return out[ordered + [c for c in out.columns if c not in ordered]].reset_index(drop=True)


def to_kaggle(canonical: pd.DataFrame) -> pd.DataFrame:
    """The inverse of `to_canonical` for the Kaggle columns (used to write Kaggle CSVs)."""
    out = canonical.rename(columns=CANONICAL_TO_KAGGLE)
    out["UTC"] = (out["UTC"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return out[list(KAGGLE_COLUMNS)]


def plain_records(canonical: pd.DataFrame) -> Iterator[dict]:
    """`canonical`'s rows as dicts of plain Python values, `ts` (UTC) as ISO-8601 text:
    built column by column (several times cheaper than `to_dict("records")`)."""
    columns = list(canonical.columns)
    values = [_iso_utc(canonical[c]) if c == "ts" else _plain(canonical[c]) for c in columns]
    return (dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True))


def _plain(column: pd.Series) -> list[Any]:
    """Plain Python values; a nullable column's missing values as None."""
    if isinstance(column.dtype, pd.api.extensions.ExtensionDtype):
        return column.to_numpy(dtype=object, na_value=None).tolist()
    return column.tolist()


def _iso_utc(ts: pd.Series) -> list[str | None]:
    """UTC times as `Timestamp.isoformat()` writes them (seconds, or microseconds when
    one has a fraction); a missing time as None."""
    ns = ts.to_numpy(dtype="datetime64[ns]")
    whole = bool((ns.astype("int64") % 1_000_000_000 == 0).all())
    text = np.datetime_as_string(ns, unit="s" if whole else "us").tolist()
    return [None if t == "NaT" else t + "+00:00" for t in text]


def to_records(canonical: pd.DataFrame) -> list[dict]:
    """JSON-ready reading dicts (Kafka values, service requests): contract fields only,
    `ts` as ISO-8601 UTC, absent optional values left out."""
    fields = [f.name for f in FIELDS if f.name in canonical.columns]
    frame = canonical[fields].astype(object)
    frame["ts"] = canonical["ts"].map(lambda t: t.isoformat())
    records = frame.to_dict("records")
    return [{k: v for k, v in r.items() if not pd.isna(v)} for r in records]
