"""The per-sensor alert machine and z-scores, on hand-made sequences."""

import json

import numpy as np

from streaming.alerts import WARM_UP, AlertConfig, SensorState

CFG = AlertConfig(consecutive=3, critical_probability=0.98, close_after=4)


def _run(probs, threshold=0.5):
    state, events = SensorState(), []
    for i, p in enumerate(probs):
        event = state.step("s1", f"t{i:03d}", p, p >= threshold, CFG)
        if event:
            events.append((event["event"], event["severity"], event["alert_id"]))
    return events


def test_opens_after_n_consecutive_positives_and_closes_after_m_negatives():
    events = _run([0.6, 0.7, 0.1, 0.6, 0.7, 0.8, 0.9, 0.1, 0.1, 0.1, 0.1, 0.2])
    assert events == [("open", "warning", "s1@t005"), ("close", "warning", "s1@t005")]


def test_one_very_high_probability_opens_a_critical_alert_at_once():
    assert _run([0.1, 0.99, 0.1, 0.1, 0.1, 0.1]) == [
        ("open", "critical", "s1@t001"),
        ("close", "critical", "s1@t001"),
    ]


def test_one_fire_with_short_gaps_is_one_alert_and_escalates_once():
    probs = [0.9] * 5 + [0.1] * 3 + [0.9] * 5 + [0.99] + [0.9] * 3 + [0.1] * 4
    assert _run(probs) == [
        ("open", "warning", "s1@t002"),
        ("escalate", "critical", "s1@t002"),
        ("close", "critical", "s1@t002"),
    ]


def test_isolated_positives_never_alert():
    assert _run([0.9, 0.1, 0.9, 0.9, 0.1] * 10) == []


def test_state_round_trips_through_json_dict():
    state = SensorState()
    for i in range(4):
        state.step("s1", f"t{i}", 0.9, True, CFG)
    again = SensorState.from_dict(state.to_dict())
    assert again == state and again.alert_id == "s1@t2" and again.history is None
    state.history = np.array([[1.654e9, 0.5, 0.25, 0.125], [1.654e9 + 1, 0.75, 0.5, 1 / 3]])
    again = SensorState.from_dict(json.loads(json.dumps(state.to_dict())))
    np.testing.assert_array_equal(again.history, state.history)  # exactly, through JSON


def test_zscore_flags_a_jump_after_warm_up():
    state = SensorState()
    base = {
        "tvoc_ppb": 10.0,
        "eco2_ppm": 400.0,
        "pm2_5": 1.0,
        "nc0_5": 5.0,
        "temperature_c": 21.0,
        "humidity_pct": 45.0,
    }
    import numpy as np

    from streaming.alerts import CHANNELS, zscores

    def one(reading):
        z = zscores([state], np.array([[reading[ch] for ch in CHANNELS]]), CFG)[0]
        return dict(zip(CHANNELS, z, strict=True))

    for i in range(WARM_UP + 20):
        z = one({**base, "temperature_c": 21.0 + 0.01 * (i % 3)})
    assert all(abs(v) < 4 for v in z.values())
    z = one({**base, "tvoc_ppb": 5_000.0})
    assert z["tvoc_ppb"] > 4


