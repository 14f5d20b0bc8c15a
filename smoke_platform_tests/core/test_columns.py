"""Bulk readings as columns: the JSON accelerator never accepts what the pydantic model
refuses (and reads the same numbers), and Arrow input is checked value by value."""

import json

import numpy as np
import pandas as pd
import pydantic
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from smoke_platform.core.columns import (
    _arrow_table,
    _ipc,
    _plainly_valid,
    arrow_frame,
    arrow_measurements,
    frame_to_arrow,
    json_measurements,
    json_records,
)
from smoke_platform.core.io import to_records
from smoke_platform.core.schema import (
    FIELD_BY_NAME,
    FIELDS,
    HISTORY_FIELDS,
    MAX_COLUMN_ROWS,
    MEASUREMENTS,
    SCORED_INPUTS,
    Reading,
    ReadingColumns,
    ReadingValidationError,
    columns_from_records,
    parse_reading,
    reading_time_window,
)
from smoke_platform.core.simulate import generate_readings

READINGS_BODY = pydantic.create_model("ReadingsBody", readings=(list[Reading], ...))
COLUMNS_BODY = pydantic.create_model("ColumnsBody", columns=(ReadingColumns, ...))


@pytest.fixture(scope="module")
def sample():
    frame = generate_readings(n_rows=40, seed=5, n_sensors=2)
    return frame[[f.name for f in FIELDS if f.name in frame]]  # every field, no row index


def _pydantic_measurements(body: bytes, key: str) -> np.ndarray | None:
    """What the pydantic model makes of `body`: the measurements, or None if it refuses."""
    try:
        parsed = (READINGS_BODY if key == "readings" else COLUMNS_BODY).model_validate_json(body)
    except pydantic.ValidationError:
        return None

    def value(v: object) -> object:  # a rise left out is scored as steady
        return 0.0 if v is None else v

    if key == "readings":
        return np.array([[value(getattr(r, n)) for n in SCORED_INPUTS] for r in parsed.readings])
    return np.column_stack(
        [getattr(parsed.columns, n) or [0.0] * len(parsed.columns) for n in SCORED_INPUTS]
    )


@pytest.mark.parametrize("with_rises", [False, True])
def test_plainly_valid_bodies_take_the_column_path_with_the_models_numbers(sample, with_rises):
    if with_rises:  # a client that keeps the sensors' history sends their rises
        rng = np.random.default_rng(1)
        sample = sample.assign(**{h: rng.uniform(0, 3, len(sample)) for h in HISTORY_FIELDS})
    records = to_records(sample)
    expected = sample.reindex(columns=list(SCORED_INPUTS), fill_value=0.0).to_numpy("float64")
    for key, payload in (
        ("readings", records),
        ("columns", columns_from_records(records)),
    ):
        body = json.dumps({key: payload}).encode()
        fast = json_measurements(body, key)
        assert fast is not None, key  # the accelerator is used, not skipped
        np.testing.assert_array_equal(fast, _pydantic_measurements(body, key))
        np.testing.assert_array_equal(fast, expected)


HOSTILE = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            "20.5",
            "",
            "a\n",
            "a\x00b",
            "x" * 65,
            -1,
            1e308,
            -(10**30),
            10**400,
            1.5,
            0,
            "2022-06-09T00:08:51Z",
            "2022-06-09T00:08:51",
            "2022-06-09t00:08:51z",
            "2022-06-09 00:08:51+05:00",
            "2022-06-09T00:08:51.1234567Z",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2022-02-30T00:00:00Z",
            1654733331,
            [],
            {},
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=70),
)


def _hostile_records(sample, data, rows: int, changes: int) -> list[dict]:
    """Up to `rows` sample readings with up to `changes` values made hostile, fields
    dropped or an unknown field ("smell") added."""
    records = to_records(sample.iloc[: data.draw(st.integers(1, rows))])
    names = [f.name for f in FIELDS] + ["smell"]
    for _ in range(data.draw(st.integers(0, changes))):
        row = data.draw(st.integers(0, len(records) - 1))
        name = data.draw(st.sampled_from(names))
        if data.draw(st.booleans()):
            records[row][name] = data.draw(HOSTILE)
        else:
            records[row].pop(name, None)
    return records


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_column_path_never_accepts_what_the_model_refuses(sample, data):
    """Readings with hostile values, missing and unknown fields, in both JSON forms: when
    the accelerator accepts a body, the pydantic model accepts it too, with the same
    measurements; otherwise the model decides (and names the problem)."""
    records = _hostile_records(sample, data, rows=12, changes=3)
    names = [f.name for f in FIELDS]
    key = data.draw(st.sampled_from(["readings", "columns"]))
    payload = records if key == "readings" else columns_from_records(records, names)
    body = json.dumps({key: payload}).encode()
    fast = json_measurements(body, key)
    if fast is not None:
        reference = _pydantic_measurements(body, key)
        assert reference is not None, body[:400]
        np.testing.assert_array_equal(fast, reference)


