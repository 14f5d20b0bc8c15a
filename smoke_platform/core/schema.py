"""One table of fields drives the pydantic `Reading`, the pandera schema and the limits.

Limits come from sensor physics and data-sheet output ranges (Sensirion SHT31,
SGP30, SPS30; Bosch BMP388), widened where the real Kaggle file goes beyond the
data sheet, so that real data is never rejected as invalid (see docs/data.md).

Over 400 lines: the reading contract in its three forms (pydantic, pandera, vectorised
checks) is kept in one place so that the forms cannot drift apart.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import pydantic
import pydantic_core


@dataclass(frozen=True)
class FieldSpec:
    """One reading field: canonical name, Kaggle column, type, physical limits."""

    name: str
    kaggle: str | None
    dtype: str  # "float" | "int" | "str" | "datetime"
    unit: str
    description: str
    min: float | None = None
    max: float | None = None
    required: bool = True
    measurement: bool = False
    history: bool = False  # supplied by a client that keeps the sensor's history

    def number(self, value: float) -> str:
        """A bound of this field as a person reads it (an integer field's in full)."""
        return f"{int(value)}" if self.dtype == "int" else f"{value:g}"

    def allowed(self) -> str:
        """Human-readable allowed range, used in every error message."""
        if self.min is not None and self.max is not None:
            kind = "integer" if self.dtype == "int" else "number"
            lo, hi = self.number(self.min), self.number(self.max)
            return f"a JSON {kind}, {lo} to {hi} {self.unit}".rstrip()
        if self.dtype == "datetime":
            return "an ISO-8601 timestamp or Unix seconds, " + reading_time_window().describe()
        if self.dtype == "str":
            return ID_ALLOWED
        if self.dtype in ("int", "float"):
            lower = f", at least {self.number(self.min)}" if self.min is not None else ""
            return f"a JSON {'integer' if self.dtype == 'int' else 'number'}{lower}"
        return f"a {self.dtype}"


def _m(name: str, kaggle: str, unit: str, lo: float, hi: float, desc: str) -> FieldSpec:
    return FieldSpec(name, kaggle, "float", unit, desc, lo, hi, measurement=True)


def _rise(channel: str) -> FieldSpec:
    """How much a channel rose over the sensor's last 30 s (`core.features`); a client
    without the sensor's history leaves it out and the reading is scored as steady."""
    return FieldSpec(
        f"rise_{channel}",
        None,
        "float",
        "",
        f"rise of {channel} over the sensor's last 30 s (log scale; left out: steady)",
        0,
        12,
        required=False,
        history=True,
    )


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("sensor_id", None, "str", "", "device identifier (Kafka key)"),
    FieldSpec("ts", "UTC", "datetime", "", "event time of the reading (UTC)"),
    _m("temperature_c", "Temperature[C]", "°C", -40, 125, "air temperature (SHT31 range)"),
    _m("humidity_pct", "Humidity[%]", "%", 0, 100, "relative humidity"),
    _m("tvoc_ppb", "TVOC[ppb]", "ppb", 0, 60_000, "total VOCs (SGP30 range)"),
    _m("eco2_ppm", "eCO2[ppm]", "ppm", 400, 60_000, "CO2 equivalent (SGP30 range)"),
    _m("raw_h2", "Raw H2", "counts", 0, 65_535, "raw H2 signal (16-bit)"),
    _m("raw_ethanol", "Raw Ethanol", "counts", 0, 65_535, "raw ethanol signal (16-bit)"),
    _m("pressure_hpa", "Pressure[hPa]", "hPa", 300, 1_250, "air pressure (BMP388 range)"),
    _m("pm1_0", "PM1.0", "µg/m³", 0, 100_000, "particulate mass < 1.0 µm"),
    _m("pm2_5", "PM2.5", "µg/m³", 0, 100_000, "particulate mass < 2.5 µm"),
    _m("nc0_5", "NC0.5", "#/cm³", 0, 100_000, "particle count < 0.5 µm"),
    _m("nc1_0", "NC1.0", "#/cm³", 0, 100_000, "particle count < 1.0 µm"),
    _m("nc2_5", "NC2.5", "#/cm³", 0, 100_000, "particle count < 2.5 µm"),
    FieldSpec("cnt", "CNT", "int", "", "sample counter, restarts per session", 0, 2**31 - 1, False),
    FieldSpec("fire_alarm", "Fire Alarm", "int", "", "label: 1 = fire", 0, 1, False),
    FieldSpec("session_id", None, "str", "", "recording session (never a feature)", required=False),
    FieldSpec("scenario", None, "str", "", "simulated scenario name, if known", required=False),
    *(_rise(c) for c in ("tvoc_ppb", "pm1_0", "nc0_5")),
)

