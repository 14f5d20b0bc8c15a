"""Stream readings into `smoke_sensor_data`: live simulated sensors or a Kaggle CSV replay.

Idempotent producer (acks=all), key = sensor_id, event time in the value and in the
Kafka timestamp. Each reading is validated before it is sent; delivery failures are
counted and reported; progress every few seconds and a final count.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd

from smoke_platform.core.io import read_kaggle_csv, to_canonical, to_records
from smoke_platform.core.schema import ReadingValidationError, parse_reading
from smoke_platform.core.simulate import live_readings
from smoke_platform.procs import StopFlag
from streaming.config import StreamSettings

log = logging.getLogger("smoke.producer")


def _plain(value: Any) -> Any:
    """A numpy scalar (a caller's frame) as the Python value JSON can hold."""
    if hasattr(value, "item"):
        return value.item()
    raise NotImplementedError(f"cannot send a {type(value).__name__} in a reading")


_ENCODER = msgspec.json.Encoder(enc_hook=_plain)


@dataclass
class ProduceStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)

    def line(self, elapsed: float) -> str:
        rate = self.sent / elapsed if elapsed > 0 else 0.0
        return (
            f"sent {self.sent:,}  delivered {self.delivered:,}  failed {self.failed:,}  "
            f"invalid {self.invalid:,}  ({rate:,.0f} readings/s)"
        )


