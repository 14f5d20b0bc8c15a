"""The reading contract: one field table drives pydantic, pandera and the limits."""

import json
import math

import pandas as pd
import pytest

from smoke_platform.core.quality import run_check
from smoke_platform.core.schema import (
    FIELDS,
    KAGGLE_TO_CANONICAL,
    MEASUREMENTS,
    Reading,
    ReadingColumns,
    ReadingValidationError,
    columns_from_records,
    field_errors,
    parse_reading,
)

GOOD = {
    "sensor_id": "sensor-001",
    "ts": 1654733331,
    "temperature_c": 20.0,
    "humidity_pct": 57.36,
    "tvoc_ppb": 0,
    "eco2_ppm": 400,
    "raw_h2": 12306,
    "raw_ethanol": 18520,
    "pressure_hpa": 939.735,
    "pm1_0": 0.0,
    "pm2_5": 0.0,
    "nc0_5": 0.0,
    "nc1_0": 0.0,
    "nc2_5": 0.0,
}


def test_good_reading_parses_with_utc_time():
    reading = parse_reading(GOOD)
    assert reading.ts.isoformat() == "2022-06-09T00:08:51+00:00"
    assert reading.humidity_pct == pytest.approx(57.36)


def test_json_bytes_parse_like_dicts():
    assert parse_reading(json.dumps(GOOD).encode()) == parse_reading(GOOD)


@pytest.mark.parametrize(
    ("change", "field", "value_text", "allowed_text"),
    [
        ({"humidity_pct": 130.5}, "humidity_pct", "130.5", "0 to 100 %"),
        ({"pressure_hpa": 12.0}, "pressure_hpa", "12.0", "300 to 1250 hPa"),
        ({"eco2_ppm": -5}, "eco2_ppm", "-5", "400 to 60000 ppm"),
        ({"temperature_c": "hot"}, "temperature_c", "'hot'", "-40 to 125 °C"),
        ({"tvoc_ppb": None}, "tvoc_ppb", "None", "0 to 60000 ppb"),
        ({"ts": "yesterday"}, "ts", "'yesterday'", "ISO-8601"),
        ({"colour": "red"}, "colour", "'red'", "only the fields"),
        ({"fire_alarm": 2}, "fire_alarm", "2", "0 to 1"),
        ({"cnt": 10**40}, "cnt", str(10**40), "0 to 2147483647"),
    ],
)
def test_bad_reading_error_names_field_value_and_allowed(change, field, value_text, allowed_text):
    with pytest.raises(ReadingValidationError) as info:
        parse_reading({**GOOD, **change})
    message = str(info.value)
    assert f"{field}={value_text}" in message
    assert allowed_text in message
    assert [e.field for e in info.value.errors] == [field]


def test_missing_field_is_named():
    data = {k: v for k, v in GOOD.items() if k != "raw_h2"}
    with pytest.raises(ReadingValidationError) as info:
        parse_reading(data)
    assert "raw_h2=<missing>" in str(info.value)


def test_nan_is_rejected():
    with pytest.raises(ReadingValidationError, match="pm2_5"):
        parse_reading({**GOOD, "pm2_5": math.nan})


def test_malformed_json_is_a_validation_error_not_a_crash():
    with pytest.raises(ReadingValidationError, match="Invalid JSON"):
        parse_reading(b'{"sensor_id": ')


def test_every_kaggle_column_maps_to_a_contract_field():
    names = {f.name for f in FIELDS}
    assert set(KAGGLE_TO_CANONICAL.values()) <= names
    assert KAGGLE_TO_CANONICAL["Temperature[C]"] == "temperature_c"
    assert KAGGLE_TO_CANONICAL["Fire Alarm"] == "fire_alarm"
    assert KAGGLE_TO_CANONICAL["UTC"] == "ts"
    assert len(MEASUREMENTS) == 12


@pytest.mark.parametrize("spec", [f for f in FIELDS if f.measurement], ids=lambda f: f.name)
def test_pydantic_and_pandera_share_limits(spec):
    """Just inside the limit both accept; just outside both reject."""
    frame = pd.DataFrame([{**GOOD, "ts": pd.Timestamp(GOOD["ts"], unit="s", tz="UTC")}])
    for value, ok in (
        (spec.min, True),
        (spec.max, True),
        (spec.min - 0.01, False),
        (spec.max + 0.01, False),
    ):
        accepted_by_pydantic = _accepts({**GOOD, spec.name: value})
        accepted_by_pandera = run_check(
            "physical_ranges", frame.assign(**{spec.name: value})
        ).passed
        assert accepted_by_pydantic == accepted_by_pandera == ok, (spec.name, value)


def _accepts(data):
    try:
        Reading.model_validate(data)
    except Exception:
        return False
    return True


def _column_errors(columns):
    import pydantic

    with pytest.raises(pydantic.ValidationError) as info:
        ReadingColumns.model_validate(columns)
    return field_errors(info.value.errors(), columns)


def test_columns_take_the_same_fields_and_limits_as_one_reading():
    """Every field of the table is a column; every column value obeys the field's limits."""
    assert set(ReadingColumns.model_fields) == {f.name for f in FIELDS}
    second = {**GOOD, "sensor_id": "sensor-002", "scenario": "wood_fire"}
    columns = columns_from_records([GOOD, second])
    assert columns["scenario"] == [None, "wood_fire"]  # a field only some records carry
    parsed = ReadingColumns.model_validate(columns)
    assert len(parsed) == 2 and parsed.ts[0] == parse_reading(GOOD).ts
    for spec in FIELDS:
        if spec.max is None:
            continue
        bad = columns_from_records([GOOD, {**second, spec.name: spec.max + 1}])
        [error] = _column_errors(bad)
        assert (error.row, error.field, error.allowed) == (1, spec.name, spec.allowed())


def test_columns_of_unequal_length_name_the_column_and_the_expected_length():
    columns = columns_from_records([GOOD, GOOD, GOOD])
    columns["nc1_0"] = columns["nc1_0"][:2]
    [error] = _column_errors(columns)
    assert (error.field, error.value, error.allowed) == ("nc1_0", 2, "3 values, one per reading")
    # The same answer when a server passes the error on without pydantic's context.
    plain = [{"type": "column_length", "loc": [], "msg": "wrong length"}]
    [again] = field_errors(plain, columns)
    assert (again.field, again.value) == ("nc1_0", 2)
