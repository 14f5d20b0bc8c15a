"""Trouble signals' rules, driven by hand: readings in, wall time and lag given."""

import itertools
import json

import pytest

from smoke_platform.core.quality import STUCK_CHANNELS, STUCK_RUN_SECONDS
from smoke_platform.core.trouble import PartitionWatch, SensorWatch, TroubleConfig

CFG = TroubleConfig(silent_after_s=60, feed_silent_min_sensors=3, feed_silent_fraction=0.5)
T0 = 1_800_000_000.0


def _reading(sensor, t, value=None):
    base = {c: (value if value is not None else t % 97 + i) for i, c in enumerate(STUCK_CHANNELS)}
    return {"sensor_id": sensor, **base}


def _feed(watch, sensors, start, seconds, wall_offset=0.0, value=None):
    """1 Hz readings of `sensors` for `seconds`, consumed as they happen; returns events."""
    events = []
    for k in range(seconds):
        t = start + k
        recs = [_reading(s, t, value) for s in sensors]
        events += watch.observe(recs, [t] * len(recs), t + wall_offset, CFG)
        events += watch.judge(t + wall_offset, True, CFG)
    return events


def test_a_sensor_that_stops_is_silent_once_within_its_bound_and_restored_when_back():
    watch = PartitionWatch(0)
    sensors = [f"s{i}" for i in range(10)]
    assert _feed(watch, sensors, T0, 120) == []  # a full period caught up, all sending
    events = _feed(watch, sensors[1:], T0 + 120, 75)  # s0 stops
    assert [(e["kind"], e["event"], e["subject"]) for e in events] == [("silent", "open", "s0")]
    opened = next(e for e in events if e["event"] == "open")
    # Raised within the bound (60 s) plus one poll (1 s here) of its last reading.
    assert pytest.approx(60, abs=1.5) == _sec(opened["ts"]) - (T0 + 119)
    back = _feed(watch, sensors, T0 + 195, 3)
    assert [(e["kind"], e["event"], e["trouble_id"]) for e in back] == [
        ("silent", "restored", opened["trouble_id"])
    ]


def _sec(iso):
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_a_slow_sensor_is_judged_by_ten_of_its_own_intervals():
    watch = PartitionWatch(0)
    events = []
    for k in range(40):  # one reading every 20 s: its bound is 200 s, not 60
        t = T0 + 20 * k
        events += watch.observe([_reading("slow", t)], [t], t, CFG)
        for w in range(20):
            events += watch.judge(t + w, True, CFG)
    assert events == []
    last = T0 + 20 * 39
    assert watch.judge(last + 190, True, CFG) == []
    [silent] = watch.judge(last + 201, True, CFG)
    assert silent["kind"] == "silent" and "bound 200 s" in silent["detail"]


def test_a_whole_feed_going_quiet_is_one_feed_silent_not_one_per_sensor():
    watch = PartitionWatch(2)
    sensors = [f"s{i:03d}" for i in range(200)]
    _feed(watch, sensors, T0, 90)
    events = []
    for w in range(90):  # the producer stopped; the worker is caught up
        events += watch.judge(T0 + 90 + w, True, CFG)
    assert [(e["kind"], e["event"], e["sensors"]) for e in events] == [("feed_silent", "open", 200)]
    assert watch.counts()["silent"] == 200
    back = _feed(watch, sensors, T0 + 200, 1)
    assert [(e["kind"], e["event"]) for e in back] == [("feed_silent", "restored")]
    assert watch.counts()["silent"] == 0


def test_a_backlog_and_a_restart_raise_no_silence():
    watch = PartitionWatch(0)
    sensors = ["a", "b", "c", "d"]
    _feed(watch, sensors, T0, 100)
    # The worker falls behind for ten minutes: nothing is silent while it is.
    assert all(watch.judge(T0 + 100 + w, False, CFG) == [] for w in range(600))
    # It catches up on the backlog (readings from the ten minutes), judged after a period.
    assert _feed(watch, sensors, T0 + 100, 600, wall_offset=0.0) == []
    stored = json.loads(json.dumps(watch.to_dict()))
    restarted = PartitionWatch.from_dict(0, stored, wall=T0 + 2_000)  # down for 20 minutes
    assert restarted.counts() == watch.counts()
    # Back, consuming the readings of the 20 minutes it was down, then live ones.
    assert _feed(restarted, sensors, T0 + 700, 1_400) == []


