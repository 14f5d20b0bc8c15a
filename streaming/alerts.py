"""Per-sensor state: rolling statistics with z-score anomaly flags, and the alert machine.

An alert opens after `consecutive` positive readings in a row, or at once on one
reading with probability >= `critical_probability`; it closes after `close_after`
negatives in a row. While open, further positives never open a second alert: one
fire is one alert. Alert ids derive from the sensor and the opening reading's time,
so replaying the same readings yields the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from smoke_platform.core.settings import AlertSettings, default

CHANNELS = ("tvoc_ppb", "eco2_ppm", "pm2_5", "nc0_5", "temperature_c", "humidity_pct")
_LOG_CHANNELS = {"tvoc_ppb", "eco2_ppm", "pm2_5", "nc0_5"}
_LOG = np.array([ch in _LOG_CHANNELS for ch in CHANNELS])
WARM_UP = 30
RAISING = frozenset({"open", "escalate"})  # the events that raise an alert (and explain it)
MIN_SD = 0.05  # floor (°C, %RH or log-units): a flat channel that jumps is still scored


def alert_record(
    *,
    alert_id: str | None,
    event: str,
    sensor_id: str,
    severity: str | None,
    ts: str,
    opened_ts: str | None,
    probability: float,
    max_probability: float,
    readings_in_alert: int,
    source: str,
    drivers: str = "",
    reasons: str = "",
) -> dict[str, Any]:
    """The one alert record: the worker's alert machine and the Spark window job both
    publish it to `smoke_alerts` and the alert files. On the events that raise an alert
    (open, escalate; `smoke_platform.core.explain`): `reasons`, the model's three largest
    feature contributions to the raising reading's score (worker alerts: a window alert
    is no single model output), and `drivers`, the three measurements furthest from the
    training set's clean air."""
    return {
        "alert_id": alert_id,
        "event": event,
        "sensor_id": sensor_id,
        "severity": severity,
        "ts": ts,
        "opened_ts": opened_ts,
        "probability": probability,
        "max_probability": max_probability,
        "readings_in_alert": readings_in_alert,
        "source": source,
        "drivers": drivers,
        "reasons": reasons,
    }


@dataclass(frozen=True)
class AlertConfig:
    """The alert machine's rules (defaults: the settings tree's `AlertSettings`)."""

    consecutive: int = default(AlertSettings, "alert_consecutive")
    critical_probability: float = default(AlertSettings, "alert_critical_probability")
    close_after: int = default(AlertSettings, "alert_close_after")
    zscore_threshold: float = default(AlertSettings, "zscore_threshold")
    window: int = default(AlertSettings, "rolling_window")

    @classmethod
    def from_settings(cls, s: AlertSettings | None = None) -> AlertConfig:
        """The rules as SMOKE_ALERT_* (and the z-score settings) say."""
        s = s or AlertSettings()
        return cls(
            s.alert_consecutive,
            s.alert_critical_probability,
            s.alert_close_after,
            s.zscore_threshold,
            s.rolling_window,
        )


