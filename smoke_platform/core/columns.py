"""Bulk readings as columns, without one Python object per reading.

Two inputs end in the same canonical frame, checked value by value against the field
table by `check_frame` (vectorised):

- JSON (`{"readings": [...]}` or `{"columns": {...}}`): `json_measurements` is an accelerator
  in front of the pydantic models. It accepts only what is plainly valid (JSON numbers
  within limits, identifiers matching the pattern, RFC 3339 timestamps within the window)
  and otherwise returns None, so the caller validates with the pydantic model, whose
  error messages stay the reference. A property test holds the two to the same answers.
- Apache Arrow IPC streams (`arrow_frame`, and `arrow_measurements` for the model's
  inputs): typed columns; wrong types, nulls, NaN and out-of-range values are
  `ReadingValidationError`s naming row, field, value and allowed.

Over 400 lines: both bulk inputs, each with its fast path beside the reference path that
names every bad value, kept together so the two stay held to the same answers.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd

from smoke_platform.core.schema import (
    FIELD_BY_NAME,
    FIELDS,
    MAX_COLUMN_ROWS,
    MEASUREMENTS,
    SCORED_INPUTS,
    FieldError,
    FieldSpec,
    ReadingValidationError,
    check_frame,
    ids_valid,
    reading_time_window,
)

IDS = tuple(f.name for f in FIELDS if f.dtype == "str")

ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"


def _msgspec_type(spec: FieldSpec) -> Any:
    """One value of a field as a msgspec type with the field's limits (checked in C)."""
    import msgspec

    if spec.dtype == "datetime":
        return datetime  # RFC 3339, parsed in C (pydantic accepts every form it does)
    if spec.dtype == "str":  # the pattern: `ids_valid` on the whole column afterwards
        return Annotated[str, msgspec.Meta(max_length=64)]
    bounds = {"ge": spec.min, "le": spec.max}
    kind = float if spec.dtype == "float" else int
    limits: dict[str, Any] = {k: v for k, v in bounds.items() if v is not None}
    return Annotated[kind, msgspec.Meta(**limits)]


def _struct(name: str, of: Any) -> Any:
    import msgspec

    fields = [(f.name, of(f)) if f.required else (f.name, of(f) | None, None) for f in FIELDS]
    return msgspec.defstruct(name, fields, forbid_unknown_fields=True)


@functools.cache
def _record() -> Any:
    """One reading as a msgspec struct, built from the field table."""
    return _struct("ReadingRecord", _msgspec_type)


@functools.cache
def _decoders() -> dict[str, Any]:
    """msgspec decoders of the two JSON bulk bodies and of one reading."""
    import msgspec

    struct, record = _struct, _record()
    columns = struct(
        "ReadingColumnLists",
        lambda f: Annotated[list[_msgspec_type(f)], msgspec.Meta(max_length=MAX_COLUMN_ROWS)],  # type: ignore[misc]
    )
    bodies = {
        "readings": msgspec.defstruct(
            "ReadingsBody",
            [("readings", Annotated[list[record], msgspec.Meta(max_length=MAX_COLUMN_ROWS)])],  # type: ignore[valid-type]
            forbid_unknown_fields=True,
        ),
        "columns": msgspec.defstruct(
            "ColumnsBody", [("columns", columns)], forbid_unknown_fields=True
        ),
    }
    return {
        "record": msgspec.json.Decoder(record),
        **{key: msgspec.json.Decoder(body) for key, body in bodies.items()},
    }


def _in_window(stamps: list[datetime]) -> np.ndarray:
    """Per timestamp, whether it lies in the accepted window (naive ones are UTC)."""
    window = reading_time_window()
    seconds = np.fromiter(
        ((d if d.tzinfo is not None else d.replace(tzinfo=UTC)).timestamp() for d in stamps),
        dtype="float64",
        count=len(stamps),
    )
    now = time.time()
    return (seconds - now <= window.max_ahead_s) & (now - seconds <= window.max_age_s)


def _within_window(stamps: list[datetime]) -> bool:
    """Every timestamp lies in the accepted window: only the earliest and the latest are
    converted (datetimes of one kind compare in C; naive beside aware, each is)."""
    try:
        ends = [min(stamps), max(stamps)]
    except TypeError:  # naive (UTC) beside aware: not comparable, so each one
        ends = stamps
    return bool(_in_window(ends).all())


