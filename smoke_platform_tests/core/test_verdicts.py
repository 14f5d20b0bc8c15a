"""The lifecycle of alerts and trouble signals, folded from events."""

import pytest

from smoke_platform.core.verdicts import VerdictError, acknowledge, fold, raised, resolve

ALERTS = [
    {"alert_id": "s1@t0", "event": "open", "sensor_id": "s1", "ts": "t0", "severity": "warning"},
    {
        "alert_id": "s1@t0",
        "event": "escalate",
        "sensor_id": "s1",
        "ts": "t1",
        "severity": "critical",
    },
    {"alert_id": "s1@t0", "event": "close", "sensor_id": "s1", "ts": "t9", "severity": "critical"},
]
TROUBLE = [
    {"trouble_id": "silent:s2@t3", "event": "open", "subject": "s2", "ts": "t3", "kind": "silent"}
]


def test_acknowledged_then_resolved_and_each_event_carries_the_whole_lifecycle():
    known = raised(ALERTS, TROUBLE)
    assert {r.alert_id: (r.status, r.severity) for r in known.values()} == {
        "s1@t0": ("open", "critical"),
        "silent:s2@t3": ("open", "silent"),
    }
    ack = acknowledge(known, "s1@t0", "Ana").as_event()
    done = resolve(known, "s1@t0", "false_alarm", "Ben", note="toaster").as_event()
    assert done["acknowledged_by"] == "Ana" and done["resolved_by"] == "Ben"
    # A compacted topic keeps only the last event per key: it alone gives the state.
    fresh = fold(raised(ALERTS, TROUBLE), [done])
    assert fresh["s1@t0"].status == "resolved" and fresh["s1@t0"].verdict == "false_alarm"
    assert fresh["s1@t0"].acknowledged_by == "Ana" and fresh["s1@t0"].note == "toaster"
    only_ack = fold(raised(ALERTS, TROUBLE), [ack])
    assert only_ack["s1@t0"].status == "acknowledged"
    assert fold(raised(ALERTS, TROUBLE), [done, ack])["s1@t0"].status == "acknowledged"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda k: acknowledge(k, "nope", "Ana"), "alert_id"),
        (lambda k: resolve(k, "s1@t0", "maybe", "Ana"), "verdict"),
        (lambda k: resolve(k, "s1@t0", "fire", ""), "by"),
        (lambda k: resolve(k, "s1@t0", "fire", "Ana", note="x" * 1_001), "note"),
    ],
)
def test_bad_input_names_the_field_the_value_and_what_is_allowed(call, field):
    with pytest.raises(VerdictError) as err:
        call(raised(ALERTS, TROUBLE))
    assert err.value.field == field
    assert f"{field}=" in str(err.value) and "allowed" in str(err.value)


def test_stray_events_with_ids_that_are_not_text_become_no_lifecycle():
    good = {"alert_id": "a@1", "event": "open", "sensor_id": "a", "ts": "2026-12-06T10:00:00Z"}
    alerts = [good, {**good, "alert_id": ["a"]}, {**good, "sensor_id": {"x": 1}}]
    trouble = [{"trouble_id": 7, "event": "open", "subject": "b", "ts": "t"}]
    known = raised(alerts, trouble)
    assert list(known) == ["a@1"]
    verdicts = [{"alert_id": ["a@1"], "verdict": "fire"}, {"alert_id": None}, {}]
    assert fold(known, verdicts)["a@1"].verdict is None
