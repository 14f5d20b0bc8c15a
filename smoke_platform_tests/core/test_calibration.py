"""The simulator against real sensors: distances per class and measurement may not grow,
and no real excerpt may fall outside what the simulator produces beyond the known gaps.
Both checks are shown to fail on a simulator drifted away from reality."""

import pytest

from smoke_platform.core.calibration import (
    CALIBRATED_KS,
    CHANNELS,
    DRIFT_MARGIN,
    KNOWN_GAPS,
    coverage_gaps,
    distances,
    drift,
    report_tables,
)
from smoke_platform.core.simulate import SCENARIOS, generate_readings
from smoke_platform.reference import load_reference


@pytest.fixture(scope="module")
def simulated():
    return generate_readings(n_rows=60_000, seed=0)


@pytest.fixture(scope="module")
def real():
    return load_reference()


def test_the_simulator_stays_as_close_to_real_sensors_as_calibrated(simulated, real):
    table = distances(simulated, real)
    assert drift(table, CALIBRATED_KS, DRIFT_MARGIN) == []
    assert coverage_gaps(simulated, real) == KNOWN_GAPS


def test_a_simulator_drifted_from_reality_fails_both_checks(simulated, real):
    drifted = simulated.copy()
    fire = drifted["fire_alarm"] == 1
    drifted.loc[fire, "tvoc_ppb"] *= 0.01  # fires that barely show VOCs
    drifted.loc[~fire, "nc0_5"] *= 50  # clean air full of fine particles
    # clean air whose VOCs never move from second to second (a stuck sensor)
    still = drifted.groupby("session_id")["tvoc_ppb"].transform("median")
    drifted.loc[~fire, "tvoc_ppb"] = still[~fire]
    failures = drift(distances(drifted, real), CALIBRATED_KS, DRIFT_MARGIN)
    assert any(f.startswith("fire tvoc_ppb") for f in failures), failures
    assert any(f.startswith("normal nc0_5") for f in failures), failures
    assert any(f.startswith("normal rise_tvoc_ppb") for f in failures), failures
    gaps = coverage_gaps(drifted, real)
    assert gaps != KNOWN_GAPS and ("fire", "tvoc_ppb") in gaps


def test_the_report_has_a_row_per_class_and_scenario(simulated, real):
    tables = report_tables(simulated, real)
    assert list(tables["ks"].index[:2]) == ["normal", "fire"]
    assert {f"scenario {s}" for s in SCENARIOS} <= set(tables["ks"].index)
    assert list(tables["ks"].columns) == list(CHANNELS)
    assert tables["ks"].to_numpy().min() >= 0 and tables["ks"].to_numpy().max() <= 1
    assert len(tables["gaps"]) == len(KNOWN_GAPS)