def live_source(
    seed: int = 0,
    sensors: int = 8,
    scenarios: Sequence[str] | None = None,
    retime: bool = True,
    start_epoch: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Endless simulated readings; with `retime`, event times start now (a live fleet), or
    at `start_epoch`. Kafka 4 rejects records stamped more than an hour ahead of the broker's
    clock (`log.message.timestamp.after.max.ms`): a long burst sent at full speed should
    start in the past."""
    start = start_epoch if start_epoch is not None else int(time.time()) if retime else None
    kwargs: dict[str, Any] = {"seed": seed, "n_sensors": sensors, "scenarios": scenarios}
    if start is not None:
        kwargs["start_epoch"] = start
    yield from live_readings(**kwargs)


def with_prefix(records: Iterable[dict[str, Any]], prefix: str) -> Iterator[dict[str, Any]]:
    """`records` whose sensor ids carry `prefix` instead of their source's (`sensor-` for
    the simulator, `csv-` for a file), and whose session ids start with it: readings sent
    by hand never share a running fleet's sensors or sessions (whose state they would
    corrupt)."""
    for rec in records:
        rec["sensor_id"] = prefix + str(rec["sensor_id"]).split("-", 1)[-1]
        if rec.get("session_id"):
            rec["session_id"] = f"{prefix}{rec['session_id']}"
        yield rec


def csv_source(path: str | Path, sensors: int = 1) -> Iterator[dict[str, Any]]:
    """A Kaggle-format CSV in time order; sessions are spread over `sensors` device ids.
    The file is read at once, so a missing or malformed file fails before anything is sent."""
    from smoke_platform.errors import UserError

    try:
        frame = to_canonical(read_kaggle_csv(path))
    except (ValueError, KeyError, TypeError, OverflowError) as exc:  # FileNotFoundError
        # passes: it names the path
        raise UserError(f"{path} is not a Kaggle-format CSV: {exc}") from exc
    session_no = frame["session_id"].str[1:].astype(int)
    frame["sensor_id"] = "csv-" + (session_no % sensors).astype(str).str.zfill(3)
    return iter(to_records(frame.sort_values("ts", kind="stable")))


def paced(
    records: Iterable[dict[str, Any]],
    speed: float | None,
    stamp_now: bool = False,
    stop: StopFlag | None = None,
) -> Iterator[dict[str, Any]]:
    """Release records at their event-time spacing divided by `speed` (None = no pacing);
    ends early once `stop` is set, even in the middle of a long wait (a replay's gap).

    With `stamp_now`, each reading's event time becomes the moment it is sent, as a
    device's clock would (for end-to-end latency measurements of replays)."""
    stop = stop or StopFlag()
    t0_event = t0_wall = None
    for rec in records:
        if speed is not None:
            event = datetime.fromisoformat(str(rec["ts"])).timestamp()
            if t0_event is None:
                t0_event, t0_wall = event, time.monotonic()
            assert t0_wall is not None
            delay = t0_wall + (event - t0_event) / speed - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
        if stop.is_set():
            return
        if stamp_now:
            rec = {**rec, "ts": datetime.now(UTC).isoformat()}
        yield rec


class ReadingProducer:
    """Validates and sends readings; librdkafka retries with back-off (idempotent)."""

    def __init__(self, settings: StreamSettings, **overrides: object) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        self.stats = ProduceStats()
        self.producer = Producer(
            settings.kafka(
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    "retry.backoff.ms": 100,
                    "retry.backoff.max.ms": 2_000,
                    "message.timeout.ms": 60_000,
                    **overrides,
                }
            )
        )

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1
            if len(self.stats.errors) < 20:
                self.stats.errors.append(f"{msg.key()!r}: {err}")
            log.error("delivery failed for key %r: %s", msg.key(), err)

    def send(self, record: dict[str, Any]) -> bool:
        """Validate and enqueue one reading; False (and counted) if it is invalid."""
        try:
            reading = parse_reading(record)
        except ReadingValidationError as exc:
            self.stats.invalid += 1
            log.warning("not sending invalid reading: %s", exc)
            return False
        value = _ENCODER.encode(record)
        ts_ms = int(reading.ts.timestamp() * 1000)  # type: ignore[attr-defined]
        self.send_raw(value, str(record["sensor_id"]).encode(), ts_ms)
        return True

    def send_raw(self, value: bytes, key: bytes | None, ts_ms: int | None = None) -> None:
        """Enqueue bytes as they are (tests use it to send bad messages on purpose)."""
        while True:
            try:
                kwargs: dict[str, Any] = {"on_delivery": self._delivered}
                if ts_ms is not None:
                    kwargs["timestamp"] = ts_ms
                self.producer.produce(self.settings.topic, value=value, key=key, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self.producer.poll(0.1)
        self.stats.sent += 1
        self.producer.poll(0)

    def flush(self, timeout: float = 60.0) -> int:
        return int(self.producer.flush(timeout))


def produce(
    records: Iterable[dict[str, Any]],
    settings: StreamSettings,
    count: int | None = None,
    speed: float | None = None,
    progress_every_s: float = 5.0,
    echo: Any = print,
    stamp_now: bool = False,
    stop: StopFlag | None = None,
) -> ProduceStats:
    """Send up to `count` records (paced by `speed`), report progress, flush, return stats.

    `stop` (set by the CLI's SIGTERM/SIGINT handler) ends the loop between two readings,
    so every reading handed to the client is counted as sent; a KeyboardInterrupt raised
    inside the loop could land between the two and miscount by one."""
    producer = ReadingProducer(settings)
    started = last = time.monotonic()
    try:
        for rec in paced(itertools.islice(records, count), speed, stamp_now, stop):
            producer.send(rec)
            if time.monotonic() - last >= progress_every_s:
                last = time.monotonic()
                echo(producer.stats.line(last - started))
        if stop is not None and stop.is_set():
            echo("stopping: delivering what was already sent ...")
    except KeyboardInterrupt:  # Ctrl-C in a Python session: deliver what was sent
        echo("stopping: delivering what was already sent ...")
    remaining = producer.flush()
    if remaining:
        producer.stats.failed += remaining
    echo("done: " + producer.stats.line(time.monotonic() - started))
    for err in producer.stats.errors:
        echo(f"  delivery error: {err}")
    return producer.stats


def scenario_records(
    scenarios: Sequence[str], seconds: int = 300, seed: int = 0
) -> list[dict[str, Any]]:
    """One session per scenario, one sensor each, in time order (demo and benchmarks)."""
    import numpy as np

    from smoke_platform.core.simulate import generate_session

    rng, start = np.random.default_rng(seed), int(time.time())
    frames = [
        generate_session(rng, name, f"sensor-{i:03d}", f"{name}-{seed}-{i}", start, seconds)
        for i, name in enumerate(scenarios)
    ]
    frame = to_canonical(pd.concat(frames, ignore_index=True))
    return to_records(frame.sort_values(["ts", "sensor_id"], kind="stable"))