# A time of day with more than six fractional digits: left to pydantic, whose reading of
# it (truncated to the microsecond) is the contract.
_SUB_MICROSECOND = re.compile(rb"\d:\d\d[.,]\d{7}")
# The same led by its literal, which the regex engine finds fast (4x on a reading): every
# match of the first contains one of this; most messages have neither.
_SUB_MICROSECOND_HINT = re.compile(rb":\d\d[.,]\d{7}")
# An escaped NUL: msgspec (0.22) stops reading a timestamp at it and drops the rest (its
# zone), where pydantic refuses the value; left to pydantic.
_ESCAPED_NUL = b"\\u0000"
# Any \u escape: a character of a string spelled out, which the checks above cannot see
# (a digit so spelled hides a fraction finer than a microsecond); such a reading is
# pydantic's to read. Readings rarely have one (identifiers are ASCII).
_UNICODE_ESCAPE = b"\\u"


def json_records(messages: list[bytes]) -> list[dict[str, Any] | None]:
    """Per message (one JSON reading each, as on Kafka), its validated values as
    `parse_reading(message).model_dump()` has them (`ts` as ISO 8601 text) when every value
    is plainly valid, or None where the pydantic model must decide (and name what is
    wrong). No pydantic object per reading: the stream worker's validation."""
    import msgspec

    decode = _decoders()["record"].decode
    structs: list[Any] = []
    for raw in messages:
        if _UNICODE_ESCAPE in raw or (
            _SUB_MICROSECOND_HINT.search(raw) and _SUB_MICROSECOND.search(raw)
        ):
            structs.append(None)  # msgspec rounds such a time (pydantic truncates it), or
            continue  # an escape may hide one (or a NUL, at which msgspec cuts a time)
        try:
            structs.append(decode(raw))
        except Exception:  # untrusted bytes (msgspec raises UnicodeDecodeError on invalid
            structs.append(None)  # UTF-8 inside a string): pydantic decides and names it
    decoded = [r for r in structs if r is not None]
    if not decoded:
        return [None] * len(structs)
    try:
        stamps = [r.ts for r in decoded]  # each one converted only when an end is outside
        ok = np.ones(len(stamps), bool) if _within_window(stamps) else _in_window(stamps)
        for name in IDS:
            ok &= ids_valid([getattr(r, name) for r in decoded])
    except Exception:  # never one message's failure for the batch: each alone
        return [None] * len(structs)
    out: list[dict[str, Any] | None] = []
    fine = iter(ok.tolist())
    for r in structs:
        if r is None or not next(fine):
            out.append(None)
            continue
        record = msgspec.structs.asdict(r)
        record["ts"] = r.ts.isoformat()
        out.append(record)
    return out


def scored_array(columns: Any, rows: int) -> np.ndarray:
    """Rows x `SCORED_INPUTS` float64 from one list per field (a mapping or an object with
    the fields as attributes); a rise left out (the whole list, or one reading's) is 0."""

    def get(name: str) -> Any:
        return columns.get(name) if isinstance(columns, dict) else getattr(columns, name, None)

    out = np.zeros((rows, len(SCORED_INPUTS)))
    for i, name in enumerate(SCORED_INPUTS):
        values = get(name)
        if values is None:
            continue
        if name not in MEASUREMENTS and isinstance(values, (list, tuple)):
            values = [0.0 if v is None else v for v in values]
        out[:, i] = np.asarray(values, dtype="float64")
    return out


def json_measurements(body: bytes, key: str) -> np.ndarray | None:
    """What the model scores (rows x `SCORED_INPUTS`, float64) of a JSON bulk request whose every
    value is plainly valid, or None when the pydantic model must decide (it then accepts
    the rest or names what is wrong).

    `key` is `readings` (a list of reading objects) or `columns` (one list per field).
    Untrusted bytes: whatever fails here (msgspec raises `UnicodeDecodeError` on invalid
    UTF-8 inside a string) is the pydantic model's to name, never a server error."""
    if _ESCAPED_NUL in body:
        return None  # msgspec would cut a timestamp at it (see `json_records`)
    try:
        return _json_measurements(body, key)
    except Exception:
        return None


