"""Trouble signals: a detector that is silent, stuck or sending garbage, a feed that went
quiet, and the platform's own faults. Fire panels keep these apart from alarms: an alarm
says there may be a fire; a trouble signal says a detector cannot say so any more.

One set of rules, pure (no Kafka, no clock of its own): the stream worker feeds each
partition's readings and dead letters to a `PartitionWatch` and asks it to `judge` on every
poll, giving the wall time and whether the partition is caught up.

- `silent`: no reading from a known sensor for max(`silent_after_s`, 10 x its own median
  interval), measured on the partition's clock (the newest event time consumed, running on
  with the wall clock only while the partition is caught up). While a partition is behind
  nothing is silent; after a restart or a rebalance silence is judged only once the
  partition has been caught up for one full `silent_after_s`: no storm of `silent` events.
- `stuck`: a continuously varying channel repeats one exact value for the quality check's
  run (`core.quality.is_stuck`, the batch check's own rule).
- `implausible`: more than `implausible_dead_letters` of a known sensor's messages dead-
  lettered within `implausible_window_s`.
- `feed_silent`: when at least `feed_silent_fraction` of a partition's sensors (and
  `feed_silent_min_sensors`) are silent at once, one signal with their count instead of one
  per sensor.
- `restored` closes each of them.

State per sensor is a few numbers (bounded: a sensor silent for `forget_after_s` is
forgotten) and is stored with the partition's alert state, so it survives restarts.

Over 400 lines: the rules judge on one clock per partition (its progress, not the
worker's) and one pass per batch; split, the rules that must agree on that clock would
live apart.
"""

from __future__ import annotations

import itertools
import operator
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from smoke_platform.core.quality import STUCK_CHANNELS, STUCK_RUN_SECONDS, is_stuck, run_lengths
from smoke_platform.core.settings import TroubleSettings, default

_SENSOR = operator.itemgetter("sensor_id")
_STUCK_VALUES = operator.itemgetter(*STUCK_CHANNELS)  # a reading's stuck-prone channels
GAPS_KEPT = 9  # recent intervals per sensor: its median interval
SILENT_INTERVALS = 10.0  # silent after this many of a sensor's own median intervals


@dataclass(frozen=True)
class TroubleConfig:
    """The rules' bounds (defaults: the settings tree's `TroubleSettings`)."""

    silent_after_s: float = default(TroubleSettings, "silent_after_s")
    feed_silent_fraction: float = default(TroubleSettings, "feed_silent_fraction")
    feed_silent_min_sensors: int = default(TroubleSettings, "feed_silent_min_sensors")
    implausible_dead_letters: int = default(TroubleSettings, "implausible_dead_letters")
    implausible_window_s: float = default(TroubleSettings, "implausible_window_s")
    forget_after_s: float = 7 * 86_400.0  # a sensor silent this long is forgotten

    @classmethod
    def from_settings(cls, s: TroubleSettings | None = None) -> TroubleConfig:
        s = s or TroubleSettings()
        return cls(
            s.silent_after_s,
            s.feed_silent_fraction,
            s.feed_silent_min_sensors,
            s.implausible_dead_letters,
            s.implausible_window_s,
        )


class PlatformWatch:
    """The platform's own faults as trouble signals (`platform`): each condition opens once
    when it starts and is `restored` when it ends. `open` outlives the process (the worker
    stores it beside the partitions' state): a restarted instance whose condition still
    holds does not open it again, and restores the one it had open."""

    def __init__(self, subject: str, open_: dict[str, float] | None = None) -> None:
        self.subject = subject  # e.g. the worker instance
        self.open: dict[str, float] = dict(open_ or {})  # condition -> since

    def update(self, condition: str, bad: bool, at: float, detail: str) -> list[dict[str, Any]]:
        since = self.open.get(condition)
        if bad and since is None:
            self.open[condition] = at
            return [self._record("open", condition, at, at, detail)]
        if not bad and since is not None:
            del self.open[condition]
            return [self._record("restored", condition, at, since, detail)]
        return []

    def _record(self, event: str, condition: str, at: float, since: float, detail: str) -> dict:
        return trouble_record(
            kind="platform",
            event=event,
            subject=f"{condition}:{self.subject}",
            partition=None,
            at=at,
            since=since,
            detail=detail,
        )


