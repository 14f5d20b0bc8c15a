"""Alert drivers: the measurements furthest from the training set's clean air."""

import numpy as np
import pytest

from smoke_platform.core.explain import (
    EXPLAINED,
    VersionCache,
    driver_names,
    drivers,
    normal_profile,
)
from smoke_platform.core.features import SENSOR_BASELINE, SITE_DEPENDENT
from smoke_platform.reference import load_reference


@pytest.fixture(scope="module")
def profile(generated):
    return normal_profile(generated[generated["fire_alarm"] == 0])


def test_the_profile_is_median_and_robust_scale_of_normal_readings(generated):
    normal = generated[generated["fire_alarm"] == 0]
    prof = normal_profile(normal)
    assert set(prof) == set(EXPLAINED) and not set(prof) & SITE_DEPENDENT
    h2 = normal["raw_h2"].to_numpy()
    mad = np.median(np.abs(h2 - np.median(h2)))
    assert prof["raw_h2"] == pytest.approx([np.median(h2), 1.4826 * mad])
    tvoc = np.log1p(normal["tvoc_ppb"].to_numpy())  # concentrations on a log scale
    assert prof["tvoc_ppb"][0] == pytest.approx(np.median(tvoc))
    assert all(scale > 0 for _, scale in prof.values())  # flat channels get a floor
    with pytest.raises(ValueError, match="at least one normal reading"):
        normal_profile(normal.iloc[:0])


def test_real_fires_are_explained_by_tvoc_and_never_by_temperature(profile):
    """On the real reference file's fire excerpts with TVOC over 1,000 ppb, TVOC is among
    the three drivers; temperature, humidity and pressure (not model features) never appear,
    and shifting them by 25 C / 10 points changes no explanation."""
    ref = load_reference()
    fires = ref[(ref["fire_alarm"] == 1) & (ref["tvoc_ppb"] > 1_000)]
    assert len(fires) > 300
    for _, row in fires.iloc[::25].iterrows():
        text = drivers(row.to_dict(), profile)
        names = driver_names(text)
        assert "tvoc_ppb" in names and len(names) == 3, text
        assert not set(names) & (SITE_DEPENDENT | SENSOR_BASELINE)  # no model input
        shifted = {
            **row.to_dict(),
            "temperature_c": row["temperature_c"] - 25,
            "humidity_pct": min(100.0, row["humidity_pct"] + 10),
        }
        assert drivers(shifted, profile) == text
    assert "z=+" in text and f"tvoc_ppb={row['tvoc_ppb']:.0f}" in text


def test_a_reading_like_clean_air_has_small_z_scores(generated, profile):
    normal = generated[generated["fire_alarm"] == 0]
    typical = normal[list(EXPLAINED)].median().to_dict()
    text = drivers(typical, profile)
    zs = [float(part.rsplit("z=", 1)[1].rstrip(")")) for part in text.split("; ")]
    assert max(abs(z) for z in zs) < 0.5, text


def test_no_profile_explains_nothing_and_a_failing_loader_costs_no_alert():
    assert drivers({"tvoc_ppb": 5_000.0}, None) == ""
    calls, now, reachable = [], [0.0], [False]
    profile = {"tvoc_ppb": [2.0, 0.5]}

    def load(version):
        calls.append(version)
        if not reachable[0]:
            raise OSError("model store unreachable")
        return profile

    cache = VersionCache(load, retry_s=60, clock=lambda: now[0])
    assert cache("smoke_detector:abc") is None and cache("smoke_detector:abc") is None
    assert calls == ["smoke_detector:abc"]  # not asked again at every alert
    assert cache(None) is None and calls == ["smoke_detector:abc"]
    reachable[0], now[0] = True, 30.0
    assert cache("smoke_detector:abc") is None  # still within the retry interval
    now[0] = 61.0
    assert cache("smoke_detector:abc") == profile  # the store is back: explained again
    reachable[0], now[0] = False, 500.0
    assert cache("smoke_detector:abc") == profile and len(calls) == 2  # loaded once


def test_warming_loads_once_in_the_background_and_a_caller_waits_for_it():
    import threading

    started, release, calls = threading.Event(), threading.Event(), []

    def load(version):
        calls.append(version)
        started.set()
        release.wait(10)
        return {"version": version}

    cache = VersionCache(load)
    cache.warm("m:1")
    assert started.wait(10)
    got = []
    caller = threading.Thread(target=lambda: got.append(cache("m:1")))
    caller.start()
    caller.join(0.3)
    assert caller.is_alive()  # the load under way is waited for, not started again
    release.set()
    caller.join(10)
    assert got == [{"version": "m:1"}] and calls == ["m:1"]
    cache.warm("m:1")  # loaded: nothing to do
    assert calls == ["m:1"]


def test_a_version_warmed_by_its_tag_is_found_by_its_concrete_version():
    """The worker warms `name:latest`; scores name `name:<version>`: one load serves both."""
    from types import SimpleNamespace

    calls = []

    def load(tag):
        calls.append(tag)
        return SimpleNamespace(version="m:abc123")

    cache = VersionCache(load)
    loaded = cache("m:latest")
    assert cache("m:abc123") is loaded and calls == ["m:latest"]