FIELD_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
MEASUREMENTS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.measurement)
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
HISTORY_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.history)
# What the model scores: the measurements and, where a client supplies them, the rises.
SCORED_INPUTS: tuple[str, ...] = (*MEASUREMENTS, *HISTORY_FIELDS)
KAGGLE_TO_CANONICAL: dict[str, str] = {f.kaggle: f.name for f in FIELDS if f.kaggle}
CANONICAL_TO_KAGGLE: dict[str, str] = {v: k for k, v in KAGGLE_TO_CANONICAL.items()}
# The real file's columns in file order (after the unnamed row-index column).
KAGGLE_COLUMNS: tuple[str, ...] = tuple(KAGGLE_TO_CANONICAL)
LIMITS: dict[str, tuple[float | None, float | None]] = {f.name: (f.min, f.max) for f in FIELDS}

_PY_TYPES: dict[str, Any] = {"float": float, "int": int, "str": str, "datetime": datetime}


# Identifiers (sensor, session, scenario) are Kafka keys, file and label values: printable
# ASCII of a documented set, so no NUL, control character or path trick gets through.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
ID_ALLOWED = "1 to 64 characters: letters, digits and . _ : @ - (first a letter or digit)"


@dataclass(frozen=True)
class ReadingTimeWindow:
    """How far from now a reading's timestamp may be: a clock fault (1970, 9999) is an
    error, history (the public file is from 2022) and clock skew are not."""

    max_age_days: float
    max_ahead_s: float

    @property
    def max_age_s(self) -> float:
        return self.max_age_days * 86_400

    def describe(self) -> str:
        return (
            f"at most {self.max_age_days:g} days old and {self.max_ahead_s:g} s ahead of now "
            "(SMOKE_READING_MAX_AGE_DAYS, SMOKE_READING_MAX_AHEAD_S)"
        )


@functools.cache
def reading_time_window() -> ReadingTimeWindow:
    from smoke_platform.core.settings import input_settings

    s = input_settings()
    return ReadingTimeWindow(s.reading_max_age_days, s.reading_max_ahead_s)


def _within_window(ts: datetime) -> datetime:
    # Called once per reading (a bulk request: 1,000 times), so it stays cheap: epoch
    # seconds against the clock, no datetime arithmetic (3x faster than timedelta).
    window = reading_time_window()
    ahead = (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).timestamp() - time.time()
    if ahead > window.max_ahead_s or -ahead > window.max_age_s:
        raise pydantic_core.PydanticCustomError(
            "time_window",
            "timestamp {ts} is outside the accepted window",
            {"ts": ts.isoformat()},
        )
    return ts


def _constraints(spec: FieldSpec) -> dict[str, Any]:
    """The limits of one value of a field, as pydantic `Field` arguments."""
    kwargs: dict[str, Any] = {"description": f"{spec.description} [{spec.unit}]".replace(" []", "")}
    if spec.min is not None:
        kwargs["ge"] = spec.min
    if spec.max is not None:
        kwargs["le"] = spec.max
    if spec.dtype == "str":
        kwargs.update(pattern=ID_PATTERN)
    if spec.dtype in ("float", "int"):
        kwargs["strict"] = True  # a number is a JSON number: not true, not "20.5"
    return kwargs