def trouble_record(
    *,
    kind: str,
    event: str,
    subject: str,
    partition: int | None,
    at: float,
    since: float,
    detail: str,
    sensors: int = 1,
) -> dict[str, Any]:
    """The one trouble record (topic `smoke_trouble`, the trouble files, the notifier).
    `trouble_id` is the same for the signal's open and its `restored`."""
    return {
        "trouble_id": f"{kind}:{subject}@{_iso(since)}",
        "event": event,  # open | restored
        "kind": kind,
        "subject": subject,  # a sensor id, "partition <n>", or the platform component
        "partition": partition,
        "ts": _iso(at),
        "since": _iso(since),
        "detail": detail,
        "sensors": sensors,
    }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


class SensorWatch:
    """What the supervision remembers of one sensor (compact: 100,000s of them)."""

    __slots__ = (
        "dead",
        "gaps",
        "implausible_since",
        "last_ts",
        "seen",
        "silent_since",
        "stuck_counts",
        "stuck_since",
        "stuck_values",
    )

    def __init__(self) -> None:
        self.seen = 0.0  # the partition's clock when its last reading was consumed
        self.last_ts = 0.0  # its last reading's own event time
        self.gaps: list[float] = []
        self.silent_since: float | None = None  # (-1.0: silent as part of a silent feed)
        self.stuck_values: list[float] = [float("nan")] * len(STUCK_CHANNELS)
        self.stuck_counts: list[int] = [0] * len(STUCK_CHANNELS)
        self.stuck_since: float | None = None
        self.dead: list[float] = [0.0, 0.0]  # [window start (clock), dead letters in it]
        self.implausible_since: float | None = None

    def bound(self, cfg: TroubleConfig) -> float:
        median = statistics.median(self.gaps) if self.gaps else 0.0
        return max(cfg.silent_after_s, SILENT_INTERVALS * median)

    def to_list(self) -> list[Any]:
        """A snapshot: its lists copied (later readings change them in place, and a
        snapshot waits for the table commit before it is stored)."""
        values = (getattr(self, name) for name in self.__slots__)
        return [list(v) if isinstance(v, list) else v for v in values]

    @classmethod
    def from_list(cls, values: list[Any]) -> SensorWatch:
        out = cls()
        for name, value in zip(cls.__slots__, values, strict=True):
            setattr(out, name, value)
        out.stuck_values = [float("nan") if v is None else v for v in out.stuck_values]
        return out


