"""The lifecycle of an alert or a trouble signal: open -> acknowledged (by whom, when) ->
resolved with a verdict (`fire`, `false_alarm`, `test`, `unknown`) and a note.

Pure: the states are a fold of the raised events (the alerts' and trouble signals'
topics) and the operators' verdict events. A verdict event carries the whole lifecycle
of its alert (who acknowledged it, when, the verdict), so a compacted topic keyed by the
alert id, which keeps only the last event per key, still holds everything.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

VERDICTS = ("fire", "false_alarm", "test", "unknown")
MAX_NOTE = 1_000
_OPERATOR = re.compile(r"^[\w.@+ -]{1,64}$")


class VerdictError(ValueError):
    """Bad operator input, naming the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}={str(value)[:80]!r} is not allowed: {allowed}")


@dataclass
class Lifecycle:
    """One alert's or trouble signal's state as operators and the platform left it."""

    alert_id: str
    source: str = "alert"  # alert | trouble
    subject: str = ""  # the sensor (or partition, or platform component)
    severity: str | None = None
    raised_at: str = ""
    closed_at: str | None = None  # the platform's own close (alert) or restored (trouble)
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    verdict: str | None = None
    note: str = ""
    resolved_by: str | None = None
    resolved_at: str | None = None

    @property
    def status(self) -> str:
        if self.verdict is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_by else "open"

    def as_event(self) -> dict[str, Any]:
        return asdict(self)


def raised(alert_events: list[dict], trouble_events: list[dict]) -> dict[str, Lifecycle]:
    """The lifecycles the platform raised, from its alert and trouble records in order."""
    out: dict[str, Lifecycle] = {}
    for e in alert_events:
        on_alert(out, e)
    for e in trouble_events:
        on_trouble(out, e)
    return out


def on_alert(out: dict[str, Lifecycle], e: dict) -> None:
    """`out` after one alert record (open, escalate, close); a record without the alert's
    fields is passed over."""
    if not _ids(e, "alert_id", "event", "sensor_id", "ts"):
        return
    rec = out.setdefault(e["alert_id"], Lifecycle(e["alert_id"], "alert", e["sensor_id"]))
    if e["event"] == "open":
        rec.raised_at, rec.severity = e["ts"], e.get("severity")
    elif e["event"] == "escalate":
        rec.severity = e.get("severity")
    elif e["event"] == "close":
        rec.closed_at = e["ts"]


def on_trouble(out: dict[str, Lifecycle], e: dict) -> None:
    """`out` after one trouble record (open, restored)."""
    if not _ids(e, "trouble_id", "event", "subject", "ts"):
        return
    rec = out.setdefault(e["trouble_id"], Lifecycle(e["trouble_id"], "trouble", e["subject"]))
    if e["event"] == "open":
        rec.raised_at, rec.severity = e["ts"], e.get("kind")
    else:
        rec.closed_at = e["ts"]


def fold(known: dict[str, Lifecycle], verdicts: list[dict]) -> dict[str, Lifecycle]:
    """`known` with the operators' verdict events applied in order (the last one wins:
    each carries the whole lifecycle)."""
    for v in verdicts:
        rec = known.get(v["alert_id"]) if _ids(v, "alert_id") else None
        if rec is None:
            continue  # a verdict for an alert this reader has not seen (e.g. retention)
        for name in ("acknowledged_by", "acknowledged_at", "verdict", "note"):
            setattr(rec, name, v.get(name))
        rec.resolved_by, rec.resolved_at = v.get("resolved_by"), v.get("resolved_at")
        rec.note = rec.note or ""
    return known


def _ids(event: dict, *fields: str) -> bool:
    """Whether the event has these fields, as text (a stray producer's list or number is
    no id, and no time)."""
    return all(isinstance(event.get(f), str) for f in fields)


def _operator(by: str) -> str:
    if not isinstance(by, str) or not _OPERATOR.match(by):
        raise VerdictError("by", by, "who you are: 1 to 64 letters, digits, spaces or .@+-_")
    return by


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def acknowledge(known: dict[str, Lifecycle], alert_id: str, by: str) -> Lifecycle:
    """The lifecycle after `by` acknowledged it (again: the first acknowledgement stays)."""
    rec = _find(known, alert_id)
    if rec.acknowledged_by is None:
        rec.acknowledged_by, rec.acknowledged_at = _operator(by), _now()
    return rec


def resolve(
    known: dict[str, Lifecycle], alert_id: str, verdict: str, by: str, note: str = ""
) -> Lifecycle:
    """The lifecycle resolved with `verdict` (acknowledged on the way if it was not)."""
    if verdict not in VERDICTS:
        raise VerdictError("verdict", verdict, "one of " + ", ".join(VERDICTS))
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise VerdictError("note", note, f"text of at most {MAX_NOTE} characters")
    rec = acknowledge(known, alert_id, by)
    rec.verdict, rec.note, rec.resolved_by, rec.resolved_at = verdict, note, _operator(by), _now()
    return rec


def _find(known: dict[str, Lifecycle], alert_id: str) -> Lifecycle:
    rec = known.get(alert_id)
    if rec is None:
        raise VerdictError(
            "alert_id", alert_id, "the id of a raised alert or trouble signal (`smoke alerts ls`)"
        )
    return rec