def _value_type(spec: FieldSpec) -> Any:
    """The Python type of one value (timestamps also checked against the time window)."""
    if spec.dtype == "datetime":
        return Annotated[datetime, pydantic.AfterValidator(_within_window)]
    return _PY_TYPES[spec.dtype]


def _pydantic_field(spec: FieldSpec) -> tuple[Any, Any]:
    py_type = _value_type(spec)
    kwargs = _constraints(spec)
    if spec.required:
        return py_type, pydantic.Field(..., **kwargs)
    return py_type | None, pydantic.Field(None, **kwargs)


class _ReadingBase(pydantic.BaseModel):
    # No Python validators: validation stays in pydantic-core (1,000 readings in ~5 ms).
    # A timestamp without an offset is UTC; consumers convert with `utc=True`.
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


READING_PERIOD_S = 1.0  # a sensor reports once a second (the reference data's 1 Hz)

# `Reading` is the Kafka message value and the BentoML input type.
Reading: type[pydantic.BaseModel] = pydantic.create_model(  # type: ignore[call-overload]
    "Reading",
    __base__=_ReadingBase,
    __doc__="One 1 Hz sensor reading in canonical (snake_case) names.",
    **{spec.name: _pydantic_field(spec) for spec in FIELDS},
)


# ---- column form of the same contract (bulk scoring) -----------------------------------

MAX_COLUMN_ROWS = 50_000


def _column_field(spec: FieldSpec) -> tuple[Any, Any]:
    """One field as a list of values, each checked against the field's limits in
    pydantic-core; an error's location is (field, row)."""
    limits = _constraints(spec)
    item: Any = Annotated[_value_type(spec), pydantic.Field(**limits)]
    kwargs = {"description": limits["description"], "max_length": MAX_COLUMN_ROWS}
    if spec.required:
        return list[item], pydantic.Field(..., **kwargs)  # type: ignore[valid-type]
    return list[item | None] | None, pydantic.Field(None, **kwargs)  # type: ignore[valid-type]