def _model_record(message: bytes):
    """What the worker made of one message before `json_records`: pydantic's values."""
    try:
        reading = parse_reading(message)
    except ReadingValidationError:
        return None
    return {**reading.model_dump(), "ts": reading.ts.isoformat()}


def test_plainly_valid_messages_are_read_without_pydantic_to_the_same_record(sample):
    messages = [json.dumps(r).encode() for r in to_records(sample)]
    got = json_records(messages)
    assert all(r is not None for r in got)  # the fast path is used, not skipped
    assert got == [_model_record(m) for m in messages]
    assert json_records([]) == [] and json_records([b"{", b"[]"]) == [None, None]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_message_the_record_path_accepts_is_one_pydantic_accepts_alike(sample, data):
    """Single messages (the stream worker's input) with hostile values, missing and
    unknown fields: whatever `json_records` accepts, pydantic accepts with the same
    record (every field, and `ts` as the same text)."""
    records = _hostile_records(sample, data, rows=6, changes=4)
    messages = [json.dumps(r).encode() for r in records]
    for message, fast in zip(messages, json_records(messages), strict=True):
        if fast is not None:
            assert fast == _model_record(message), message[:400]


@pytest.mark.parametrize("fraction", ["1234567", "9999999", "123456789"])
def test_a_time_finer_than_a_microsecond_reads_as_pydantic_reads_it(sample, fraction):
    """Found by the test above: msgspec rounds `...51.1234567Z` to .123457, pydantic
    truncates it to .123456 (the contract). The record path leaves such a time to pydantic."""
    record = {**to_records(sample.iloc[:1])[0], "ts": f"2022-06-09T00:08:51.{fraction}Z"}
    message = json.dumps(record).encode()
    (fast,) = json_records([message])
    expected = _model_record(message)
    assert expected is not None and fast in (None, expected)


@pytest.mark.parametrize(
    "seconds",
    [r"51.123456\u00377", r"51.12345\u0036\u0037", r"5\u0031.1234567", r"51\u002e1234567"],
)
def test_a_time_spelled_with_unicode_escapes_reads_as_pydantic_reads_it(sample, seconds):
    """JSON may spell any character of a string as \\uXXXX: digits so spelled hid a
    fraction finer than a microsecond from the record path's check, and msgspec rounded
    what pydantic truncates. A message with such escapes is left to pydantic."""
    record = {**to_records(sample.iloc[:1])[0], "ts": "@@TS@@"}
    message = (
        json.dumps(record).encode().replace(b"@@TS@@", f"2022-06-09T00:08:{seconds}Z".encode())
    )
    (fast,) = json_records([message])
    expected = _model_record(message)
    assert expected is not None and fast in (None, expected)


def _arrow(frame: pd.DataFrame) -> bytes:
    return frame_to_arrow(frame)


def test_an_arrow_stream_reads_back_the_readings(sample):
    frame = arrow_frame(_arrow(sample))
    assert list(frame.columns) == list(sample.columns)
    np.testing.assert_array_equal(
        frame[list(MEASUREMENTS)].to_numpy(), sample[list(MEASUREMENTS)].to_numpy()
    )


def _errors(body: bytes, read=arrow_frame) -> list:
    with pytest.raises(ReadingValidationError) as caught:
        read(body)
    return caught.value.errors


def _reference_measurements(body: bytes) -> np.ndarray:
    """The model's inputs as the frame path makes them (every value checked in pandas)."""
    frame = arrow_frame(body)
    return frame.reindex(columns=list(SCORED_INPUTS), fill_value=0.0).to_numpy("float64")


