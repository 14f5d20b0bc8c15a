"""The UTC day of reading times: the stream tables' `date` partition and the reports' days.

A time carries the offset its sender gave it; its day is the day it is in UTC (a reading
at 01:00+14:00 belongs to the day before), and a time without an offset is UTC already.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def utc_days(ts: Any) -> Any:
    """The UTC day (`YYYY-MM-DD`, "None" for a null) of each ISO 8601 time: a reading at
    01:00+14:00 belongs to the day before in UTC, as the tables' days are UTC days. A time
    without an offset is UTC already; one Arrow cannot read, its own first ten
    characters."""
    zoned = pc.match_substring_regex(ts, _ZONE)
    if not pc.all(zoned).as_py():  # naive times are UTC: said so, for Arrow's cast
        ts = pc.if_else(zoned, ts, pc.binary_join_element_wise(ts, "+00:00", ""))
    try:
        days = pc.cast(pc.cast(pc.cast(ts, pa.timestamp("ns", "UTC")), pa.date32()), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a time Arrow cannot read
        days = pa.array([_utc_day(t) for t in ts.to_pylist()], pa.string())
    return pc.fill_null(days, "None")


_ZONE = r"(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"  # an ISO 8601 time's zone designator


def _utc_day(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
        return (moment.astimezone(UTC) if moment.tzinfo else moment).date().isoformat()
    except (ValueError, OverflowError):  # not a time, or its UTC day is outside the calendar
        return text[:10]