@dataclass
class SensorState:
    """Everything the worker remembers about one sensor (JSON-serialisable)."""

    consecutive: int = 0
    negatives: int = 0
    alert_id: str | None = None
    severity: str | None = None
    opened_ts: str | None = None
    max_probability: float = 0.0
    readings_in_alert: int = 0
    stats: dict[str, list[float]] = field(default_factory=dict)  # channel -> [n, mean, var]
    # The last 30 s of (seconds, *levels) the model's rises are measured from
    # (`core.features.rises_in_batch`): stored with the rest (`encode_history`), so a
    # restart keeps them.
    history: np.ndarray | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensorState:
        from smoke_platform.core.features import decode_history

        history = decode_history(data.get("history"))
        return cls(**{**data, "history": history if len(history) else None})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (written with every batch: no deep copy of the history)."""
        from smoke_platform.core.features import encode_history

        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stats"] = {k: list(v) for k, v in self.stats.items()}
        out["history"] = encode_history(self.history)
        return out

    def step(
        self,
        sensor: str,
        ts: str,
        probability: float,
        is_fire: bool,
        cfg: AlertConfig,
    ) -> dict[str, Any] | None:
        """Advance the alert machine by one scored reading; return an alert event or None."""
        if self.alert_id is None:
            self.consecutive = self.consecutive + 1 if is_fire else 0
            critical = probability >= cfg.critical_probability
            if is_fire and (critical or self.consecutive >= cfg.consecutive):
                self.alert_id = f"{sensor}@{ts}"
                self.severity = "critical" if critical else "warning"
                self.opened_ts, self.max_probability = ts, probability
                self.negatives, self.readings_in_alert = 0, 1
                return self._event(sensor, ts, "open", probability)
            return None
        self.readings_in_alert += 1
        self.max_probability = max(self.max_probability, probability)
        if is_fire:
            self.negatives = 0
            if self.severity == "warning" and probability >= cfg.critical_probability:
                self.severity = "critical"
                return self._event(sensor, ts, "escalate", probability)
            return None
        self.negatives += 1
        if self.negatives >= cfg.close_after:
            event = self._event(sensor, ts, "close", probability)
            self.alert_id = self.severity = self.opened_ts = None
            self.consecutive = self.negatives = self.readings_in_alert = 0
            self.max_probability = 0.0
            return event
        return None

    def _event(self, sensor: str, ts: str, kind: str, probability: float) -> dict[str, Any]:
        return alert_record(
            alert_id=self.alert_id,
            event=kind,
            sensor_id=sensor,
            severity=self.severity,
            ts=ts,
            opened_ts=self.opened_ts,
            probability=probability,
            max_probability=self.max_probability,
            readings_in_alert=self.readings_in_alert,
            source="worker",
        )


def zscores(states: Sequence[SensorState], values: np.ndarray, cfg: AlertConfig) -> np.ndarray:
    """The z-scores of a batch of readings (rows x `CHANNELS`, raw values; `states[i]` is
    row i's sensor, rows in time order per sensor) against each sensor's exponentially
    weighted mean and variance, which advance one reading at a time exactly as a loop
    over the rows would. NaN where a sensor's channel is still warming up.

    Vectorised across sensors: one step per reading *rank* (a sensor's first reading in
    the batch, its second, ...), not one per reading."""
    alpha = 2.0 / (cfg.window + 1)
    x = np.array(values, dtype="float64", copy=True)
    x[:, _LOG] = np.log1p(np.maximum(x[:, _LOG], 0.0))
    slot_of: dict[int, int] = {}
    unique: list[SensorState] = []
    slots = np.empty(len(states), dtype="int64")
    ranks = np.empty(len(states), dtype="int64")
    counts: list[int] = []
    for i, state in enumerate(states):
        k = slot_of.get(id(state))
        if k is None:
            k = slot_of[id(state)] = len(unique)
            unique.append(state)
            counts.append(0)
        slots[i], ranks[i] = k, counts[k]
        counts[k] += 1
    _, first = np.unique(slots, return_index=True)  # each sensor's first row here
    n = np.zeros((len(unique), len(CHANNELS)))
    mean = x[first].copy()  # a channel seen for the first time starts at its value
    var = np.zeros((len(unique), len(CHANNELS)))
    for k, state in enumerate(unique):
        for c, ch in enumerate(CHANNELS):
            if ch in state.stats:
                n[k, c], mean[k, c], var[k, c] = state.stats[ch]
    z = np.full(x.shape, np.nan)
    order = np.argsort(ranks, kind="stable")
    bounds = np.searchsorted(ranks[order], np.arange(ranks.max(initial=-1) + 2))
    for r in range(len(bounds) - 1):
        rows = order[bounds[r] : bounds[r + 1]]
        ks, xr = slots[rows], x[rows]
        m, v = mean[ks], var[ks]
        z[rows] = np.where(n[ks] >= WARM_UP, (xr - m) / (np.sqrt(v) + MIN_SD), np.nan)
        delta = xr - m
        mean[ks] = m + alpha * delta
        var[ks] = (1 - alpha) * (v + alpha * delta * delta)
        n[ks] += 1
    for k, state in enumerate(unique):
        state.stats = {
            ch: [float(n[k, c]), float(mean[k, c]), float(var[k, c])]
            for c, ch in enumerate(CHANNELS)
        }
    return z
