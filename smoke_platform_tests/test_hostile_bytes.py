"""Byte-level fuzzing of every decoder that sees outside input, in process: the worker's
message path (the column-wise accelerator, the pydantic reference and the core around
both), the service's bulk JSON and Arrow decoders, and the producer's CSV replay. Each
draws 2,000 examples; none may raise anything but its own validation error."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bentos.bulk import ColumnsInput, ReadingsInput
from smoke_platform.core.columns import (
    arrow_frame,
    arrow_measurements,
    frame_to_arrow,
    json_measurements,
    json_records,
)
from smoke_platform.core.schema import (
    FIELD_BY_NAME,
    ReadingValidationError,
    columns_from_records,
    parse_reading,
)
from smoke_platform.errors import UserError
from smoke_platform_tests.hostile_bytes import (
    INVALID_UTF8,
    every_string_filled,
    hostile_bytes,
    message,
)
from streaming.alerts import AlertConfig
from streaming.processor import InMessage, Processor
from streaming.producer import csv_source, live_source
from streaming.scoring import Scores

EXAMPLES = settings(
    max_examples=2_000, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
GOOD = list(itertools.islice(live_source(seed=7, sensors=3), 40))
GOOD_MESSAGE = message(GOOD[0])
UTF8_CASE = GOOD_MESSAGE.replace(GOOD[0]["sensor_id"].encode(), b"\xff\xfe\xfa")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@EXAMPLES
@given(raw=hostile_bytes(GOOD_MESSAGE))
@example(raw=UTF8_CASE)
@example(raw=b'{"sensor_id": "\xff\xfe\xfa"}')
@example(raw=GOOD_MESSAGE.replace(b'+00:00"', b'\\u0000+00:00"'))  # found by hypothesis
def test_the_column_wise_decoder_never_raises_and_passes_only_what_pydantic_accepts(raw):
    [record] = json_records([raw])
    if record is not None:  # plainly valid: the reference accepts it with the same values
        reading = parse_reading(raw)
        assert reading.model_dump()["sensor_id"] == record["sensor_id"]


@EXAMPLES
@given(raw=hostile_bytes(GOOD_MESSAGE))
@example(raw=UTF8_CASE)
def test_the_reference_decoder_raises_only_validation_errors_naming_a_field(raw):
    try:
        parse_reading(raw)
    except ReadingValidationError as exc:
        assert exc.errors and all(e.field for e in exc.errors)
        assert str(exc)  # the message can be built (it quotes the bytes)


class _Scorer:
    def score(self, records):
        p = np.full(len(records), 0.1)
        return Scores(p, p >= 0.5, "test:1", "local")


@EXAMPLES
@given(raws=st.lists(hostile_bytes(GOOD_MESSAGE), min_size=1, max_size=4), at=st.integers(0, 4))
@example(raws=[UTF8_CASE], at=0)
def test_the_workers_core_turns_every_hostile_message_into_one_dead_letter_or_one_row(raws, at):
    """Good readings around hostile ones: each good one a row once, each message either
    a row or a dead letter (never both, never an exception); bytes that are not UTF-8 are
    `malformed_json` dead letters."""
    goods = [message(r) for r in GOOD[1:4]]
    values = goods[:at] + raws + goods[at:]
    msgs = [InMessage("t", 0, i, None, v) for i, v in enumerate(values)]
    core = Processor(AlertConfig(), max_message_bytes=2_000)
    out = core.process(msgs, _Scorer())
    rows = [r["offset"] for r in out.rows]
    dead = [d.message.offset for d in out.dead_letters]
    assert sorted(rows + dead) == list(range(len(msgs)))  # each exactly once
    good_offsets = [i for i, v in enumerate(values) if v in goods]
    assert set(good_offsets) <= set(rows)
    for letter in out.dead_letters:
        assert letter.reason and letter.field and letter.error
        assert letter.reason != "internal_error", letter.error  # all foreseen by now
        if not _is_utf8(letter.message.value) and len(letter.message.value) <= 2_000:
            assert letter.reason == "malformed_json", (letter.reason, letter.error)


def test_every_string_position_filled_with_invalid_utf8_is_a_malformed_json_dead_letter():
    corpus = every_string_filled(GOOD_MESSAGE)
    strings = len(GOOD[0]) + sum(isinstance(v, str) for v in GOOD[0].values())  # keys, values
    assert len(corpus) == strings * len(INVALID_UTF8)
    msgs = [InMessage("t", 1, i, None, v) for i, v in enumerate(corpus)]
    out = Processor(AlertConfig(), max_message_bytes=2_000).process(msgs, _Scorer())
    assert not out.rows
    assert {d.reason for d in out.dead_letters} == {"malformed_json"}
    assert len(out.dead_letters) == len(corpus)


def _bulk(key: str) -> bytes:
    if key == "columns":
        return json.dumps({"columns": columns_from_records(GOOD)}).encode()
    return json.dumps({"readings": GOOD}).encode()


@pytest.mark.parametrize("key", ["readings", "columns"])
def test_the_services_bulk_json_decoders_never_raise_past_validation(key):
    """The column-wise fast path answers or declines; the pydantic model BentoML falls
    back to raises only its validation error (which the guard turns into a 400)."""
    body = _bulk(key)
    model = ReadingsInput if key == "readings" else ColumnsInput

    @EXAMPLES
    @given(raw=hostile_bytes(body))
    @example(raw=body.replace(GOOD[3]["sensor_id"].encode(), b"\xff\xfe\xfa", 1))
    def check(raw):
        array = json_measurements(raw, key)
        assert array is None or array.shape[0] > 0
        try:
            model.model_validate_json(raw)
        except pydantic.ValidationError as exc:
            assert exc.errors()

    check()


def test_the_arrow_decoder_raises_only_validation_errors_naming_a_field():
    frame = pd.DataFrame(GOOD)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    body = frame_to_arrow(frame[[c for c in frame.columns if c in FIELD_BY_NAME]])

    @EXAMPLES
    @given(raw=hostile_bytes(body))
    @example(raw=body.replace(b"\x03\x00\x00\x00UTC", b"\x03\x00\x00\x00\xd5TC"))  # found
    def check(raw):
        for read in (arrow_frame, arrow_measurements):
            try:
                read(raw)
            except ReadingValidationError as exc:
                assert exc.errors[0].field

    check()


def test_the_producers_csv_replay_refuses_hostile_files_with_a_user_error(tmp_path):
    from smoke_platform_tests.conftest import FIXTURES

    good = (FIXTURES / "smoke_detection_sample.csv").read_bytes()[:4_000]
    good = good[: good.rfind(b"\n") + 1]
    path = tmp_path / "replay.csv"

    @EXAMPLES
    @given(raw=hostile_bytes(good))
    def check(raw):
        path.write_bytes(raw)
        try:
            list(csv_source(path))
        except UserError as exc:
            assert str(path) in str(exc)

    check()


def test_a_timestamp_cut_at_an_escaped_nul_is_left_to_pydantic_in_bulk_requests_too():
    """msgspec stops reading a timestamp at an escaped NUL and drops its zone; pydantic
    refuses it, so the fast bulk path hands such a body to the model that names it."""
    from smoke_platform.core.columns import json_measurements

    good = b'{"readings": [' + GOOD_MESSAGE + b"]}"
    assert json_measurements(good, "readings") is not None
    cut = good.replace(b'+00:00"', b'\\u0000+05:00"')
    assert json_measurements(cut, "readings") is None
    with pytest.raises(ReadingValidationError, match="ts"):
        parse_reading(GOOD_MESSAGE.replace(b'+00:00"', b'\\u0000+05:00"'))
