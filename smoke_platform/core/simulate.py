"""Seeded, scenario-based generator of 1 Hz sessions in the Kaggle schema (DATA.md).

Each recording session has its own baselines (gas-sensor raw signals, pressure,
climate), sensor noise and slow drift. Fires build over tens of seconds from an
onset; the label is 1 from the onset on. Nuisance sessions (cooking steam, dust,
high humidity) move some of the same signals but must not alarm.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smoke_platform.core.io import to_canonical
from smoke_platform.core.schema import KAGGLE_COLUMNS

DEFAULT_ROWS = 60_000
DEFAULT_SENSORS = 8
START_EPOCH = 1_654_733_331  # first timestamp of the real file (June 2022)


@dataclass(frozen=True)
class Scenario:
    name: str
    fire: bool
    indoor: bool
    weight: float
    seconds: tuple[int, int]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("normal_indoor", False, True, 0.12, (300, 1200)),
        Scenario("normal_outdoor", False, False, 0.06, (300, 1200)),
        Scenario("high_humidity", False, False, 0.06, (300, 1200)),
        Scenario("cooking_steam", False, True, 0.06, (300, 1200)),
        Scenario("dust", False, True, 0.06, (300, 1200)),
        Scenario("wood_fire", True, True, 0.26, (600, 1500)),
        Scenario("gas_fire", True, True, 0.18, (600, 1500)),
        Scenario("outdoor_grill", True, False, 0.20, (600, 1500)),
    )
}
FIRE_SCENARIOS = tuple(n for n, s in SCENARIOS.items() if s.fire)
NUISANCE_SCENARIOS = ("high_humidity", "cooking_steam", "dust")


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    """Smooth multiplicative flicker: an AR(1) process (vectorised via lfilter-free recursion)."""
    shocks = rng.normal(0.0, sigma, n)
    # Closed-form AR(1) through cumulative sums of geometrically weighted shocks.
    weights = phi ** np.arange(n)
    return np.convolve(shocks, weights)[:n]


def _fire_ramp(rng: np.random.Generator, n: int, onset: int) -> np.ndarray:
    """0 before the onset, then a rise with a time constant of 8–40 s and flicker."""
    t = np.arange(n) - onset
    tau = rng.uniform(8, 40)
    ramp = np.where(t >= 0, 1.0 - np.exp(-np.clip(t, 0, None) / tau), 0.0)
    return ramp * np.exp(_ar1(rng, n, 0.97, 0.04))


def _episodes(rng: np.random.Generator, n: int, count: int, width: tuple[int, int]) -> np.ndarray:
    """Bell-shaped nuisance episodes (steam, dust), values 0..1."""
    t = np.arange(n)
    out = np.zeros(n)
    for _ in range(count):
        centre, w = rng.uniform(0, n), rng.uniform(*width)
        out = np.maximum(out, np.exp(-0.5 * ((t - centre) / (w / 4)) ** 2))
    return out


def _baseline(rng: np.random.Generator, sc: Scenario, n: int) -> dict[str, np.ndarray]:
    drift = np.cumsum(rng.normal(0, 1, n)) / np.sqrt(max(n, 1))
    temp0 = rng.uniform(18, 26) if sc.indoor else rng.uniform(-20, 32)
    hum0 = rng.uniform(66, 74) if sc.name == "high_humidity" else rng.uniform(32, 60)
    return {
        "temp": temp0 + 0.3 * drift + rng.normal(0, 0.02, n),
        "hum": hum0 - 1.0 * drift + rng.normal(0, 0.15, n),
        "tvoc": np.abs(
            rng.lognormal(np.log(8 if sc.indoor else 30), 0.8) * np.exp(_ar1(rng, n, 0.98, 0.05))
        ),
        "h2": rng.uniform(12_200, 13_300) + 25 * drift + rng.normal(0, 6, n),
        "eth": rng.uniform(19_000, 21_000) + 60 * drift + rng.normal(0, 10, n),
        "press": rng.uniform(931.5, 939.5) + 0.15 * drift + rng.normal(0, 0.004, n),
        "pm": rng.lognormal(np.log(1.0 if sc.indoor else 3.0), 0.5)
        * np.exp(_ar1(rng, n, 0.98, 0.06)),
        "coarse": np.full(n, rng.uniform(1.02, 1.3)),
    }


def _apply_fire(rng: np.random.Generator, sc: Scenario, b: dict, e: np.ndarray) -> None:
    # Session intensity spans smouldering (TVOC +100) to flaming (tens of thousands).
    scale = rng.lognormal(0.0, 1.1)
    gas = sc.name == "gas_fire"
    b["tvoc"] = b["tvoc"] + e * (250 if gas else 900) * scale
    b["pm"] = b["pm"] + e * (8 if gas else 120) * scale * (0.6 if sc.name == "outdoor_grill" else 1)
    b["h2"] = b["h2"] - e * min(1_300.0, (450 if gas else 250) * scale)
    b["eth"] = b["eth"] - e * min(3_500.0, 700 * scale)
    b["temp"] = b["temp"] + e * rng.uniform(1, 8 if sc.indoor else 4)
    b["hum"] = b["hum"] - e * rng.uniform(2, 10)
    b["eco2_extra"] = e * (600 if gas else 150) * scale


def _apply_nuisance(rng: np.random.Generator, sc: Scenario, b: dict, n: int) -> None:
    if sc.name == "cooking_steam":
        e = _episodes(rng, n, int(rng.integers(1, 4)), (60, 300))
        b["hum"] = b["hum"] + e * rng.uniform(8, 16)
        b["temp"] = b["temp"] + e * rng.uniform(0.5, 2)
        b["pm"] = b["pm"] + e * rng.uniform(3, 40)
        b["tvoc"] = b["tvoc"] + e * rng.uniform(20, 250)
        b["coarse"] = b["coarse"] + e * rng.uniform(0.5, 1.2)
    elif sc.name == "dust":
        e = _episodes(rng, n, int(rng.integers(1, 5)), (30, 200))
        b["pm"] = b["pm"] + e * rng.uniform(10, 200)
        b["coarse"] = b["coarse"] + e * rng.uniform(1.5, 4.0)
    elif sc.name in ("high_humidity", "normal_outdoor"):
        e = _episodes(rng, n, int(rng.integers(0, 3)), (60, 400))  # traffic, fog banks
        b["pm"] = b["pm"] + e * rng.uniform(2, 25)
        b["tvoc"] = b["tvoc"] + e * rng.uniform(10, 120)
        b["coarse"] = b["coarse"] + e * rng.uniform(0.2, 0.8)


def _to_columns(b: dict, n: int) -> dict[str, np.ndarray]:
    pm1 = np.clip(b["pm"], 0, 14_000)
    pm25 = np.clip(pm1 * b["coarse"], 0, 45_000)
    tvoc = np.clip(b["tvoc"], 0, 60_000)
    eco2 = np.clip(400 + np.maximum(tvoc - 30, 0) * 0.25 + b.get("eco2_extra", 0), 400, 60_000)
    fine = 6.9 / b["coarse"] ** 2  # coarse aerosol has fewer sub-0.5 µm particles per µg
    return {
        "Temperature[C]": np.round(np.clip(b["temp"], -22, 60), 3),
        "Humidity[%]": np.round(np.clip(b["hum"], 10.7, 75.2), 2),
        "TVOC[ppb]": np.round(tvoc).astype("int64"),
        "eCO2[ppm]": np.round(eco2).astype("int64"),
        "Raw H2": np.round(np.clip(b["h2"], 10_700, 13_800)).astype("int64"),
        "Raw Ethanol": np.round(np.clip(b["eth"], 15_300, 21_400)).astype("int64"),
        "Pressure[hPa]": np.round(np.clip(b["press"], 930.8, 939.9), 3),
        "PM1.0": np.round(pm1, 2),
        "PM2.5": np.round(pm25, 2),
        "NC0.5": np.round(np.clip(pm1 * fine, 0, 61_000), 2),
        "NC1.0": np.round(np.clip(pm25 * 1.06, 0, 52_000), 3),
        "NC2.5": np.round(np.clip(pm25 * 0.03 * b["coarse"] ** 2, 0, 30_000), 3),
    }


def generate_session(
    rng: np.random.Generator,
    scenario: str,
    sensor_id: str,
    session_id: str,
    start_epoch: int,
    seconds: int | None = None,
) -> pd.DataFrame:
    """One recording session, 1 Hz, Kaggle columns plus sensor/session/scenario."""
    sc = SCENARIOS[scenario]
    n = int(seconds if seconds is not None else rng.integers(*sc.seconds))
    b = _baseline(rng, sc, n)
    label = np.zeros(n, dtype="int64")
    if sc.fire:
        onset = int(rng.integers(15, 60))
        _apply_fire(rng, sc, b, _fire_ramp(rng, n, onset))
        label[onset:] = 1
    else:
        _apply_nuisance(rng, sc, b, n)
    cols = {"UTC": start_epoch + np.arange(n, dtype="int64"), **_to_columns(b, n)}
    cols.update(CNT=np.arange(n, dtype="int64"), **{"Fire Alarm": label})
    frame = pd.DataFrame(cols)
    frame["sensor_id"], frame["session_id"], frame["scenario"] = sensor_id, session_id, scenario
    return frame


def _scenario_deck(rng: np.random.Generator, scenarios: Sequence[str] | None) -> Iterator[str]:
    """Scenarios in shuffled decks of 50 dealt by weight, so every scenario shows up
    in every ~50 sessions (rare ones are never missing from a default-size data set)."""
    names = list(scenarios) if scenarios else list(SCENARIOS)
    total = sum(SCENARIOS[n].weight for n in names)
    deck = [n for n in names for _ in range(max(1, round(50 * SCENARIOS[n].weight / total)))]
    while True:
        yield from (deck[i] for i in rng.permutation(len(deck)))


def generate_kaggle(
    n_rows: int = DEFAULT_ROWS,
    seed: int = 0,
    n_sensors: int = DEFAULT_SENSORS,
    scenarios: Sequence[str] | None = None,
) -> pd.DataFrame:
    """About `n_rows` rows (whole sessions, last one trimmed) in the Kaggle schema."""
    rng = np.random.default_rng(seed)
    deck = _scenario_deck(rng, scenarios)
    clocks = [START_EPOCH] * n_sensors
    sessions, total = [], 0
    for i in itertools.count():
        if total >= n_rows:
            break
        sensor = i % n_sensors
        frame = generate_session(
            rng, next(deck), f"sensor-{sensor:03d}", f"sess-{seed}-{i:05d}", clocks[sensor]
        )
        frame = frame.iloc[: n_rows - total]
        clocks[sensor] += len(frame) + int(rng.integers(60, 3_600))
        sessions.append(frame)
        total += len(frame)
    out = pd.concat(sessions, ignore_index=True)
    out.index.name = "row_index"
    return out[[*KAGGLE_COLUMNS, "sensor_id", "session_id", "scenario"]]


def generate_readings(
    n_rows: int = DEFAULT_ROWS,
    seed: int = 0,
    n_sensors: int = DEFAULT_SENSORS,
    scenarios: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Generated readings as a canonical frame (the raw asset's form)."""
    return to_canonical(generate_kaggle(n_rows, seed, n_sensors, scenarios))


def _sensor_stream(
    seed: int, sensor: int, start_epoch: int, scenarios: Sequence[str] | None
) -> Iterator[dict]:
    rng = np.random.default_rng([seed, sensor])
    deck = _scenario_deck(rng, scenarios)
    clock = start_epoch
    for i in itertools.count():
        frame = generate_session(
            rng, next(deck), f"sensor-{sensor:03d}", f"live-{seed}-{sensor}-{i}", clock
        )
        clock += len(frame) + int(rng.integers(0, 30))
        yield from to_canonical(frame).to_dict("records")


def live_readings(
    seed: int = 0,
    n_sensors: int = DEFAULT_SENSORS,
    start_epoch: int = START_EPOCH,
    scenarios: Sequence[str] | None = None,
) -> Iterator[dict]:
    """An endless stream of canonical readings from `n_sensors` devices, in event-time order."""
    streams = [_sensor_stream(seed, s, start_epoch, scenarios) for s in range(n_sensors)]
    return heapq.merge(*streams, key=lambda r: r["ts"])
