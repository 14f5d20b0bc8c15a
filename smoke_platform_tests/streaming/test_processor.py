"""The worker's pure core without Kafka: validation, scoring through the scorer interface,
alert state per partition, outputs as data, and replay determinism."""

import json
import math

import numpy as np
import pytest

from streaming.alerts import AlertConfig
from streaming.processor import InMessage, Processor
from streaming.producer import scenario_records
from streaming.scoring import Scores

CFG = AlertConfig(consecutive=3, critical_probability=0.98, close_after=5)


class TvocScorer:
    """A transparent scorer: fire when TVOC is over 200 ppb (records as the service sees
    them). Counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, records):
        self.calls.append(len(records))
        tvoc = np.array([r["tvoc_ppb"] for r in records], dtype=float)
        proba = np.clip(tvoc / 400.0, 0.0, 0.97)
        return Scores(proba, proba >= 0.5, "test:1", "local")


def _messages(records, partition=0, start=0, topic="t"):
    return [
        InMessage(topic, partition, start + i, r["sensor_id"].encode(), json.dumps(r).encode())
        for i, r in enumerate(records)
    ]


def test_bad_messages_become_dead_letters_with_reasons_and_good_ones_rows():
    good = scenario_records(["normal_indoor"], seconds=5, seed=1)
    bad = [
        b'{"sensor_id": "x", ',
        json.dumps({**good[0], "humidity_pct": 140}).encode(),
        json.dumps({**good[0], "colour": "red"}).encode(),
        json.dumps({k: v for k, v in good[0].items() if k != "raw_h2"}).encode(),
        b"x" * 3_000,
    ]
    msgs = _messages(good) + [InMessage("t", 0, 100 + i, None, v) for i, v in enumerate(bad)]
    scorer = TvocScorer()
    out = Processor(CFG, max_message_bytes=2_000).process(msgs, scorer)
    assert [r["offset"] for r in out.rows] == list(range(5))
    assert scorer.calls == [5]  # one scorer call per batch
    reasons = {d.message.offset: (d.reason, d.field) for d in out.dead_letters}
    assert reasons[100][0] == "malformed_json"
    assert reasons[101] == ("out_of_range", "humidity_pct")
    assert reasons[102] == ("unknown_field", "colour")
    assert reasons[103] == ("missing_field", "raw_h2")
    assert reasons[104] == ("oversized", "<message>")
    headers = dict(out.dead_letters[1].headers(2_000))
    assert headers["source_offset"] == b"101" and b"0 to 100" in headers["error"]


def test_a_fire_opens_one_alert_per_sensor_with_partition_and_offset():
    records = scenario_records(["wood_fire", "normal_indoor"], seconds=300, seed=3)
    proc = Processor(AlertConfig(consecutive=3, close_after=300), 65_536)
    out = proc.process(_messages(records, partition=2), TvocScorer())
    opened = [a for a in out.alerts if a["event"] == "open"]
    assert len(opened) == 1 and opened[0]["sensor_id"] == "sensor-000"
    assert opened[0]["partition"] == 2 and opened[0]["model_version"] == "test:1"
    assert set(proc.states) == {2}
    assert all(math.isfinite(r["max_abs_z"]) for r in out.rows)


def test_raised_alerts_carry_the_explanation_of_the_scoring_model_version(generated):
    """Open and escalate events carry the model's reasons and the three measurements
    furthest from the profile, both of the model version that scored them; a close event
    explains nothing."""
    from smoke_platform.core.explain import Explainer, driver_names, normal_profile

    profile = normal_profile(generated[generated["fire_alarm"] == 0])
    asked = []

    class Reasons:  # the attribution's interface, with a visible answer
        def reasons(self, records):
            return [f"tvoc_ppb={r['tvoc_ppb']:.0f} (+1.00 log-odds)" for r in records]

    def explainers(version):
        asked.append(version)
        return Explainer(Reasons(), profile)  # type: ignore[arg-type]

    records = scenario_records(["wood_fire"], seconds=600, seed=3)
    for r in records[-30:]:  # the fire is put out: clean air for its last 30 s
        r["tvoc_ppb"] = 10.0
    proc = Processor(AlertConfig(consecutive=3, close_after=5), 65_536, explainers=explainers)
    out = proc.process(_messages(records), TvocScorer())
    events = {a["event"]: a for a in out.alerts}
    assert {"open", "close"} <= set(events), [a["event"] for a in out.alerts]
    opened = next(r for r in out.rows if r["offset"] == events["open"]["offset"])
    assert events["open"]["reasons"] == f"tvoc_ppb={opened['tvoc_ppb']:.0f} (+1.00 log-odds)"
    assert "tvoc_ppb" in driver_names(events["open"]["drivers"])
    assert len(driver_names(events["open"]["drivers"])) == 3
    assert events["close"]["drivers"] == "" and events["close"]["reasons"] == ""
    assert set(asked) == {"test:1"}
    # Without an explainer (a version the store cannot give) alerts still open, unexplained.
    plain = Processor(AlertConfig(consecutive=3, close_after=5), 65_536)
    again = plain.process(_messages(records), TvocScorer())
    assert [a["alert_id"] for a in again.alerts] == [a["alert_id"] for a in out.alerts]
    assert all(a["drivers"] == "" and a["reasons"] == "" for a in again.alerts)


@pytest.mark.parametrize("split", [1, 37, 250])
def test_replaying_from_a_snapshot_gives_the_same_rows_and_alert_ids(split):
    """What the shell relies on after a crash between the commit and the files: the state
    saved at offset `split` plus the messages after it reproduce the uninterrupted run."""
    records = scenario_records(["wood_fire", "cooking_steam"], seconds=400, seed=9)
    msgs = _messages(records)
    whole = Processor(CFG, 65_536).process(msgs, TvocScorer())

    first = Processor(CFG, 65_536)
    first.process(msgs[:split], TvocScorer())
    snapshot = json.loads(json.dumps(first.snapshot(0)))  # as the sink stores it
    resumed = Processor(CFG, 65_536)
    resumed.load(0, snapshot)
    rest = resumed.process(msgs[split:], TvocScorer())

    keys = ("alert_id", "event", "offset")
    assert [tuple(a[k] for k in keys) for a in rest.alerts] == [
        tuple(a[k] for k in keys) for a in whole.alerts if a["offset"] >= split
    ]
    tail = whole.rows[split:]
    assert [(r["offset"], r["anomaly"]) for r in rest.rows] == [
        (r["offset"], r["anomaly"]) for r in tail
    ]
    np.testing.assert_allclose(
        [r["max_abs_z"] for r in rest.rows], [r["max_abs_z"] for r in tail], rtol=1e-12
    )


def test_an_oversized_dead_letter_is_cut_to_the_limit_and_says_so():
    msg = InMessage("t", 0, 7, b"k", b"y" * 5_000_000)
    [letter] = Processor(CFG, max_message_bytes=65_536).validate([msg])[1]
    assert letter.reason == "oversized" and len(letter.value(65_536)) == 65_536
    headers = dict(letter.headers(65_536))
    assert headers["truncated"] == b"true" and headers["original_bytes"] == b"5000000"


def test_numbers_must_be_json_numbers_and_rows_carry_validated_values():
    """A number sent as a string or a boolean is dead-lettered naming the field; a whole
    number sent for a measurement is a float in the row (the files' schema never varies)."""
    first, second, third = scenario_records(["normal_indoor"], seconds=3, seed=2)
    coerced = [
        {**first, "temperature_c": "20.5"},
        {**first, "humidity_pct": " 50 "},
        {**first, "fire_alarm": True},
        {**first, "tvoc_ppb": True},
    ]
    whole = {**second, "temperature_c": 21}
    later = {**third, "sensor_id": "sensor-\u0000"}
    out = Processor(CFG, 65_536).process(_messages([*coerced, whole, later]), TvocScorer())
    [row] = out.rows
    assert row["offset"] == 4 and row["temperature_c"] == 21.0
    assert isinstance(row["temperature_c"], float)
    letters = [(d.message.offset, d.reason, d.field) for d in out.dead_letters]
    assert letters == [
        (0, "wrong_type", "temperature_c"),
        (1, "wrong_type", "humidity_pct"),
        (2, "wrong_type", "fire_alarm"),
        (3, "wrong_type", "tvoc_ppb"),
        (5, "bad_identifier", "sensor_id"),
    ]
    assert "a JSON number" in out.dead_letters[0].error


@pytest.mark.parametrize(
    "ts", ["1653-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T00:00:00Z", 0]
)
def test_timestamps_outside_the_window_are_dead_lettered(ts):
    [good] = scenario_records(["normal_indoor"], seconds=1, seed=2)
    out = Processor(CFG, 65_536).process(_messages([{**good, "ts": ts}]), TvocScorer())
    [letter] = out.dead_letters
    assert (letter.reason, letter.field) == ("out_of_window", "ts")
    assert "3650 days old" in letter.error and "SMOKE_READING_MAX_AGE_DAYS" in letter.error


def test_the_poison_guard_isolates_a_failing_batch_and_never_counts_infrastructure(tmp_path):
    from streaming.poison import PoisonGuard

    msgs = [InMessage("t", p, o, None, b"{}") for p in (0, 1) for o in range(10, 15)]
    guard = PoisonGuard(tmp_path, "t")
    [step] = guard.plan(msgs)
    assert len(step.messages) == 10  # nothing suspect: one step
    for _ in range(2):  # the batch fails twice (the disk failing in between is not counted)
        guard.begin(step)
        guard.failed(step, RuntimeError("boom"))
        guard.begin(step)
        guard.take_back(step)
    restarted = PoisonGuard(tmp_path, "t")  # the count survives the process
    restarted.load(0), restarted.load(1)
    steps = restarted.plan(msgs)
    assert [len(s.messages) for s in steps] == [1] * 10  # both partitions one at a time
    assert not any(s.poisoned for s in steps)
    first = steps[0]
    for _ in range(2):  # the first message alone fails twice: given up
        restarted.begin(first)
        restarted.failed(first, RuntimeError("boom"))
    [given_up, *rest] = restarted.plan(msgs)
    assert given_up.poisoned == {(0, 10): given_up.poisoned[(0, 10)]}
    assert (
        "failed 2 times" in given_up.poisoned[(0, 10)]
        and "RuntimeError: boom" in (given_up.poisoned[(0, 10)])
    )
    assert not any(s.poisoned for s in rest)
    # Past the suspect range, batches again.
    later = [InMessage("t", 0, o, None, b"{}") for o in range(15, 20)]
    assert [len(s.messages) for s in restarted.plan(later)] == [5]


@pytest.mark.parametrize(
    ("hwm", "committed", "start", "replay_until"),
    [
        (-1, -1001, -2, None),  # new partition, nothing committed: from the beginning
        (-1, 500, -2, 500),  # files lost, offsets committed: replay 0..499 into files
        (499, 500, 500, None),  # files and offsets agree
        (299, 500, 300, 500),  # a crash between the commit and the files: replay 300..499
        (599, 500, 600, None),  # files ahead of a committed offset (never expected): files win
        (-1, 0, 0, None),  # committed at 0, no files: from 0
    ],
)
def test_where_a_partition_resumes(hwm, committed, start, replay_until):
    from streaming.processor import resume_plan

    plan = resume_plan(hwm, committed)
    assert (plan.start, plan.replay_until) == (start, replay_until)


def test_a_batch_of_several_partitions_is_supervised_as_each_partition_alone():
    """The worker's batches mix partitions: each partition's supervision (intervals,
    stuck runs, the clock) moves on exactly as if its messages had come alone, and a
    channel frozen on one partition's sensor raises `stuck` there only."""
    records = scenario_records(["normal_indoor", "normal_indoor", "wood_fire"], 700, seed=5)
    for r in records:
        if r["sensor_id"] == "sensor-001":
            r["pressure_hpa"] = 1000.0  # frozen
    part = {"sensor-000": 0, "sensor-001": 1, "sensor-002": 0}
    msgs = [
        InMessage("t", part[r["sensor_id"]], i, r["sensor_id"].encode(), json.dumps(r).encode())
        for i, r in enumerate(records)
    ]
    mixed, alone = Processor(CFG, 65_536), Processor(CFG, 65_536)
    wall = records[-1]["ts"]
    wall = np.datetime64(wall.replace("+00:00", "")).astype("datetime64[ms]").astype(float) / 1e3
    for k in range(0, len(msgs), 250):
        batch = msgs[k : k + 250]
        events = mixed.process(batch, TvocScorer(), wall).trouble
        for p in (0, 1):
            alone.process([m for m in batch if m.partition == p], TvocScorer(), wall)
        assert {e["subject"] for e in events if e["kind"] == "stuck"} <= {"sensor-001"}
    for p in (0, 1):
        assert mixed.watch(p).to_dict() == alone.watch(p).to_dict()
    assert mixed.watch(1).sensors["sensor-001"].stuck_since is not None
    assert mixed.watch(0).sensors["sensor-000"].stuck_since is None
