"""The stream worker's supervision between batches: trouble signals (`core.trouble`) judged
on every tick, published in a Kafka transaction of their own, stored with the partition's
state, counted, logged and notified. A part of `StreamWorker` (a mixin: it uses the
worker's producer, transaction calls, sink, tables and core)."""

from __future__ import annotations

import logging
import time
from typing import Any

from streaming.processor import BatchOutput
from streaming.sink import to_json

log = logging.getLogger("smoke.worker")


class Supervision:
    """Trouble signals of the worker's partitions and of the platform itself."""

    supervision_interval_s = 1.0  # silence is judged this often (and at most one poll later)
    s: Any
    core: Any
    sink: Any
    tables: Any
    metrics: Any
    notifier: Any
    platform: Any
    producer: Any
    consumer: Any
    judged_at: float
    opened_at: float
    platform_stored: dict[str, float]
    dead_times: list[tuple[float, int]]
    stopping: bool
    in_transaction: bool

    def _begin(self) -> None: ...
    def _commit(self, offsets: list[Any]) -> None: ...
    def flush(self) -> None: ...
    def _abort_after_failure(self) -> None: ...

    def _lags(self) -> dict[int, int | None]:
        """Per assigned partition, messages behind its end from the client's own view (the
        last fetched high watermark minus our position; no request to the broker), or None
        where the client does not know yet."""
        assignment = self.consumer.assignment()
        out: dict[int, int | None] = {}
        for tp in self.consumer.position(assignment) if assignment else []:
            out[tp.partition] = None
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except Exception:
                continue
            if high >= 0 and tp.offset >= 0:
                out[tp.partition] = max(0, high - tp.offset)
            elif high == 0:  # an empty partition: nothing to be behind on
                out[tp.partition] = 0
        return out

    def supervise(self) -> None:
        """Judge each assigned partition's silence (caught up: fewer messages behind than a
        batch), and the platform's own lag and dead-letter rate; publish what it raises
        in a transaction of its own, then store the partitions' state with the signals."""
        self.judged_at = time.monotonic()
        if self.stopping or self.in_transaction:
            return
        wall = time.time()
        lags = self._lags()
        events: list[dict[str, Any]] = []
        for partition, lag in lags.items():
            caught_up = lag is not None and lag < self.s.batch_size
            events += self.core.judge(partition, wall, caught_up)
        total = sum(lag or 0 for lag in lags.values())
        behind = total > self.s.trouble_lag_messages  # on the lags known
        if behind or (lags and None not in lags.values()):  # caught up: on every lag
            events += self.platform.update(
                "consumer_lag",
                behind,
                wall,
                f"{total} messages behind (bound {self.s.trouble_lag_messages})",
            )
        self.dead_times = [(t, n) for t, n in self.dead_times if wall - t <= 60.0]
        dead = sum(n for _, n in self.dead_times)
        too_many = dead > self.s.trouble_dead_letters_per_min
        if too_many or wall - self.opened_at >= 60.0:  # a quiet minute only once it had one
            events += self.platform.update(
                "dead_letter_rate",
                too_many,
                wall,
                f"{dead} dead letters in the last minute "
                f"(bound {self.s.trouble_dead_letters_per_min})",
            )
        self._sensor_gauges()
        if not events:
            return
        from confluent_kafka import KafkaException

        try:
            self._begin()
            self._publish_trouble(events)
            self._commit([])
        except (KafkaException, RuntimeError) as exc:  # RuntimeError: TransactionStuck
            # Not published: judged again at the next tick (the state was not stored).
            log.warning("trouble signals not published (%s): judged again", exc)
            self._abort_after_failure()  # (its rewind: the platform's conditions as stored)
            return
        # Judged between batches: stored in one commit (the platform's own signals too),
        # then each partition's state, which remembers them open; what batches left
        # pending goes first, so no state is ahead of the tables.
        self.flush()
        self.tables.append("trouble", events)
        if any(e["partition"] is None for e in events):
            self._remember_platform()
        for partition in sorted({e["partition"] for e in events if e["partition"] is not None}):
            self.sink.write(partition, self.core.snapshot(partition))
        self._announce_trouble(events)

    def _store_platform(self, events: list[dict[str, Any]]) -> None:
        """The platform's own signals of a batch (no partition: no application transaction)."""
        mine = [e for e in events if e["partition"] is None]
        if mine:
            self.tables.append("trouble", mine)
            self._remember_platform()

    def _remember_platform(self) -> None:
        """The platform conditions open now, stored once their signals are (a restarted
        worker neither opens them again nor forgets to restore them)."""
        self.sink.write_platform(self.platform.subject, self.platform.open)
        self.platform_stored = dict(self.platform.open)

    def _sensor_gauges(self) -> None:
        totals = {"known": 0, "silent": 0, "stuck": 0}
        for partition in list(self.core.states):
            for key, value in self.core.watch(partition).counts().items():
                totals[key] += value
        for key, value in totals.items():
            self.metrics.sensors.labels(key).set(value)

    def _publish_trouble(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.producer.produce(
                self.s.trouble_topic,
                key=event["trouble_id"].encode(),
                value=to_json(event),
            )

    def _announce_trouble(self, events: list[dict[str, Any]]) -> None:
        """Published and stored by now: metrics, the log and the notifier."""
        for event in events:
            self.metrics.trouble.labels(event["kind"], event["event"]).inc()
            log.warning(
                "TROUBLE %s %s %s: %s", event["kind"], event["event"], event["subject"],
                event["detail"],
            )  # fmt: skip
            self.notifier.notify(
                f"Trouble ({event['kind']}{'' if event['event'] == 'open' else ', restored'})"
                f" on {event['subject']}",
                event["detail"],
                level="warning" if event["event"] == "open" else "info",
                background=True,
                trouble_id=event["trouble_id"],
            )


def live_trouble(out: BatchOutput, live: set[tuple[int, int]]) -> list[dict[str, Any]]:
    """A batch's trouble signals to publish: the platform's, and those of partitions with
    live messages (a replay into the tables publishes nothing again)."""
    partitions = {p for p, _ in live}
    return [e for e in out.trouble if e["partition"] is None or e["partition"] in partitions]