def test_spark_window_alerts_are_the_workers_record():
    """A window where at least half the readings scored as fire is an alert, in the same
    record the worker publishes (same keys), keyed so a retried batch repeats its id."""
    import pandas as pd

    from streaming.alerts import AlertConfig, SensorState
    from streaming.spark_job import window_alerts

    start = pd.Timestamp("2026-11-29T10:00:00Z")
    frame = pd.DataFrame(
        {
            "sensor_id": ["a", "b", "c"],
            "window_start": [start] * 3,
            "window_end": [start + pd.Timedelta(minutes=5)] * 3,
            "fire_share": [0.9, 0.5, 0.49],
            "max_probability": [0.99, 0.7, 0.6],
            "readings": [300, 300, 300],
            # window means: a's TVOC is a fire's, b's a clean room's with dusty air
            "tvoc_ppb_mean": [1_200.0, 2.0, 2.0],
            "eco2_ppm_mean": [450.0, 400.0, 400.0],
            "pm2_5_mean": [2.0, 60.0, 1.0],
            "nc0_5_mean": [15.0, 300.0, 7.0],
            "temperature_c_mean": [-20.0, 21.0, 21.0],
            "humidity_pct_mean": [50.0, 50.0, 50.0],
        }
    )
    profile = {
        "tvoc_ppb": [0.7, 0.6],
        "eco2_ppm": [6.0, 0.1],
        "pm2_5": [1.0, 0.7],
        "nc0_5": [2.1, 0.9],
    }
    alerts = window_alerts(frame, profile)
    assert [(a["sensor_id"], a["severity"]) for a in alerts] == [
        ("a", "critical"),
        ("b", "warning"),
    ]
    assert alerts[0]["alert_id"] == "a@2026-11-29T10:00:00+00:00/5min"
    assert alerts[0]["drivers"].startswith("tvoc_ppb=1200 (normal 1.01, z=+10.7)")
    assert alerts[1]["drivers"].split("=")[0] in {"pm2_5", "nc0_5"}
    assert "temperature" not in alerts[0]["drivers"]
    assert all(a["drivers"] == "" for a in window_alerts(frame))  # no profile: none
    state, cfg = SensorState(), AlertConfig()
    worker = state.step("a", "2026-11-29T10:00:00+00:00", 0.99, True, cfg)
    assert worker is not None and set(worker) == set(alerts[0])


def _one_at_a_time(stats, reading, cfg):
    """The per-reading EWMA the worker used before batches were vectorised (reference)."""
    import math

    from streaming.alerts import _LOG_CHANNELS, CHANNELS, MIN_SD

    alpha, out = 2.0 / (cfg.window + 1), {}
    for ch in CHANNELS:
        x = float(reading[ch])
        x = math.log1p(max(x, 0.0)) if ch in _LOG_CHANNELS else x
        n, mean, var = stats.get(ch, [0.0, x, 0.0])
        if n >= WARM_UP:
            out[ch] = (x - mean) / (math.sqrt(var) + MIN_SD)
        delta = x - mean
        mean += alpha * delta
        var = (1 - alpha) * (var + alpha * delta * delta)
        stats[ch] = [n + 1, mean, var]
    return out


def test_batch_zscores_equal_a_reading_by_reading_loop():
    """Interleaved sensors (one with history from an earlier batch, some warming up, one
    with a single reading) in three batches: the same z-scores and state as the loop."""
    import numpy as np

    from streaming.alerts import CHANNELS, zscores

    rng = np.random.default_rng(3)
    sensors = [f"s{i}" for i in range(7)]
    states = {s: SensorState() for s in sensors}
    reference = {s: {} for s in sensors}
    for batch in range(3):
        picks = rng.choice(len(sensors), size=120, p=[0.3, 0.3, 0.2, 0.1, 0.05, 0.04, 0.01])
        values = np.column_stack(
            [
                rng.lognormal(2, 1, len(picks))
                if ch != "temperature_c"
                else rng.normal(-5, 30, len(picks))
                for ch in CHANNELS
            ]
        )
        if batch == 2:
            values[5, 0] = 40_000.0  # a spike
        z = zscores([states[sensors[k]] for k in picks], values, CFG)
        for row, k in enumerate(picks):
            expected = _one_at_a_time(
                reference[sensors[k]], dict(zip(CHANNELS, values[row], strict=True)), CFG
            )
            got = {ch: v for ch, v in zip(CHANNELS, z[row], strict=True) if not np.isnan(v)}
            assert got.keys() == expected.keys() and np.allclose(
                list(got.values()), list(expected.values()), rtol=1e-12, atol=0
            ), (batch, row)
        for s in sensors:
            for ch, triple in reference[s].items():
                assert np.allclose(states[s].stats[ch], triple, rtol=1e-12)
    assert np.isnan(z).any() and not np.isnan(z).all()  # warming up and warm sensors both
