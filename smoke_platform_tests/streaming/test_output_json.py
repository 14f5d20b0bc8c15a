"""The worker's outputs as Kafka message values: strict JSON whatever the values."""

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from streaming.sink import to_json


def _strict(raw: bytes) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(raw, parse_constant=refuse)


@pytest.mark.parametrize("missing", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_a_missing_number_is_null_never_nan_which_json_lacks(missing):
    assert _strict(to_json({"probability": missing, "offset": 3})) == {
        "probability": None,
        "offset": 3,
    }


def test_numpy_scalars_are_numbers_datetimes_iso_text_and_other_values_their_text():
    when = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)

    class Odd:
        def __str__(self) -> str:
            return "odd"

    value = {
        "array": np.array([1.0, 2.0]),
        "stamp": pd.Timestamp("2026-12-06T20:00:00Z"),
        "np_time": np.datetime64("2026-12-06T20:00:00"),
        "p": np.float64(0.25),
        "z": np.float32(1.5),
        "n": np.int64(7),
        "fire": np.bool_(True),
        "when": when,
        "odd": Odd(),
        "nested": {"drivers": [{"w": np.float64(0.5)}]},
    }
    assert _strict(to_json(value)) == {
        "array": "[1. 2.]",
        "stamp": "2026-12-06T20:00:00+00:00",
        "np_time": "2026-12-06T20:00:00",
        "p": 0.25,
        "z": 1.5,
        "n": 7,
        "fire": True,
        "when": "2026-12-06T20:00:00Z",
        "odd": "odd",
        "nested": {"drivers": [{"w": 0.5}]},
    }


def test_text_that_is_not_unicode_is_refused_not_sent_mangled():
    with pytest.raises(UnicodeEncodeError):
        to_json({"sensor_id": "s-\ud800"})
