"""Why an alert fired, two ways: the model's own reasons, and the clean-air context.

`reasons` (`Attribution`): what each of the model's features added to this reading's
score, the model's own account: exact contributions for logistic regression (coefficient
x standardised value, the Shapley values of a linear model against the training mean) and
TreeSHAP (the `shap` package) for the tree ensembles. The top three by size, signed, with
the value the model saw, in the model's output unit, e.g.
`tvoc_ppb=1069 (+4.16 log-odds); pm_coarse_ratio=1.02 (+0.39 log-odds); ...`. Computed
only for the events that raise an alert (a millisecond or two each), never per reading.

`drivers` (context): at training time `normal_profile` summarises the training set's
normal readings per measurement (median and a robust scale: 1.4826 x MAD, on a log scale
for the concentrations), stored with the model (metadata `normal_profile`); `drivers` ranks
one reading's measurements (or a window's means: the Spark job's window alerts, which are
no single model output) by how far they are from that profile, e.g.
`tvoc_ppb=1145 (normal 8, z=+9.1); nc0_5=14.2 (normal 0, z=+6.8); pm1_0=1.9 (...)`.
Temperature, humidity and pressure are left out on purpose, and the raw H2 / ethanol
signals are profiled but never named: the model does not use them (`SITE_DEPENDENT`,
`SENSOR_BASELINE`), so they never drive an alert.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smoke_platform.core.features import (
    LOG_SCALED,
    SENSOR_BASELINE,
    SITE_DEPENDENT,
    build_features,
)
from smoke_platform.core.schema import MEASUREMENTS
from smoke_platform.core.scoring import ScoringModel

log = logging.getLogger(__name__)

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
        if ch in SENSOR_BASELINE:  # profiled (calibration), but no model input
            continue
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
    """The names in a `drivers` or `reasons` line, in rank order."""
    return [part.split("=", 1)[0].strip() for part in text.split(";") if "=" in part]


class Attribution:
    """Per reading, each model feature's contribution to the model's output: exact for a
    linear model (on its standardised inputs), TreeSHAP for tree ensembles. `unit` is the
    output the contributions add up to (with the model's base value): `log-odds` or
    `probability`. A model of another kind (the class-prior baseline) explains nothing:
    `supported` is False and `reasons` gives ""."""

    def __init__(self, model: ScoringModel) -> None:
        from sklearn.pipeline import Pipeline

        pipe = model.pipeline
        steps = list(pipe.steps) if isinstance(pipe, Pipeline) else [("model", pipe)]
        self.features = list(model.features)
        self._prepare = Pipeline(steps[:-1]) if len(steps) > 1 else None
        clf = steps[-1][1]
        self.unit, self._linear, self._tree = "", None, None
        coef = getattr(clf, "coef_", None)
        if coef is not None and np.shape(coef)[0] == 1:  # a binary linear model
            self._linear, self.unit = np.asarray(coef[0], dtype="float64"), "log-odds"
        elif _is_tree_ensemble(clf):
            import shap

            self._tree = shap.TreeExplainer(clf)
            output = getattr(self._tree.model, "tree_output", "raw_value")
            self.unit = "probability" if output == "probability" else "log-odds"

    @property
    def supported(self) -> bool:
        return self._linear is not None or self._tree is not None

    def contributions(self, features: pd.DataFrame) -> np.ndarray:
        """Rows x `self.features`: each feature's signed contribution, per row."""
        x = features[self.features]
        if self._prepare is not None:
            x = self._prepare.transform(x)
        if self._linear is not None:
            return np.asarray(x, dtype="float64") * self._linear
        if self._tree is None:
            raise ValueError("this model kind has no attribution (see `supported`)")
        # No additivity check: float32 split thresholds against float64 inputs trip it
        # (a known shap false alarm) and would cost a batch its reasons; tested instead.
        values = np.asarray(self._tree.shap_values(x, check_additivity=False))
        return values[..., 1] if values.ndim == 3 else values  # the fire class's

    def reasons(self, records: list[Mapping[str, Any]], top: int = TOP) -> list[str]:
        """Per reading (scored records: measurements and rises), its `top` features by
        the size of their contribution, as one line; "" each for an unsupported model.
        One call for all of a batch's raised alerts: one feature frame, one attribution."""
        if not self.supported or not records:
            return [""] * len(records)
        frame = build_features(pd.DataFrame(list(records)))
        contrib = self.contributions(frame)
        values = frame[self.features].to_numpy(dtype="float64")
        lines = []
        for c, v in zip(contrib, values, strict=True):
            order = sorted(range(len(c)), key=lambda j: (-abs(c[j]), self.features[j]))
            lines.append(
                "; ".join(
                    f"{self.features[j]}={_shown(v[j])} ({c[j]:+.2f} {self.unit})"
                    for j in order[:top]
                )
            )
        return lines


def _is_tree_ensemble(clf: Any) -> bool:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.tree import DecisionTreeClassifier

    kinds = (
        DecisionTreeClassifier,
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    return isinstance(clf, kinds)


@dataclass(frozen=True)
class Explainer:
    """What one model version's alerts are explained with: its own attribution (None if
    it could not be built) and its clean-air profile (None for a model saved without)."""

    attribution: Attribution | None = None
    profile: Mapping[str, list[float]] | None = None
    version: str = ""  # the concrete `name:version` (a cache also keys it by this)

    def explain(self, records: list[Mapping[str, Any]]) -> list[dict[str, str]]:
        """`reasons` and `drivers` of each raising reading; an explanation that fails
        is empty, never a lost alert."""
        try:
            reasons = self.attribution.reasons(records) if self.attribution else []
        except Exception as exc:
            log.warning("no reasons for %d alerts (%s: %s)", len(records), type(exc).__name__, exc)
            reasons = []
        reasons = reasons or [""] * len(records)
        return [
            {"reasons": why, "drivers": drivers(rec, self.profile)}
            for why, rec in zip(reasons, records, strict=True)
        ]


NO_EXPLAINER = Explainer()


def explainer_for(model: ScoringModel) -> Explainer:
    """A model's explainer: its attribution and the profile stored in its metadata."""
    try:
        attribution: Attribution | None = Attribution(model)
    except Exception as exc:  # e.g. a tree kind shap cannot read: drivers still explain
        log.warning("%s: no attribution (%s: %s)", model.version, type(exc).__name__, exc)
        attribution = None
    return Explainer(attribution, model.metadata.get("normal_profile"), model.version)


class VersionCache:
    """Something per model version (`name:version`: its explainer), loaded once each. A
    version that cannot be loaded gives None rather than failing an alert, and is tried
    again after `retry_s` (a store that was briefly unreachable). `warm` loads a version
    in the background (the worker, when a new version first scores), so the first alert
    does not wait for the load; a call during that load waits for it."""

    def __init__(
        self,
        load: Callable[[str], Any],
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load, self._retry_s, self._clock = load, retry_s, clock
        self._cache: dict[str, Any] = {}
        self._failed: dict[str, float] = {}  # version -> when its load last failed
        self._lock = threading.Lock()

    def __call__(self, model_version: str | None) -> Any:
        if not model_version:
            return None
        if model_version in self._cache:
            return self._cache[model_version]
        with self._lock:
            if model_version in self._cache:  # loaded while we waited
                return self._cache[model_version]
            failed = self._failed.get(model_version)
            if failed is not None and self._clock() - failed < self._retry_s:
                return None
            try:
                loaded = self._load(model_version)
            except Exception:  # an explanation never costs an alert
                self._failed[model_version] = self._clock()
                return None
            self._failed.pop(model_version, None)
            self._cache[model_version] = loaded
            concrete = getattr(loaded, "version", "")
            if concrete:  # warmed by a tag (`name:latest`): scores name the version
                self._cache.setdefault(concrete, loaded)
            return loaded

    def warm(self, model_version: str | None) -> None:
        """Load `model_version` in a background thread unless it is loaded."""
        if model_version and model_version not in self._cache:
            name = f"load-{model_version}"
            threading.Thread(target=self, args=(model_version,), name=name, daemon=True).start()