@dataclass
class PartitionWatch:
    """One partition's sensors and clock. `clock`: the newest event time consumed;
    `caught_up_since`: wall time since when the partition has been caught up (None while
    behind, and after every load: a restart waits one full period before judging)."""

    partition: int
    clock: float = 0.0
    clock_wall: float = 0.0
    caught_up_since: float | None = None
    feed_silent_since: float | None = None
    sensors: dict[str, SensorWatch] = field(default_factory=dict)

    def now(self, wall: float) -> float:
        """The partition's time: its newest event time, running on with the wall clock while
        it is caught up (a producer that stopped does not stop it)."""
        if self.caught_up_since is None:
            return self.clock
        return self.clock + max(0.0, wall - max(self.clock_wall, self.caught_up_since))

    # -- what the worker consumed -------------------------------------------------------
    def observe(
        self,
        records: list[dict[str, Any]],
        epochs: list[float],
        wall: float,
        cfg: TroubleConfig,
        stuck_values: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Valid readings of this partition (in offset order, `epochs` their event times;
        `stuck_values`: their rows x `STUCK_CHANNELS`, when the caller has read them out
        already): move the clock and each sensor on; return the `restored` events they
        cause."""
        events: list[dict[str, Any]] = []
        if not records:
            return events
        newest = max(epochs)
        if newest > self.clock:
            self.clock, self.clock_wall = newest, wall
        at = self.now(wall)
        if self.feed_silent_since is not None:
            events.append(self._feed_event("restored", at, self.feed_silent_since, 0))
            self.feed_silent_since = None
            for watch in self.sensors.values():
                if watch.silent_since == -1.0:
                    watch.silent_since = None  # judged again, one by one
        # Column-wise over the batch, then one step per sensor (not per reading).
        index: dict[str, int] = {}
        codes = np.fromiter(
            (index.setdefault(s, len(index)) for s in map(_SENSOR, records)), "int64", len(records)
        )
        order = np.argsort(codes, kind="stable")  # each sensor's rows together, in time order
        grouped = codes[order]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        ends = np.r_[starts[1:], len(order)] - 1
        t = np.asarray(epochs, dtype="float64")[order]
        width = len(STUCK_CHANNELS)
        values = (
            np.fromiter(
                itertools.chain.from_iterable(map(_STUCK_VALUES, records)),
                "float64",
                len(records) * width,
            ).reshape(-1, width)
            if stuck_values is None
            else stuck_values
        )
        watches = [self.sensors.get(sensor) for sensor in index]
        lengths = run_lengths(
            values[order],
            starts,
            grouped,
            np.array([w.stuck_values if w else [np.nan] * len(STUCK_CHANNELS) for w in watches]),
            np.array([w.stuck_counts if w else [0] * len(STUCK_CHANNELS) for w in watches]),
        )
        gaps = np.diff(t, prepend=np.nan)
        gaps[starts] = [w.last_ts if w is not None else np.nan for w in watches]
        gaps[starts] = t[starts] - gaps[starts]  # NaN for a new sensor: no interval yet
        # Each sensor's new intervals (time moving on), as slices of one list.
        moved = gaps > 0
        fresh_at = np.r_[0, np.cumsum(moved)][np.r_[starts, len(order)]].tolist()
        fresh_gaps = gaps[moved].tolist()
        stuck = is_stuck(lengths[ends])  # stuck at the batch's end
        # A stuck run that ended inside the batch (a replayed backlog) still counts.
        was_stuck = is_stuck(np.maximum.reduceat(lengths, starts, axis=0))
        was_any = was_stuck.any(axis=1).tolist()
        # Per sensor below, only Python values: one conversion per batch, not per sensor.
        last_values = values[order][ends].tolist()
        end_counts, last_ts = lengths[ends].tolist(), t[ends].tolist()
        for k, (sensor, known) in enumerate(zip(index, watches, strict=True)):
            watch = known if known is not None else SensorWatch()
            if known is None:
                self.sensors[sensor] = watch
            first, stop = fresh_at[k], fresh_at[k + 1]
            if stop > first:
                watch.gaps = (watch.gaps + fresh_gaps[first:stop])[-GAPS_KEPT:]
            watch.last_ts, watch.seen = max(watch.last_ts, last_ts[k]), at
            if watch.silent_since is not None:
                if watch.silent_since >= 0:
                    since = watch.silent_since
                    events.append(
                        self._event("silent", "restored", sensor, at, since, "reporting again")
                    )
                watch.silent_since = None
            watch.stuck_values, watch.stuck_counts = last_values[k], end_counts[k]
            if was_any[k] or watch.stuck_since is not None:
                events.extend(self._stuck(sensor, watch, was_stuck[k], stuck[k], at))
            if watch.implausible_since is not None:
                events.extend(self._plausible_again(sensor, watch, at, cfg))
        return events

    def _plausible_again(
        self, sensor: str, watch: SensorWatch, at: float, cfg: TroubleConfig
    ) -> list[dict[str, Any]]:
        if watch.implausible_since is None or at - watch.dead[0] <= cfg.implausible_window_s:
            return []
        since = watch.implausible_since
        watch.implausible_since, watch.dead = None, [at, 0.0]
        return [self._event("implausible", "restored", sensor, at, since, "valid again")]

    def _stuck(
        self, sensor: str, watch: SensorWatch, was: np.ndarray, now: np.ndarray, at: float
    ) -> list[dict[str, Any]]:
        """`stuck`: per channel, whether a run of one value in this batch (`was`) and the
        run at its end (`now`) are stuck runs: a run that ended within the batch opens
        and restores at once."""
        events = []
        if was.any() and watch.stuck_since is None:
            watch.stuck_since = at
            channels = ", ".join(c for c, s in zip(STUCK_CHANNELS, was, strict=True) if s)
            detail = f"{channels} repeated one value for {STUCK_RUN_SECONDS}+ readings"
            events.append(self._event("stuck", "open", sensor, at, at, detail))
        if not now.any() and watch.stuck_since is not None:
            since, watch.stuck_since = watch.stuck_since, None
            events.append(self._event("stuck", "restored", sensor, at, since, "varying again"))
        return events

    def dead_letter(self, sensor: str | None, wall: float, cfg: TroubleConfig) -> list[dict]:
        """A dead letter keyed by `sensor`: counted for known sensors only (unknown keys
        cannot grow the state)."""
        watch = self.sensors.get(sensor) if sensor else None
        if watch is None:
            return []
        at = self.now(wall)
        if at - watch.dead[0] > cfg.implausible_window_s:
            watch.dead = [at, 0.0]
        watch.dead[1] += 1
        if watch.dead[1] > cfg.implausible_dead_letters and watch.implausible_since is None:
            watch.implausible_since = at
            detail = (
                f"{int(watch.dead[1])} messages dead-lettered within {cfg.implausible_window_s:g} s"
            )
            return [self._event("implausible", "open", sensor, at, at, detail)]  # type: ignore[arg-type]
        return []

    # -- the poll's judgement ------------------------------------------------------------
    def judge(self, wall: float, caught_up: bool, cfg: TroubleConfig) -> list[dict[str, Any]]:
        """Silence, on every poll. Only a partition caught up for a full period is judged."""
        if not caught_up:
            self.caught_up_since = None
            return []
        if self.caught_up_since is None:
            self.caught_up_since = wall
        if wall - self.caught_up_since < cfg.silent_after_s or not self.sensors:
            return []
        at = self.now(wall)
        newly = [
            (s, w)
            for s, w in self.sensors.items()
            # The bound is at least silent_after_s: the median only where it can matter.
            if w.silent_since is None
            and at - w.seen > cfg.silent_after_s
            and at - w.seen > w.bound(cfg)
        ]
        self._forget(at, cfg)
        if not newly:
            return []
        silent = sum(1 for w in self.sensors.values() if w.silent_since is not None) + len(newly)
        if self.feed_silent_since is None and silent >= max(
            cfg.feed_silent_min_sensors, cfg.feed_silent_fraction * len(self.sensors)
        ):
            self.feed_silent_since = min(w.seen for _, w in newly)
            for _, w in newly:
                w.silent_since = -1.0
            return [self._feed_event("open", at, self.feed_silent_since, silent)]
        events = []
        for sensor, w in newly:
            w.silent_since = w.seen
            detail = f"no reading for {at - w.seen:.0f} s (bound {w.bound(cfg):.0f} s)"
            events.append(self._event("silent", "open", sensor, at, w.seen, detail))
        return events

    def _forget(self, at: float, cfg: TroubleConfig) -> None:
        gone = [s for s, w in self.sensors.items() if at - w.seen > cfg.forget_after_s]
        for sensor in gone:
            del self.sensors[sensor]

    def counts(self) -> dict[str, int]:
        """Sensors known, silent and stuck (the worker's gauges)."""
        ws = self.sensors.values()
        return {
            "known": len(self.sensors),
            "silent": sum(1 for w in ws if w.silent_since is not None),
            "stuck": sum(1 for w in ws if w.stuck_since is not None),
        }

    # -- events and storage --------------------------------------------------------------
    def _event(
        self, kind: str, event: str, subject: str, at: float, since: float, detail: str
    ) -> dict[str, Any]:
        return trouble_record(
            kind=kind,
            event=event,
            subject=subject,
            partition=self.partition,
            at=at,
            since=since,
            detail=detail,
        )

    def _feed_event(self, event: str, at: float, since: float, count: int) -> dict[str, Any]:
        detail = (
            f"{count} of {len(self.sensors)} sensors silent at once (a gateway or producer down?)"
            if event == "open"
            else "readings arrive again"
        )
        record = self._event("feed_silent", event, f"partition {self.partition}", at, since, detail)
        record["sensors"] = count
        return record

    def to_dict(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "feed_silent_since": self.feed_silent_since,
            "sensors": {s: w.to_list() for s, w in self.sensors.items()},
        }

    @classmethod
    def from_dict(cls, partition: int, data: dict[str, Any] | None, wall: float) -> PartitionWatch:
        """A stored watch; its wall-clock parts start again (one full period before judging)."""
        data = data or {}
        return cls(
            partition,
            clock=float(data.get("clock", 0.0)),
            clock_wall=wall,
            feed_silent_since=data.get("feed_silent_since"),
            sensors={s: SensorWatch.from_list(v) for s, v in data.get("sensors", {}).items()},
        )