class _ColumnsBase(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @pydantic.model_validator(mode="after")
    def _same_length(self) -> _ColumnsBase:
        expected = len(self)
        for name, values in self:
            if values is not None and len(values) != expected:
                raise pydantic_core.PydanticCustomError(
                    "column_length",
                    "{field} has {length} values but {reference} has {expected}",
                    {
                        "field": name,
                        "length": len(values),
                        "reference": REQUIRED[0],
                        "expected": expected,
                    },
                )
        return self

    def __len__(self) -> int:
        return len(getattr(self, REQUIRED[0]))


# `ReadingColumns` carries many readings as one list per field: what a bulk client (the
# stream worker) sends; parsing it costs a fraction of a list of `Reading` objects.
ReadingColumns: type[_ColumnsBase] = pydantic.create_model(  # type: ignore[call-overload]
    "ReadingColumns",
    __base__=_ColumnsBase,
    __doc__="Readings as columns: one list per field, all the same length (one value per "
    "reading), each value within the field's limits.",
    **{spec.name: _column_field(spec) for spec in FIELDS},
)


def columns_from_records(
    records: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None
) -> dict[str, list[Any]]:
    """Records (dicts in canonical names) -> the `ReadingColumns` JSON form."""
    if names is None:
        present = set().union(*records) if records else set()
        names = [n for n in FIELD_BY_NAME if n in present]
    return {n: [r.get(n) for r in records] for n in names}


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


@dataclass(frozen=True)
class FieldError:
    """A validation problem a person can act on: which field, what value, what is allowed.

    `row` is the position in a batch (None for a single reading)."""

    field: str
    value: Any
    message: str
    allowed: str
    row: int | None = None
    kind: str = ""  # pydantic's error type, e.g. "missing", "less_than_equal"

    def __str__(self) -> str:
        shown = repr(self.value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        where = f"row {self.row}: " if self.row is not None else ""
        return f"{where}{self.field}={shown}: {self.message} (allowed: {self.allowed})"

    def as_dict(self) -> dict[str, Any]:
        value = self.value if not isinstance(self.value, _Missing) else None
        return {
            "row": self.row,
            "field": self.field,
            "value": value
            if isinstance(value, (int, str, bool, type(None)))
            or (isinstance(value, float) and math.isfinite(value))
            else repr(value),  # NaN and infinity are not JSON
            "missing": isinstance(self.value, _Missing),
            "message": self.message,
            "allowed": self.allowed,
        }


class ReadingValidationError(ValueError):
    """Raised by `parse_reading`; `errors` lists every bad field."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("invalid reading: " + "; ".join(str(e) for e in errors))


def _lookup(payload: Any, loc: list[Any]) -> Any:
    """The value at `loc` in a decoded JSON payload, or MISSING."""
    node = payload
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return node


def _column_length_ctx(columns: Any) -> dict[str, Any]:
    """The first column of a `ReadingColumns` payload whose length differs from the
    reference column's (for servers that pass on pydantic errors without their `ctx`)."""
    if not isinstance(columns, Mapping) or not isinstance(columns.get(REQUIRED[0]), list):
        return {}
    expected = len(columns[REQUIRED[0]])
    for name, values in columns.items():
        if isinstance(values, list) and len(values) != expected:
            return {"field": name, "length": len(values), "expected": expected}
    return {}


def field_errors(errors: Sequence[Mapping[str, Any]], payload: Any = None) -> list[FieldError]:
    """Turn pydantic error dicts into `FieldError`s naming row, field, value and allowed range.

    `loc` may start with an argument name and a row index (`["readings", 3, "pm2_5"]`);
    where an error carries no `input`, the value is looked up in `payload` by `loc`.
    """
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        rows = [p for p in loc if isinstance(p, int)]
        names = [str(p) for p in loc if not isinstance(p, int)]
        name = names[-1] if names else "<reading>"
        spec = FIELD_BY_NAME.get(name)
        ctx: Mapping[str, Any] = {}
        if err.get("type") == "column_length":  # ReadingColumns: a list of the wrong length
            ctx = err.get("ctx") or _column_length_ctx(_lookup(payload, loc) if loc else payload)
        if "field" in ctx:
            out.append(
                FieldError(
                    ctx["field"],
                    ctx["length"],
                    err.get("msg", "wrong length"),
                    f"{ctx['expected']} values, one per reading",
                    None,
                    "column_length",
                )
            )
            continue
        if err.get("type") == "extra_forbidden":
            allowed = "only the fields " + ", ".join(FIELD_BY_NAME)
        else:
            allowed = spec.allowed() if spec else "a JSON object of reading fields"
        if err.get("type") == "missing":
            value: Any = MISSING
        elif "input" in err:
            value = err["input"]
        else:
            value = _lookup(payload, loc) if loc else payload
        field = name if spec or err.get("type") == "extra_forbidden" else ".".join(map(str, loc))
        out.append(
            FieldError(
                field or name,
                value,
                err.get("msg", "invalid"),
                allowed,
                rows[0] if rows else None,
                str(err.get("type", "")),
            )
        )
    return out


def parse_reading(data: Any) -> pydantic.BaseModel:
    """Validate one reading (dict or JSON bytes/str) or raise `ReadingValidationError`."""
    try:
        if isinstance(data, (bytes, bytearray, str)):
            return Reading.model_validate_json(data)
        return Reading.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ReadingValidationError(field_errors(exc.errors(), data)) from exc


# ---- batch (DataFrame) form of the same contract --------------------------------------

PANDAS_DTYPES: dict[str, str] = {
    "float": "float64",
    "int": "Int64",
    "str": "str",
    "datetime": "datetime64[ns, UTC]",
}


def pandas_dtype(spec: FieldSpec) -> str:
    """The pandas dtype of a field in a canonical readings frame."""
    return PANDAS_DTYPES[spec.dtype]


# ---- column-wise checks (bulk paths: Arrow, and JSON without per-reading objects) ------

MAX_REPORTED_ERRORS = 100


def check_frame(frame: Any, limit: int = MAX_REPORTED_ERRORS) -> list[FieldError]:
    """Every value of a canonical readings frame against the field table, column by column
    (vectorised: no object per reading). The frame holds each field in its `PANDAS_DTYPES`
    kind (numbers as float64/int64, `ts` as UTC datetimes, identifiers as Python str or
    None); a caller that could not produce that kind for a column reports a type error
    itself. Returns at most `limit` errors, each naming row, field, value and allowed."""
    import numpy as np
    import pandas as pd

    errors: list[FieldError] = []

    def flag(spec: FieldSpec, bad: Any, message: str, kind: str) -> None:
        for row in np.flatnonzero(np.asarray(bad))[: max(limit - len(errors), 0)]:
            value = frame[spec.name].iat[row] if spec.name in frame else MISSING
            value = value.item() if hasattr(value, "item") else value
            if isinstance(value, datetime):  # shown as text (a corrupt one cannot print)
                try:
                    value = value.isoformat()
                except (OverflowError, ValueError):
                    value = "<a timestamp out of any calendar>"
            errors.append(FieldError(spec.name, value, message, spec.allowed(), int(row), kind))

    unknown = [c for c in frame.columns if c not in FIELD_BY_NAME]
    for name in unknown[:limit]:
        errors.append(
            FieldError(
                str(name),
                "<column>",
                "Extra inputs are not permitted",
                "only the fields " + ", ".join(FIELD_BY_NAME),
                None,
                "extra_forbidden",
            )
        )
    for spec in FIELDS:
        if spec.name not in frame:
            if spec.required:
                errors.append(
                    FieldError(
                        spec.name, MISSING, "Field required", spec.allowed(), None, "missing"
                    )
                )
            continue
        column = frame[spec.name]
        if spec.dtype in ("float", "int"):  # NaN stands for null too: all are required
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            finite = np.isfinite(values)
            flag(
                spec,
                ~finite,
                "Input should be a finite number (not null, NaN or inf)",
                "finite_number",
            )
            if spec.min is not None:
                flag(
                    spec,
                    finite & (values < spec.min),
                    f"Input should be greater than or equal to {spec.number(spec.min)}",
                    "greater_than_equal",
                )
            if spec.max is not None:
                flag(
                    spec,
                    finite & (values > spec.max),
                    f"Input should be less than or equal to {spec.number(spec.max)}",
                    "less_than_equal",
                )
            continue
        null = column.isna().to_numpy()
        if spec.required:
            flag(spec, null, "Field required", "missing")
        if spec.dtype == "str":
            flag(
                spec,
                ~null & ~ids_valid(column.to_numpy(dtype=object)),
                f"String should match pattern '{ID_PATTERN}'",
                "string_pattern_mismatch",
            )
        elif spec.dtype == "datetime":
            window = reading_time_window()
            now = pd.Timestamp.now(tz="UTC")
            stamps = (
                column
                if isinstance(column.dtype, pd.DatetimeTZDtype)
                else pd.to_datetime(column, utc=True)
            )
            outside = ~null & (
                (stamps > now + pd.Timedelta(seconds=window.max_ahead_s))
                | (stamps < now - pd.Timedelta(seconds=window.max_age_s))
            ).to_numpy(dtype=bool)
            flag(spec, outside, "timestamp is outside the accepted window", "time_window")
        if len(errors) >= limit:
            break
    return errors[:limit]


def ids_valid(values: Any) -> Any:
    """Per value, whether it is an identifier `ID_PATTERN` allows (None: True; the caller
    decides about missing values). A batch repeats a fleet's few ids: each distinct text is
    matched once; only texts are hashed and compared, so no other value (a list, NaN,
    pandas' NA) is ever asked for equality."""
    import numpy as np

    texts = {v for v in values if isinstance(v, str)}
    refused = {v for v in texts if _ID_RE.fullmatch(v) is None}
    return np.fromiter(
        (v not in refused if isinstance(v, str) else v is None for v in values),
        dtype=bool,
        count=len(values),
    )