@pytest.mark.parametrize("with_rises", [False, True])
@pytest.mark.parametrize("ts_unit", ["ns", "ms-naive"])
def test_a_plainly_valid_arrow_table_is_read_without_pandas_to_the_same_numbers(
    sample, with_rises, ts_unit
):
    if with_rises:
        rng = np.random.default_rng(1)
        sample = sample.assign(**{h: rng.uniform(0, 3, len(sample)) for h in HISTORY_FIELDS})
    if ts_unit == "ms-naive":  # a naive timestamp is UTC; any unit
        sample = sample.assign(ts=sample.ts.dt.tz_localize(None).astype("datetime64[ms]"))
    body = _arrow(sample)
    assert _plainly_valid(_arrow_table(body)) is not None  # the fast path is used
    expected = sample.reindex(columns=list(SCORED_INPUTS), fill_value=0.0).to_numpy("float64")
    np.testing.assert_array_equal(arrow_measurements(body), expected)
    np.testing.assert_array_equal(_reference_measurements(body), expected)


def _edge_values(name: str) -> st.SearchStrategy:
    """Values at and beyond a field's limits, and the ones a column cannot hold."""
    spec = FIELD_BY_NAME[name]
    if spec.dtype == "str":
        return st.sampled_from([None, "", "a\x00b", "x" * 65, "ok-id", "café"])
    if spec.dtype == "datetime":
        window, now = reading_time_window(), pd.Timestamp.now(tz="UTC")
        ahead, age = (
            pd.Timedelta(seconds=window.max_ahead_s),
            pd.Timedelta(seconds=window.max_age_s),
        )
        return st.sampled_from(
            [
                now + ahead - pd.Timedelta(seconds=3),
                now + ahead + pd.Timedelta(seconds=3),
                now - age + pd.Timedelta(seconds=3),
                now - age - pd.Timedelta(seconds=3),
                pd.Timestamp("1970-01-01", tz="UTC"),
                pd.NaT,
            ]
        )
    lo = -1e308 if spec.min is None else spec.min
    hi = 1e308 if spec.max is None else spec.max
    if spec.dtype == "int":  # an integer column (with nulls): its limits, and past them
        lo_i = -(2**62) if spec.min is None else int(spec.min)
        hi_i = 2**62 if spec.max is None else int(spec.max)
        return st.sampled_from([None, lo_i, hi_i, lo_i - 1, hi_i + 1, 0])
    return st.sampled_from(
        [np.nan, np.inf, -np.inf, lo, hi, np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf), 0.0]
    )


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_arrow_fast_path_answers_as_the_frame_path(sample, data):
    """Tables with values at and past every limit, nulls, missing and unknown columns:
    `arrow_measurements` returns the frame path's numbers or raises its errors."""
    frame = sample.reset_index(drop=True).iloc[: data.draw(st.integers(1, 12))].copy()
    if data.draw(st.booleans()):
        frame = frame.assign(**{h: 1.0 for h in HISTORY_FIELDS})
    for _ in range(data.draw(st.integers(0, 3))):
        name = data.draw(st.sampled_from([*frame.columns, "smell"]))
        action = data.draw(st.sampled_from(["edit", "edit", "drop"]))
        if name == "smell":
            frame["smell"] = "smoky"
        elif action == "drop":
            frame = frame.drop(columns=[name])
        else:
            if FIELD_BY_NAME[name].dtype == "int":
                frame[name] = frame[name].astype("Int64")
            elif FIELD_BY_NAME[name].dtype == "float":
                frame[name] = frame[name].astype("float64")
            elif FIELD_BY_NAME[name].dtype == "str":
                frame[name] = frame[name].astype(object)
            row = data.draw(st.integers(0, len(frame) - 1))
            frame.loc[frame.index[row], name] = data.draw(_edge_values(name))
    if "ts" in frame:  # any zone (the frame path reads it), or none (UTC)
        zone = data.draw(st.sampled_from(["UTC", "Europe/Berlin", "+04:00", None]))
        ts = frame["ts"]
        frame["ts"] = ts.dt.tz_convert(zone) if zone else ts.dt.tz_localize(None)
    body = _arrow(frame)
    try:
        expected = _reference_measurements(body)
    except ReadingValidationError as exc:
        event("refused")
        assert [e.as_dict() for e in _errors(body, arrow_measurements)] == [
            e.as_dict() for e in exc.errors
        ]
    else:
        fast = _plainly_valid(_arrow_table(body)) is not None
        event("accepted on the fast path" if fast else "accepted in pandas")
        np.testing.assert_array_equal(arrow_measurements(body), expected)


