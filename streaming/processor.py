"""The stream worker's pure core: decode, validate, score, flag and alert, outputs as data.

No Kafka here: a message is an `InMessage` (topic, partition, offset, key, value), the
scorer is anything with `score(records) -> Scores`, and a batch's result is a
`BatchOutput` (rows, alert events, dead letters) that the Kafka shell
(`streaming/worker.py`) publishes in one transaction and the sink writes to files.
Unit-tested without a broker (`smoke_platform_tests/streaming/test_processor.py`).
"""

from __future__ import annotations

import itertools
import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from smoke_platform.core.columns import json_records
from smoke_platform.core.explain import NO_EXPLAINER, Explainer
from smoke_platform.core.features import (
    RISE_FEATURES,
    RISE_LEVELS,
    epoch_seconds,
    rise_levels,
    rises_in_batch,
)
from smoke_platform.core.quality import STUCK_CHANNELS
from smoke_platform.core.schema import SCORED_INPUTS, ReadingValidationError, parse_reading
from smoke_platform.core.trouble import PartitionWatch, TroubleConfig
from streaming.alerts import CHANNELS, RAISING, AlertConfig, SensorState, zscores
from streaming.scoring import Scores

_REASONS = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "json_invalid": "malformed_json",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "finite_number": "out_of_range",
    "time_window": "out_of_window",
    "string_pattern_mismatch": "bad_identifier",
}


def dlq_reason(exc: ReadingValidationError) -> str:
    """A short machine-readable reason from the first validation error."""
    kind = exc.errors[0].kind if exc.errors else ""
    return _REASONS.get(kind, "wrong_type" if kind else "invalid")


OFFSET_BEGINNING = -2  # librdkafka's logical offset: the partition's first message


@dataclass(frozen=True)
class ResumePlan:
    start: int  # the offset to consume from
    replay_until: int | None  # below this offset: into the tables only (already published)


def resume_plan(hwm: int, committed: int) -> ResumePlan:
    """Where a partition resumes, from the state's high-water mark (`hwm`: the last offset
    whose outputs are durable, -1 for none) and the group's committed offset (the next to
    publish; negative for none): right after the state; what lies between it and the
    committed offset was published and committed already, so it is replayed into the tables
    only."""
    if committed >= 0 and committed > hwm + 1:
        return ResumePlan(hwm + 1 if hwm >= 0 else OFFSET_BEGINNING, committed)
    if hwm >= 0:
        return ResumePlan(hwm + 1, None)
    return ResumePlan(committed if committed >= 0 else OFFSET_BEGINNING, None)


class InMessage(NamedTuple):  # one per message read: a tuple is made in a third of the time
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class DeadLetter:
    """A message that cannot be processed, with a reason a person can read."""

    message: InMessage
    reason: str
    field: str
    error: str

    def value(self, limit: int) -> bytes | None:
        """The original bytes, or their first `limit` bytes when longer (the DLQ producer
        and topic must never be asked for more than the input topic could hold)."""
        raw = self.message.value
        return raw if raw is None or len(raw) <= limit else raw[:limit]

    def headers(self, limit: int) -> list[tuple[str, bytes]]:
        size = len(self.message.value or b"")
        truncated = [("truncated", b"true"), ("original_bytes", str(size).encode())]
        return [
            *(truncated if size > limit else []),
            ("reason", self.reason.encode()),
            ("field", self.field.encode()),
            ("error", self.error[:4000].encode()),
            ("source_topic", self.message.topic.encode()),
            ("source_partition", str(self.message.partition).encode()),
            ("source_offset", str(self.message.offset).encode()),
        ]


@dataclass
class BatchOutput:
    rows: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    trouble: list[dict[str, Any]] = field(default_factory=list)  # `core.trouble` records
    scored_by: str | None = None
    model_version: str | None = None