def _json_measurements(body: bytes, key: str) -> np.ndarray | None:
    import msgspec

    try:
        decoded = getattr(_decoders()[key].decode(body), key)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if key == "readings":
        if not decoded:
            return None
        # one tuple per reading, transposed in C: a list per field without a getattr each
        fields = type(decoded[0]).__struct_fields__
        values = list(zip(*map(msgspec.structs.astuple, decoded), strict=True))
        columns = {n: values[fields.index(n)] for n in ("ts", *SCORED_INPUTS, *IDS)}
    else:
        columns = {f.name: getattr(decoded, f.name) for f in FIELDS}
        lengths = {len(v) for v in columns.values() if v is not None}
        if len(lengths) != 1 or lengths == {0}:
            return None
    if not _within_window(columns["ts"]):
        return None
    # each distinct identifier once (a request repeats a fleet's few; str or None here)
    if not all(ids_valid(list(set(columns[n]))).all() for n in IDS if columns[n] is not None):
        return None
    return scored_array(columns, len(columns["ts"]))


# ---- Apache Arrow ---------------------------------------------------------------------

ARROW_ALLOWED = (
    f"an Apache Arrow IPC stream ({ARROW_MEDIA_TYPE}) with one column per reading field: "
    "numbers as float or integer columns, cnt and fire_alarm as integers, ts as a "
    "timestamp, identifiers as strings; at most "
    f"{MAX_COLUMN_ROWS:,} rows"
)


def _arrow_kind_ok(spec_dtype: str, arrow_type: Any) -> bool:
    import pyarrow as pa

    if spec_dtype == "float":
        return bool(pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type))
    if spec_dtype == "int":
        return bool(pa.types.is_integer(arrow_type))
    if spec_dtype == "str":
        return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))
    return bool(pa.types.is_timestamp(arrow_type))


def _arrow_table(body: bytes) -> Any:
    """The Arrow table of an IPC stream of readings, its structure and column types
    checked; `ReadingValidationError` naming what is wrong."""
    import pyarrow as pa

    def fail(field: str, value: Any, message: str) -> None:
        raise ReadingValidationError(
            [FieldError(field, value, message, ARROW_ALLOWED, None, "arrow")]
        )

    try:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        # Untrusted bytes: check every offset, length and UTF-8 string before any value
        # is read (a corrupted stream can otherwise crash the process).
        table.validate(full=True)
        names = table.column_names
    except (pa.ArrowException, OSError, ValueError) as exc:  # UnicodeDecodeError is one
        fail("body", f"{len(body):,} bytes", f"not an Arrow IPC stream ({str(exc)[:200]})")
    for field in table.schema:  # a zone's name is metadata: validate() leaves it unread
        if pa.types.is_timestamp(field.type):
            try:
                field.type.tz  # noqa: B018 (decoding it is the check)
            except UnicodeDecodeError as exc:
                fail(field.name, "timestamp zone", f"zone name is not UTF-8 ({exc.reason})")
    if table.num_rows == 0:
        fail("body", "0 rows", "no readings")
    if table.num_rows > MAX_COLUMN_ROWS:
        fail("body", f"{table.num_rows:,} rows", "too many readings in one request")
    if len(set(names)) != len(names):
        fail("body", ", ".join(names)[:200], "a column name appears twice")
    wrong = [
        FieldError(
            name,
            str(table.schema.field(name).type),
            "wrong Arrow type",
            FIELD_BY_NAME[name].allowed() + f" ({_ARROW_KINDS[FIELD_BY_NAME[name].dtype]})",
            None,
            "arrow_type",
        )
        for name in names
        if name in FIELD_BY_NAME
        and not _arrow_kind_ok(FIELD_BY_NAME[name].dtype, table.schema.field(name).type)
    ]
    if wrong:
        raise ReadingValidationError(wrong)
    return table


def arrow_frame(body: bytes) -> pd.DataFrame:
    """The canonical frame of an Arrow IPC stream of readings; `ReadingValidationError`
    naming the field (and row, value, allowed) for anything else."""
    return _frame_of(_arrow_table(body))


def arrow_measurements(body: bytes) -> np.ndarray:
    """What the model scores (rows x `SCORED_INPUTS`, float64) of an Arrow IPC stream of
    readings, or `ReadingValidationError` as `arrow_frame` raises it.

    A table whose every value is plainly valid is checked on its Arrow columns (null
    counts, each column's extremes, each distinct identifier once), without a pandas
    frame; anything else goes through `arrow_frame`, whose errors name row and value."""
    table = _arrow_table(body)
    array = _plainly_valid(table)
    if array is not None:
        return array
    frame = _frame_of(table)  # raises, naming every bad value
    return scored_array({c: frame[c].to_numpy() for c in SCORED_INPUTS if c in frame}, len(frame))


# Zones a timestamp column is read in without pandas: UTC by the names pandas reads too
# (it refuses "Z", as the frame path then says), or none (UTC).
_UTC_ZONES = (None, "UTC", "utc", "+00:00", "Etc/UTC")