def test_a_stuck_channel_raises_stuck_and_varying_again_restores_it():
    watch = PartitionWatch(0)
    events = _feed(watch, ["x"], T0, STUCK_RUN_SECONDS + 5, value=21.5)
    stuck = [e for e in events if e["kind"] == "stuck"]
    assert [e["event"] for e in stuck] == ["open"]
    assert set(STUCK_CHANNELS) <= set(stuck[0]["detail"].replace(",", "").split())
    again = _feed(watch, ["x"], T0 + STUCK_RUN_SECONDS + 5, 2)
    assert [(e["kind"], e["event"]) for e in again] == [("stuck", "restored")]


def test_a_stuck_run_that_ends_inside_one_batch_still_raises_stuck_then_restored():
    # A replayed backlog: the whole run and its end in one batch, another sensor between.
    frozen = [_reading("x", T0 + k, 21.5) for k in range(STUCK_RUN_SECONDS)]
    moving = [_reading("x", T0 + STUCK_RUN_SECONDS + k) for k in range(3)]
    short = [_reading("y", T0 + k, 7.0) for k in range(STUCK_RUN_SECONDS - 1)]
    recs = [*short, *frozen, *moving]
    times = [T0 + k for k in range(len(short))] + [T0 + k for k in range(len(frozen) + 3)]
    events = PartitionWatch(0).observe(recs, times, T0 + STUCK_RUN_SECONDS + 3, CFG)
    assert [(e["kind"], e["event"], e["subject"]) for e in events] == [
        ("stuck", "open", "x"),
        ("stuck", "restored", "x"),
    ]  # y's run is one reading short of the rule


def test_a_sensor_whose_messages_keep_being_dead_lettered_is_implausible():
    watch = PartitionWatch(0)
    _feed(watch, ["g"], T0, 5)
    events = []
    for _ in range(CFG.implausible_dead_letters + 1):
        events += watch.dead_letter("g", T0 + 5, CFG)
    assert [(e["kind"], e["event"]) for e in events] == [("implausible", "open")]
    assert watch.dead_letter("unknown-key", T0 + 5, CFG) == []
    assert "unknown-key" not in watch.sensors


def test_state_per_sensor_is_small():
    """The same figure the benchmark prints at 100,000 sensors, here for 2,000."""
    import tracemalloc

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    watch = PartitionWatch(0)
    for k in range(12):
        t = T0 + k
        recs = [_reading(f"sensor-{i:06d}", t) for i in range(2_000)]
        watch.observe(recs, [t] * len(recs), t, CFG)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert isinstance(next(iter(watch.sensors.values())), SensorWatch)
    assert used / 2_000 < 2_000, used / 2_000


def test_stuck_runs_counted_over_batches_equal_a_reading_by_reading_count():
    """The batch-wise run lengths (numpy) equal a plain loop over the readings, whatever
    the batch boundaries: the stored runs carry over."""
    import numpy as np
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None, database=None)
    @given(
        sensors=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=60),
        levels=st.lists(st.integers(0, 2), min_size=60, max_size=60),
        cuts=st.lists(st.integers(1, 59), max_size=4),
    )
    def check(sensors, levels, cuts):
        watch = PartitionWatch(0)
        rows = [
            {"sensor_id": s, **dict.fromkeys(STUCK_CHANNELS, float(levels[i]))}
            for i, s in enumerate(sensors)
        ]
        bounds = sorted({0, len(rows), *[c for c in cuts if c < len(rows)]})
        for a, b in itertools.pairwise(bounds):
            part = rows[a:b]
            watch.observe(part, [T0 + a + i for i in range(len(part))], T0 + b, CFG)
        expected: dict[str, tuple[float, int]] = {}
        for r in rows:
            value, count = expected.get(r["sensor_id"], (np.nan, 0))
            v = r[STUCK_CHANNELS[0]]
            expected[r["sensor_id"]] = (v, count + 1 if v == value else 1)
        got = {s: (w.stuck_values[0], w.stuck_counts[0]) for s, w in watch.sensors.items()}
        assert got == expected

    check()


def test_a_snapshot_of_the_watch_does_not_change_with_later_readings():
    """The worker snapshots a partition's state per batch and stores it at the next table
    commit: what later batches change in place must not reach the stored snapshot."""
    watch = PartitionWatch(0)
    _feed(watch, ["a"], T0, 5)
    watch.dead_letter("a", T0 + 5, CFG)
    snapshot = watch.to_dict()
    stored = json.dumps(snapshot)
    _feed(watch, ["a"], T0 + 5, 5, value=1.0)  # the stuck counts grow
    watch.dead_letter("a", T0 + 10, CFG)  # the dead-letter count grows
    assert json.dumps(snapshot) == stored
    assert json.dumps(watch.to_dict()) != stored