@dataclass
class PartitionState:
    """What the worker keeps of one partition: `hwm`, the last offset whose outputs are
    durable (-1: none); each sensor's alert machine, z-score statistics and rise history;
    the partition's supervision (trouble signals). Stored items are decoded when first
    used (a partition of 100,000 sensors loads at once, and pays per sensor it sees)."""

    hwm: int = -1
    sensors: dict[str, SensorState | dict[str, Any]] = field(default_factory=dict)
    watch: PartitionWatch | dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartitionState:
        return cls(int(data.get("hwm", -1)), dict(data.get("sensors", {})), data.get("watch"))

    def sensor(self, sensor: str) -> SensorState:
        state = self.sensors.get(sensor)
        if not isinstance(state, SensorState):
            state = SensorState.from_dict(state) if state else SensorState()
            self.sensors[sensor] = state
        return state

    def supervision(self, partition: int) -> PartitionWatch:
        if not isinstance(self.watch, PartitionWatch):
            self.watch = PartitionWatch.from_dict(partition, self.watch, time.time())
        return self.watch

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what the sink stores)."""
        return {
            "hwm": self.hwm,
            "sensors": {
                k: (v.to_dict() if isinstance(v, SensorState) else v)
                for k, v in self.sensors.items()
            },
            "watch": self.watch.to_dict() if isinstance(self.watch, PartitionWatch) else self.watch,
        }


# The channels read out of each batch's records once, column-wise: the z-scores' first,
# then the stuck-prone ones the supervision watches (`core.trouble`).
WATCHED: tuple[str, ...] = (*CHANNELS, *(c for c in STUCK_CHANNELS if c not in CHANNELS))
_WATCHED = operator.itemgetter(*WATCHED)
_STUCK_COLUMNS = [WATCHED.index(c) for c in STUCK_CHANNELS]


class Scorer(Protocol):
    def score(self, records: list[dict[str, Any]]) -> Scores: ...


class Processor:
    """Per-partition state (`states[p]`, a `PartitionState`) and the batch pipeline."""

    def __init__(
        self,
        cfg: AlertConfig,
        max_message_bytes: int,
        explainers: Callable[[str | None], Explainer | None] | None = None,
        trouble: TroubleConfig | None = None,
        supervise: bool = True,
    ) -> None:
        self.cfg = cfg
        self.trouble = trouble or TroubleConfig()
        self.supervise = supervise  # trouble signals (off: only to measure what they cost)
        self.max_message_bytes = max_message_bytes
        # model version -> how its raised alerts are explained (`core.explain`)
        self.explainers = explainers or (lambda _version: None)
        self.states: dict[int, PartitionState] = {}

    # -- validation ----------------------------------------------------------------------
    def validate(
        self, msgs: list[InMessage], poisoned: Mapping[tuple[int, int], str] | None = None
    ) -> tuple[list[tuple[InMessage, dict[str, Any]]], list[DeadLetter]]:
        """Each message a validated record or a dead letter, never an exception: whatever
        decoding or validating one message raises is that message's dead letter (reason
        `malformed_json` for bytes that are not UTF-8 JSON, `internal_error` naming the
        exception for anything unforeseen). `poisoned` ((partition, offset) -> why) are
        messages the worker's poison guard gave up on: dead letters, never decoded again."""
        poisoned = poisoned or {}
        valid, dead = [], []
        fitting = [
            i
            for i, m in enumerate(msgs)
            if len(m.value or b"") <= self.max_message_bytes
            and (m.partition, m.offset) not in poisoned
        ]
        # The plainly valid ones column-wise (no pydantic object each); pydantic decides
        # about the rest and names what is wrong.
        fast: list[dict[str, Any] | None] = [None] * len(msgs)
        try:
            decoded = json_records([msgs[i].value or b"" for i in fitting])
        except Exception:  # a bug of the accelerator: every message by the reference path
            decoded = [None] * len(fitting)
        for i, record in zip(fitting, decoded, strict=True):
            fast[i] = record
        for msg, record in zip(msgs, fast, strict=True):
            if record is not None:
                valid.append((msg, record))
            elif (msg.partition, msg.offset) in poisoned:
                why = poisoned[(msg.partition, msg.offset)]
                dead.append(DeadLetter(msg, "poison", "<message>", why))
            else:
                outcome = self._validate_one(msg)
                (dead if isinstance(outcome, DeadLetter) else valid).append(outcome)  # type: ignore[arg-type]
        return valid, dead

    def _validate_one(self, msg: InMessage) -> tuple[InMessage, dict[str, Any]] | DeadLetter:
        raw = msg.value or b""
        if len(raw) > self.max_message_bytes:
            return DeadLetter(
                msg,
                "oversized",
                "<message>",
                f"message of {len(raw)} bytes exceeds the {self.max_message_bytes}-byte limit",
            )
        try:
            reading = parse_reading(raw)
            # Rows are built from the validated values only (a "20.5" sent for a number is
            # 20.5 here), never from the raw JSON: the files' schema cannot be broken.
            record = reading.model_dump()
            record["ts"] = reading.ts.isoformat()  # type: ignore[attr-defined]
        except ReadingValidationError as exc:
            first = exc.errors[0] if exc.errors else None
            return DeadLetter(msg, dlq_reason(exc), first.field if first else "<message>", str(exc))
        except UnicodeError as exc:
            return DeadLetter(msg, "malformed_json", "<message>", f"not UTF-8 JSON: {exc}")
        except Exception as exc:  # unforeseen: this message's dead letter, never an exit
            return DeadLetter(
                msg, "internal_error", "<message>", f"{type(exc).__name__}: {str(exc)[:1000]}"
            )
        return msg, record

    # -- scoring and alerts --------------------------------------------------------------
    def score(
        self,
        valid: list[tuple[InMessage, dict[str, Any]]],
        scorer: Scorer,
        dead: list[DeadLetter] | None = None,
        wall: float | None = None,
    ) -> BatchOutput:
        """Score `valid`, advance each sensor's alert machine and its supervision (trouble
        signals; `dead`: this batch's dead letters, counted against their sensors)."""
        out = BatchOutput()
        wall = time.time() if wall is None else wall
        for letter in dead if self.supervise and dead else []:
            key = letter.message.key
            sensor = key.decode("utf-8", "replace") if key else None
            out.trouble += self.watch(letter.message.partition).dead_letter(
                sensor, wall, self.trouble
            )
        if not valid:
            return out
        states = [self.sensor(msg.partition, rec["sensor_id"]) for msg, rec in valid]
        epochs = self.add_rises([rec for _, rec in valid], states).tolist()
        scores = scorer.score([rec for _, rec in valid])
        out.scored_by, out.model_version = scores.scored_by, scores.model_version
        watched = np.fromiter(
            itertools.chain.from_iterable(_WATCHED(rec) for _, rec in valid),
            "float64",
            len(valid) * len(WATCHED),
        ).reshape(-1, len(WATCHED))
        z = np.abs(zscores(states, watched[:, : len(CHANNELS)], self.cfg))
        z = np.where(np.isnan(z), -1.0, z)  # warming up: no z-score
        top_channel = z.argmax(axis=1)  # the first of equals, in `CHANNELS` order
        top_z = np.maximum(z[np.arange(len(z)), top_channel], 0.0).tolist()
        rows = zip(
            valid, states, scores.probability, scores.is_fire, top_channel, top_z, strict=True
        )
        raised: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (event, its reading)
        for (msg, rec), state, p, fire, channel, max_abs_z in rows:
            top = (CHANNELS[channel], max_abs_z)
            out.rows.append(self._row(msg, rec, float(p), bool(fire), scores, top))
            event = state.step(rec["sensor_id"], rec["ts"], float(p), bool(fire), self.cfg)
            if event is not None:
                event.update(
                    partition=msg.partition, offset=msg.offset, model_version=scores.model_version
                )
                if event["event"] in RAISING:
                    raised.append((event, rec))
                out.alerts.append(event)
        if raised:  # explained together: one feature frame and attribution per batch
            explainer = self.explainers(scores.model_version) or NO_EXPLAINER
            why = explainer.explain([rec for _, rec in raised])
            for (event, _), explanation in zip(raised, why, strict=True):
                event.update(explanation)
        if not self.supervise:
            return out
        records = [rec for _, rec in valid]
        partitions = np.fromiter((msg.partition for msg, _ in valid), "int64", len(valid))
        for partition in np.unique(partitions).tolist():
            at = np.flatnonzero(partitions == partition)
            whole = len(at) == len(valid)  # the usual batch, of one partition: as it is
            out.trouble += self.watch(partition).observe(
                records if whole else [records[i] for i in at.tolist()],
                epochs if whole else [epochs[i] for i in at.tolist()],
                wall,
                self.trouble,
                watched[:, _STUCK_COLUMNS] if whole else watched[at][:, _STUCK_COLUMNS],
            )
        return out

    def state(self, partition: int) -> PartitionState:
        return self.states.setdefault(partition, PartitionState())

    def load(self, partition: int, stored: Mapping[str, Any]) -> PartitionState:
        """The partition's stored state (as `snapshot` gave it) becomes its state here."""
        self.states[partition] = PartitionState.from_dict(stored)
        return self.states[partition]

    def hwm(self, partition: int) -> int:
        state = self.states.get(partition)
        return state.hwm if state is not None else -1

    def watch(self, partition: int) -> PartitionWatch:
        """The partition's supervision (trouble signals), loaded from its stored state."""
        return self.state(partition).supervision(partition)

    def judge(self, partition: int, wall: float, caught_up: bool) -> list[dict[str, Any]]:
        """The poll's judgement of a partition's silence (see `core.trouble`)."""
        return self.watch(partition).judge(wall, caught_up, self.trouble)

    @staticmethod
    def add_rises(records: list[dict[str, Any]], states: list[SensorState]) -> np.ndarray:
        """Each record's `rise_*` from its sensor's history (what a client may have sent
        is replaced: the worker's own history decides), and the histories moved on."""
        own = {rec["sensor_id"]: state for rec, state in zip(records, states, strict=True)}
        history = {s: st.history for s, st in own.items() if st.history is not None}
        levels = rise_levels({c: [r[c] for r in records] for c in RISE_LEVELS})
        t = epoch_seconds([r["ts"] for r in records])
        sensors = np.array([r["sensor_id"] for r in records], dtype=object)
        rises, after = rises_in_batch(history, sensors, t, levels)
        for sensor, state in own.items():
            state.history = after[sensor]
        for rec, values in zip(records, rises.tolist(), strict=True):
            rec.update(zip(RISE_FEATURES, values, strict=True))
        return t  # each record's event time (epoch seconds), for whoever needs it next

    def process(
        self, msgs: list[InMessage], scorer: Scorer, wall: float | None = None
    ) -> BatchOutput:
        """Validate and score one batch (the shell splits the two steps to publish dead
        letters first)."""
        valid, dead = self.validate(msgs)
        out = self.score(valid, scorer, dead, wall)
        out.dead_letters = dead
        return out

    def sensor(self, partition: int, sensor: str) -> SensorState:
        return self.state(partition).sensor(sensor)

    def snapshot(self, partition: int) -> dict[str, Any]:
        """The partition's state as JSON-ready data (what the sink stores)."""
        return self.state(partition).to_dict()

    def _row(
        self, msg: InMessage, rec: dict, p: float, fire: bool, scores: Scores, top: tuple
    ) -> dict[str, Any]:
        anomalous = abs(top[1]) >= self.cfg.zscore_threshold
        return {
            "sensor_id": rec["sensor_id"],
            "ts": rec["ts"],
            "session_id": rec.get("session_id"),
            "scenario": rec.get("scenario"),
            "fire_alarm": rec.get("fire_alarm"),
            "probability": p,
            "is_fire": fire,
            "model_version": scores.model_version,
            "scored_by": scores.scored_by,
            "anomaly": anomalous,
            "anomaly_channel": top[0] if anomalous else None,
            "max_abs_z": abs(float(top[1])),
            "partition": msg.partition,
            "offset": msg.offset,
            # Every measurement and rise, so reports and drift see what the model saw.
            **{k: rec[k] for k in SCORED_INPUTS},
        }