def _plainly_valid(table: Any) -> np.ndarray | None:
    """The scored array of `table` when every value lies plainly inside the field table's
    limits (a timestamp at least a second inside the window), else None."""
    import pyarrow as pa

    if any(name not in FIELD_BY_NAME for name in table.column_names):
        return None
    out = np.zeros((table.num_rows, len(SCORED_INPUTS)))
    at = {name: i for i, name in enumerate(SCORED_INPUTS)}
    for spec in FIELDS:
        if spec.name not in table.column_names:
            if spec.required:
                return None
            continue
        column = table.column(spec.name)
        if column.null_count and (spec.required or spec.dtype != "str"):
            return None
        if spec.dtype in ("float", "int"):
            values = column.to_numpy().astype("float64", copy=False)
            if not np.isfinite(values).all():
                return None
            if spec.min is not None and values.min() < spec.min:
                return None
            if spec.max is not None and values.max() > spec.max:
                return None
            if spec.name in at:
                out[:, at[spec.name]] = values
        elif spec.dtype == "str":
            if not ids_valid(column.unique().drop_null().to_pylist()).all():
                return None
        else:  # timestamps: epoch units (a naive one is UTC)
            if column.type.tz not in _UTC_ZONES:  # a zone pandas must read (or refuse)
                return None
            per_second = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[column.type.unit]
            ticks = column.cast(pa.int64()).to_numpy()
            window, now = reading_time_window(), time.time()
            if ticks.max() / per_second - now > window.max_ahead_s - 1:
                return None
            if now - ticks.min() / per_second > window.max_age_s - 1:
                return None
    return out


def _frame_of(table: Any) -> pd.DataFrame:
    """`table` (from `_arrow_table`) as the canonical frame, every value checked."""
    columns = {}
    for name in table.column_names:
        try:
            columns[name] = _arrow_column(table.column(name), FIELD_BY_NAME.get(name))
        except Exception as exc:  # untrusted bytes: any failure to read is bad input
            spec = FIELD_BY_NAME.get(name)
            raise ReadingValidationError(
                [
                    FieldError(
                        name,
                        str(table.schema.field(name).type),
                        f"column cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
                        spec.allowed() if spec else ARROW_ALLOWED,
                        None,
                        "arrow",
                    )
                ]
            ) from None
    frame = pd.DataFrame(columns)
    errors = check_frame(frame)
    if errors:
        raise ReadingValidationError(errors)
    return frame


_ARROW_KINDS = {
    "float": "a float or integer column",
    "int": "an integer column",
    "str": "a string column",
    "datetime": "a timestamp column",
}


def _arrow_column(column: Any, spec: Any) -> Any:
    """One Arrow column as its canonical pandas kind (nulls kept for the checks)."""
    if spec is None:
        return column.to_pandas()
    if spec.dtype in ("float", "int"):
        # Float64 with NaN for nulls (an integer column with nulls as well).
        return column.to_numpy(zero_copy_only=False).astype("float64", copy=False)
    if spec.dtype == "datetime":
        stamps = pd.Series(column.to_pandas())
        return stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    return pd.Series(column.to_pylist(), dtype=object)


def frame_to_arrow(frame: pd.DataFrame) -> bytes:
    """A readings frame as the Arrow IPC stream `arrow_frame` reads (what bulk clients
    send): measurements as float64, `ts` as a UTC timestamp."""
    import pyarrow as pa

    return _ipc(pa.Table.from_pandas(frame, preserve_index=False))


def records_to_arrow(records: list[dict[str, Any]], names: tuple[str, ...]) -> bytes:
    """Readings (dicts in canonical names, e.g. validated Kafka messages) as an Arrow IPC
    stream of the fields `names`, each in its Arrow type."""
    import pyarrow as pa

    types = {
        "float": pa.float64(),
        "int": pa.int64(),
        "str": pa.string(),
        "datetime": pa.timestamp("us", tz="UTC"),
    }
    schema = pa.schema([pa.field(n, types[FIELD_BY_NAME[n].dtype]) for n in names])

    def column(name: str) -> Any:
        values = [r.get(name) for r in records]
        if FIELD_BY_NAME[name].dtype == "datetime":  # datetimes or ISO text; naive is UTC
            return pd.to_datetime(values, utc=True, format="ISO8601")
        return values

    return _ipc(pa.Table.from_pydict({n: column(n) for n in names}, schema))


def _ipc(table: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
