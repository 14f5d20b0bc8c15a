"""The worker's durable per-partition state, the readings' row schema, atomic writes.

The outputs themselves are Delta tables (`streaming.tables`)."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from smoke_platform.core.schema import FIELDS

_ARROW_TYPES = {
    "float": pa.float64(),
    "int": pa.int64(),
    "str": pa.string(),
    "datetime": pa.string(),
}
# The reading columns of a predictions row, as the files hold them (`ts` as ISO text).
ROW_SCHEMA = pa.schema([pa.field(f.name, _ARROW_TYPES[f.dtype]) for f in FIELDS])


def _json_value(value: Any) -> Any:
    """A value msgspec has no JSON type for: a numpy number or bool as its Python value, a
    datetime of a subclass (pandas' Timestamp) as ISO 8601 text, anything else (an
    array, a numpy time) as its text."""
    if isinstance(value, np.generic) and not isinstance(value, np.datetime64 | np.timedelta64):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# An output (prediction, alert, trouble signal) as the value of its Kafka message: JSON,
# with NaN and infinities as null (JSON has neither).
to_json = msgspec.json.Encoder(enc_hook=_json_value).encode


def unwritable_rows(rows: list[dict[str, Any]]) -> dict[int, str]:
    """Rows the files cannot hold (a value that does not fit its column's type or cannot
    be encoded), by position, with the reason; one conversion of the whole batch when all
    fit. The worker dead-letters these instead of failing the batch for good."""
    try:
        pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
        return {}
    except (pa.ArrowException, ValueError, TypeError, UnicodeError):
        pass
    bad = {}
    for i, row in enumerate(rows):
        try:
            pa.Table.from_pylist([row], schema=ROW_SCHEMA)
        except (pa.ArrowException, ValueError, TypeError, UnicodeError) as exc:
            bad[i] = f"{type(exc).__name__}: {exc}"
    return bad


class PartitionSink:
    """Each source partition's durable state (`_state/<topic>-p<n>.json`): `hwm`, the last
    offset whose outputs the tables hold, and the per-sensor state at that point (alert
    machines, supervision). Written after the batch's table commits, so it is never ahead
    of them; behind them after a crash, the replay re-derives the same rows and the tables
    keep only those they lack (`streaming.tables`).

    `topic_id` is the topic's Kafka id: offsets only mean something within one incarnation
    of a topic. A state written for another id (the topic was recreated, or an embedded
    broker restarted empty) is void and the partition starts from scratch; the tables'
    application transactions carry the id too."""

    def __init__(self, root: str | Path, topic: str, topic_id: str | None = None) -> None:
        self.root = Path(root)
        self.topic = topic
        self.topic_id = topic_id

    def _state_path(self, partition: int) -> Path:
        return self.root / "_state" / f"{self.topic}-p{partition}.json"

    def load(self, partition: int) -> dict[str, Any]:
        """State of a partition ({"hwm": -1, "sensors": {}} if new or void)."""
        path = self._state_path(partition)
        state: dict[str, Any] = (
            json.loads(path.read_text()) if path.exists() else {"hwm": -1, "sensors": {}}
        )
        previous = state.get("topic_id")
        if self.topic_id and previous and previous != self.topic_id:
            state = {"hwm": -1, "sensors": {}}
        return state

    def _platform_path(self, subject: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", subject)
        return self.root / "_state" / "platform" / f"{safe}.json"  # apart from partitions

    def load_platform(self, subject: str) -> dict[str, float]:
        """The platform conditions `subject` (a worker instance) had open when it last
        stored them: condition -> since (epoch seconds); {} if none or unreadable."""
        try:
            found = json.loads(self._platform_path(subject).read_text())
            return {str(k): float(v) for k, v in found.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def write_platform(self, subject: str, open_: dict[str, float]) -> None:
        """What `subject` has open now, atomically (after its signals are stored)."""
        path = self._platform_path(subject)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(open_)))

    def write(self, partition: int, state: dict[str, Any]) -> None:
        """The partition's state, atomically (the batch's last step)."""
        if self.topic_id:
            state = {**state, "topic_id": self.topic_id}
        atomic_write(self._state_path(partition), lambda tmp: tmp.write_text(json.dumps(state)))


def atomic_write(path: Path, write: Any) -> None:
    """`write(tmp)` to a hidden temporary file next to `path`, fsync, rename into place:
    readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
