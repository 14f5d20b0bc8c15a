"""Why an alert fired: the measurements furthest from clean air, in robust z-scores.

At training time `normal_profile` summarises the training set's normal readings per
measurement (median and a robust scale: 1.4826 x MAD, on a log scale for the
concentrations); the profile is stored with the model (metadata `normal_profile`).
`drivers` ranks one reading's measurements (or a window's means) by how far they are from
that profile and keeps the top three: the worker's alerts, the Spark job's window alerts,
the alert log and the dashboard all carry the same text, e.g.
`tvoc_ppb=1145 (normal 8, z=+9.1); nc0_5=14.2 (normal 0, z=+6.8); pm1_0=1.9 (...)`.

Temperature, humidity and pressure are left out on purpose: the model does not use them
(`SITE_DEPENDENT`), so they never drive an alert.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from smoke_platform.core.features import LOG_SCALED, SITE_DEPENDENT
from smoke_platform.core.schema import MEASUREMENTS

EXPLAINED: tuple[str, ...] = tuple(m for m in MEASUREMENTS if m not in SITE_DEPENDENT)
LOG_SCALE = LOG_SCALED & frozenset(EXPLAINED)  # compared on log1p, like the model's features
MIN_SCALE_LOG = 0.1  # log units: a channel flat at 0 in clean air still gets a finite z
MIN_SCALE_REL = 0.002  # of the median, for the linear channels (raw H2 / ethanol counts)
TOP = 3


def _transform(channel: str, x: Any) -> Any:
    return np.log1p(np.clip(x, 0, None)) if channel in LOG_SCALE else x


def normal_profile(readings: pd.DataFrame) -> dict[str, list[float]]:
    """`{measurement: [median, scale]}` of normal readings (on the compared scale)."""
    if len(readings) == 0:
        raise ValueError("a normal profile needs at least one normal reading")
    profile: dict[str, list[float]] = {}
    for ch in EXPLAINED:
        x = _transform(ch, readings[ch].to_numpy(dtype="float64"))
        median = float(np.median(x))
        scale = 1.4826 * float(np.median(np.abs(x - median)))
        floor = MIN_SCALE_LOG if ch in LOG_SCALE else max(abs(median) * MIN_SCALE_REL, 1e-6)
        profile[ch] = [median, max(scale, floor)]
    return profile


def _shown(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def drivers(
    values: Mapping[str, Any], profile: Mapping[str, list[float]] | None, top: int = TOP
) -> str:
    """The `top` measurements of one reading (or a window's means) furthest from the
    normal profile, as one line; "" without a profile (a model saved before profiles)."""
    if not profile:
        return ""
    scored = []
    for ch, (median, scale) in profile.items():
        value = values.get(ch)
        if value is None or not math.isfinite(float(value)):
            continue
        z = (float(_transform(ch, float(value))) - median) / scale
        normal = float(np.expm1(median)) if ch in LOG_SCALE else median
        scored.append((abs(z), ch, float(value), normal, z))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return "; ".join(
        f"{ch}={_shown(v)} (normal {_shown(n)}, z={z:+.1f})" for _, ch, v, n, z in scored[:top]
    )


def driver_names(text: str) -> list[str]:
    """The measurement names in a `drivers` line, in rank order."""
    return [part.split("=", 1)[0].strip() for part in text.split(";") if "=" in part]


class ProfileCache:
    """Normal profiles by model version (`name:version`), loaded once each. A version
    whose profile cannot be loaded explains nothing rather than failing an alert, and is
    tried again after `retry_s` (a store that was briefly unreachable)."""

    def __init__(
        self,
        load: Callable[[str], Mapping[str, list[float]] | None],
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load, self._retry_s, self._clock = load, retry_s, clock
        self._cache: dict[str, Mapping[str, list[float]] | None] = {}
        self._failed: dict[str, float] = {}  # version -> when its load last failed

    def __call__(self, model_version: str | None) -> Mapping[str, list[float]] | None:
        if not model_version:
            return None
        if model_version in self._cache:
            return self._cache[model_version]
        failed = self._failed.get(model_version)
        if failed is not None and self._clock() - failed < self._retry_s:
            return None
        try:
            self._cache[model_version] = self._load(model_version)
        except Exception:  # an explanation never costs an alert
            self._failed[model_version] = self._clock()
            return None
        self._failed.pop(model_version, None)
        return self._cache[model_version]
