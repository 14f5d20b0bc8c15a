"""The promoted model as the service, the stream worker and Spark use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from smoke_platform.core.features import build_features


@dataclass
class ScoringModel:
    """A fitted pipeline with its operating threshold and feature list."""

    pipeline: Any
    threshold: float
    features: list[str]
    version: str = "unsaved"
    metadata: dict[str, Any] = field(default_factory=dict)

    def single_threaded(self) -> None:
        """Score in the calling thread (serving: one small request at a time)."""
        params = self.pipeline.get_params()
        self.pipeline.set_params(**{k: 1 for k in params if k.endswith("n_jobs")})

    def proba_from_features(self, features: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(features[self.features])[:, 1]

    def predict_proba(self, readings: pd.DataFrame) -> np.ndarray:
        """Fire probability per reading (canonical frame) via the one feature function."""
        if len(readings) == 0:
            return np.zeros(0)
        return self.proba_from_features(build_features(readings))

    def score(self, readings: pd.DataFrame) -> pd.DataFrame:
        """Probability and alarm decision per reading, in the input order."""
        proba = self.predict_proba(readings)
        return pd.DataFrame(
            {"probability": proba, "is_fire": proba >= self.threshold}, index=readings.index
        )