@pytest.mark.parametrize(
    ("change", "field", "row", "value", "allowed"),
    [
        (
            lambda f: f.assign(pm2_5=f.pm2_5.where(f.index != 3, -1.0)),
            "pm2_5",
            3,
            -1.0,
            "0 to 100000",
        ),
        (
            lambda f: f.assign(pm2_5=f.pm2_5.where(f.index != 4, np.nan)),
            "pm2_5",
            4,
            None,
            "0 to 100000",
        ),
        (
            lambda f: f.assign(tvoc_ppb=f.tvoc_ppb.where(f.index != 5, np.inf)),
            "tvoc_ppb",
            5,
            None,
            "0 to 60000",
        ),
        (
            lambda f: f.assign(sensor_id=f.sensor_id.where(f.index != 6, "a\x00b")),
            "sensor_id",
            6,
            "a\x00b",
            "1 to 64 characters",
        ),
        (
            lambda f: f.assign(ts=f.ts.where(f.index != 7, pd.Timestamp("1970-01-02", tz="UTC"))),
            "ts",
            7,
            None,
            "days old",
        ),
        (
            lambda f: f.assign(fire_alarm=f.fire_alarm.where(f.index != 8, 7)),
            "fire_alarm",
            8,
            7,
            "0 to 1",
        ),
    ],
)
@pytest.mark.parametrize("read", [arrow_frame, arrow_measurements])
def test_a_bad_arrow_value_names_row_field_value_and_allowed(
    sample, change, field, row, value, allowed, read
):
    [error] = _errors(_arrow(change(sample.reset_index(drop=True))), read)
    assert (error.field, error.row) == (field, row)
    assert allowed in error.allowed
    if value is not None:
        assert error.value == value


@pytest.mark.parametrize("read", [arrow_frame, arrow_measurements])
def test_arrow_shape_errors_name_the_problem(sample, read):
    wrong_type = sample.assign(pm2_5=sample.pm2_5.astype(str))
    [error] = _errors(_arrow(wrong_type), read)
    assert (error.field, error.value) == ("pm2_5", "string") and "float" in error.allowed
    missing = {e.field for e in _errors(_arrow(sample.drop(columns=["raw_h2"])), read)}
    assert missing == {"raw_h2"}
    extra = {e.field for e in _errors(_arrow(sample.assign(smell="smoky")), read)}
    assert extra == {"smell"}
    for body in (b"", b"junk", _arrow(sample)[:100]):
        [error] = _errors(body, read)
        assert error.field == "body" and "Arrow IPC stream" in error.allowed
    [empty] = _errors(_arrow(sample.iloc[:0]), read)
    assert empty.message == "no readings"


@pytest.mark.parametrize("zone", ["Nowhere/X", "Z"])
@pytest.mark.parametrize("read", [arrow_frame, arrow_measurements])
def test_a_timestamp_in_an_unknown_zone_is_refused_naming_the_column(sample, read, zone):
    """Arrow takes any zone name; the values are read in it, so one nobody knows is bad
    input (the fast path leaves every zone but UTC to the frame path)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(sample, preserve_index=False)
    ticks = table.column("ts").cast(pa.int64())
    table = table.set_column(
        table.column_names.index("ts"), "ts", ticks.cast(pa.timestamp("ns", tz=zone))
    )
    [error] = _errors(_ipc(table), read)
    assert error.field == "ts" and repr(zone) in error.message


@pytest.mark.parametrize("read", [arrow_frame, arrow_measurements])
def test_a_timestamp_zone_name_of_invalid_utf8_is_refused_naming_the_column(sample, read):
    """The zone's name is schema metadata that Arrow's full validation leaves unread
    (found by hypothesis: reading it raised UnicodeDecodeError past the validation)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(sample, preserve_index=False)
    ticks = table.column("ts").cast(pa.int64())
    table = table.replace_schema_metadata(None).set_column(
        table.column_names.index("ts"), "ts", ticks.cast(pa.timestamp("ns", tz="UTC"))
    )
    body = _ipc(table)
    assert body.count(b"\x03\x00\x00\x00UTC") == 1
    [error] = _errors(body.replace(b"\x03\x00\x00\x00UTC", b"\x03\x00\x00\x00\xd5TC"), read)
    assert error.field == "ts" and "not UTF-8" in error.message


@pytest.mark.parametrize("read", [arrow_frame, arrow_measurements])
def test_too_many_arrow_rows_is_refused(sample, read):
    big = sample.iloc[np.zeros(MAX_COLUMN_ROWS + 1, dtype=int)]
    [error] = _errors(_arrow(big), read)
    assert error.field == "body" and "too many" in error.message
