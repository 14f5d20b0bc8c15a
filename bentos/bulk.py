"""How the bulk APIs read requests and write answers without one Python object per reading.

BentoML builds an API's input and output from pydantic models (`IODescriptor`s): every
reading of a 1,000-reading request became a model instance on the way in and a
prediction instance, dumped three times, on the way out. These descriptors keep the same
models, so the OpenAPI document and the pydantic error messages are unchanged, and take
the short road where it is safe:

- in: the body is decoded column-wise (`smoke_platform.core.columns`); when anything is
  not plainly valid the pydantic model decides, as before, and its 400 names row, field,
  value and allowed range (the guard rewrites it). Either way the API gets the
  measurements and rises as one float array (rows x SCORED_INPUTS), which BentoML's adaptive
  batching concatenates like a list. (Not a DataFrame: BentoML 1.4.40's DataFrame
  container reports a batch's size as its shape tuple, and batching fails.)
- out: the predictions (plain dicts) are serialised once, in Rust (pydantic-core).
- Arrow: an Apache Arrow IPC stream in, `PredictionColumns` JSON out; bad input is a 400
  naming the field (and row, value, allowed) from the same field table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic_core
from _bentoml_sdk.io_models import IODescriptor, IORootModel
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smoke_platform.core.columns import (
    ARROW_ALLOWED,
    ARROW_MEDIA_TYPE,
    arrow_measurements,
    json_measurements,
    scored_array,
)
from smoke_platform.core.schema import (
    MAX_COLUMN_ROWS,
    SCORED_INPUTS,
    Reading,
    ReadingColumns,
    ReadingValidationError,
)


def _is_json(request: Request) -> bool:
    ctype = request.headers.get("content-type", "application/json")
    return ctype.split(";")[0].strip().lower() == "application/json"


# Below this size a body holds a few readings: pydantic is as quick as the column decoder.
FAST_PATH_MIN_BYTES = 4_096


async def _fast(request: Request, key: str) -> np.ndarray | None:
    body = await request.body()
    if len(body) < FAST_PATH_MIN_BYTES or not _is_json(request):
        return None
    return json_measurements(body, key)


def measurements(values: Any) -> np.ndarray:
    """Rows x `SCORED_INPUTS` float64 from `Reading`s or a `ReadingColumns` (rises left
    out are 0: scored as steady)."""
    if isinstance(values, list):
        return scored_array(
            {n: [getattr(r, n) for r in values] for n in SCORED_INPUTS}, len(values)
        )
    return scored_array(values, len(values))


class ReadingsInput(IODescriptor):
    """`/predict_batch`: `{"readings": [reading, ...]}`."""

    readings: list[Reading] = Field(max_length=MAX_COLUMN_ROWS)  # type: ignore[valid-type]

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> IODescriptor:
        array = await _fast(request, "readings")
        if array is None:  # the pydantic model decides (and names what is wrong)
            parsed = await super().from_http_request(request, serde)
            array = measurements(parsed.readings)  # type: ignore[attr-defined]
        return cls.model_construct(readings=array)


class ColumnsInput(IODescriptor):
    """`/predict_columns`: `{"columns": {field: [value, ...], ...}}`."""

    columns: ReadingColumns  # type: ignore[valid-type]

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> IODescriptor:
        array = await _fast(request, "columns")
        if array is None:
            parsed = await super().from_http_request(request, serde)
            array = measurements(parsed.columns)  # type: ignore[attr-defined]
        return cls.model_construct(columns=array)


class ArrowInput(IODescriptor):
    """`/predict_arrow`: the request body is one Arrow IPC stream (no JSON)."""

    media_type = ARROW_MEDIA_TYPE
    table: bytes = Field(
        description=ARROW_ALLOWED
        + ". Answer: the same JSON as /predict_columns. Send it with content-type "
        + ARROW_MEDIA_TYPE,
        json_schema_extra={"format": "binary"},
    )

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> IODescriptor:
        return cls.model_construct(table=await request.body())


def arrow_readings(body: bytes) -> np.ndarray | Response:
    """The measurements of an Arrow request, or the 400 that names what is wrong (the same
    shape as every other validation answer of the service)."""
    try:
        return arrow_measurements(body)
    except ReadingValidationError as exc:
        errors = exc.errors
        rows = sorted({e.row for e in errors if e.row is not None})
        return JSONResponse(
            {
                "error": "invalid input: " + "; ".join(str(e) for e in errors[:20]),
                "errors": [e.as_dict() for e in errors],
                "bad_rows": rows,
            },
            status_code=400,
        )


def serialised(model: type[Any]) -> type[IODescriptor]:
    """An output descriptor for `model` (a list of TypedDicts) that writes the JSON once,
    in Rust, instead of BentoML's dump-twice-then-`json.dumps` of a root model."""

    class Serialised(IORootModel[model]):  # type: ignore[valid-type,misc]
        @classmethod
        async def to_http_response(cls, obj: Any, serde: Any) -> Response:
            return Response(pydantic_core.to_json(obj), media_type="application/json")

    Serialised.__name__ = Serialised.__qualname__ = f"{getattr(model, '__name__', 'Output')}Output"
    return Serialised
