"""The stream worker's Kafka shell: a consumer-group member around the pure core.

Per batch: consume (`read_committed`) -> validate (`streaming.processor`) -> begin a
Kafka transaction -> dead letters -> score (service, or the local model while the
circuit is open) -> per-sensor z-scores and alert machine -> `smoke_predictions`,
`smoke_alerts` and the consumer offsets (`send_offsets_to_transaction`, on a thread of
its own while the batch is scored) -> commit the transaction. Every
`SMOKE_TABLE_COMMIT_INTERVAL_S` the batches' rows go to the Delta tables
(`streaming.tables`), then the partitions' state, on a thread of its own: the stream goes
on meanwhile.

Exactly once: outputs and offsets commit together, and the transactional id is stable
per worker instance (`SMOKE_GROUP_ID`-`SMOKE_WORKER_ID`), so a restarted instance fences
its zombie and aborts whatever it left open. The tables commit after the transaction, each
with the batch's next offset per source partition as an application transaction, then the
partition's state; a crash in between leaves the state behind the committed offset, and
the partition resumes at the state's high-water mark in *replay* mode up to the committed
offset: those messages are scored again (same model, same sensor state, so the same rows
and alert ids) into the tables only (which keep just the rows they lack), never published
twice. SIGTERM/SIGINT finish the current
batch, commit and leave the group. `SMOKE_PROCESSING_GUARANTEE=at_least_once` (Kafka
Streams' name) trades the transaction for an idempotent producer whose outputs are all
delivered before the batch's offsets commit: a crash between them publishes the batch again.

Every transactional call has a deadline of its own (`StreamWorker.call_grace_s` past the
timeout it is given): librdkafka's `send_offsets_to_transaction` can block past its timeout,
for good, when the group coordinator's broker dies (confluentinc/librdkafka#5456, #5511).
A call past its deadline is abandoned with its producer; a new producer under the same
transactional id fences it and aborts its transaction, and the batch is consumed again.

Over 400 lines: the consumer's lifecycle, the batch transaction and its recovery are one
state machine (in transaction, replaying, rewound) whose parts share that state.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

from smoke_platform.core.explain import VersionCache
from smoke_platform.core.settings import under_home
from smoke_platform.core.trouble import PlatformWatch, TroubleConfig
from smoke_platform.errors import ConfigError
from smoke_platform.modelstore import load_explainer, served_model_tag
from smoke_platform.notify import Notifier
from streaming.admin import missing_acls, principal, probe, topic_id
from streaming.alerts import AlertConfig
from streaming.config import StreamSettings
from streaming.metrics import WorkerMetrics
from streaming.poison import PoisonGuard, Step, describe
from streaming.processor import BatchOutput, DeadLetter, InMessage, Processor, resume_plan
from streaming.scoring import (
    CircuitBreaker,
    FallbackScorer,
    LocalScorer,
    ModelUnavailable,
    RemoteScorer,
)
from streaming.sink import PartitionSink, to_json, unwritable_rows
from streaming.supervision import Supervision
from streaming.table_maintenance import legacy_folders
from streaming.tables import PendingCommits, Tables, app_id

log = logging.getLogger("smoke.worker")

# Failures outside the messages: never counted against them by the poison guard; they end
# the process and its supervisor restarts it (nothing committed is lost).
INFRASTRUCTURE = (OSError, MemoryError, ModelUnavailable)


class TransactionStuck(RuntimeError):
    """A transactional call did not return by its deadline (it ignores its timeout)."""


class StopRequested(Exception):
    """SIGTERM/SIGINT while the worker still waits for its brokers at start (`open`)."""


class BrokerUnavailable(RuntimeError):
    """No broker answered the worker's start-up (initialising its transactions) in time."""


class StreamWorker(Supervision):
    call_timeout_s = 30.0  # what each transactional call is given
    call_grace_s = 30.0  # past that timeout, before the call is abandoned

    def __init__(self, settings: StreamSettings, scorer: FallbackScorer | None = None) -> None:
        from confluent_kafka import Consumer

        self.s = settings
        self.explainers = VersionCache(_then_freeze(load_explainer))
        self.core = Processor(
            AlertConfig.from_settings(settings),
            settings.max_message_bytes,
            explainers=self.explainers,
            trouble=TroubleConfig.from_settings(settings),
        )
        self.platform = PlatformWatch(settings.instance_id())
        self.judged_at = 0.0  # monotonic time of the last supervision tick
        self.opened_at = time.time()  # when it started judging (see `supervise`)
        # The platform conditions open as last stored (`_rewind` goes back to them).
        self.platform_stored: dict[str, float] = {}
        self.dead_times: list[tuple[float, int]] = []  # (time, dead letters) of recent batches
        self.metrics = WorkerMetrics()
        self.scorer = scorer or FallbackScorer(
            RemoteScorer(
                settings.service_url,
                settings.api_key,
                settings.scoring_deadline_s,
                settings.verify(),  # HTTPS: the service's certificate against its CA
            ),
            LocalScorer(served_model_tag()),
            CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s),
            probe_timeout_s=settings.request_timeout_s,
        )
        self.sink = PartitionSink(under_home(settings.stream_dir), settings.topic)
        self.tables = Tables(
            under_home(settings.stream_dir), writer=f"{settings.group_id}-{settings.instance_id()}"
        )
        self.pending = PendingCommits(
            self.tables, settings.table_commit_interval_s, settings.table_commit_max_rows
        )
        # The periodic table commits run on a thread of their own, with their own table
        # handles, so a commit does not hold up the stream (`_flush_behind`).
        self.flush_tables = Tables(self.tables.root, writer=self.tables.writer)
        self.flusher = ThreadPoolExecutor(1, thread_name_prefix="table-commit")
        self.flushing: tuple[Future[None], PendingCommits] | None = None
        self.offsets_adder = ThreadPoolExecutor(1, thread_name_prefix="txn-offsets")
        self.guard = PoisonGuard(under_home(settings.stream_dir), settings.topic)
        self.notifier = Notifier(settings.webhook_url, source="stream-worker")
        self.replay_until: dict[int, int] = {}  # partition -> committed offset to replay up to
        self.stopping = False
        self.started = False  # open() done: a stop from then on finishes the batch
        self.in_transaction = False
        self.recovered_at = 0.0  # monotonic time the last failed transaction was recovered
        self.lag_at = 0.0  # monotonic time consumer lag was last measured
        self.assigned = threading.Event()  # set once the group gave us partitions
        self.consumer = Consumer(
            settings.kafka(
                **{
                    "group.id": settings.group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    "session.timeout.ms": settings.session_timeout_ms,
                    # A few heartbeats per session: a survivor learns of a rebalance quickly.
                    "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 5),
                    "max.poll.interval.ms": max(300_000, settings.session_timeout_ms),
                }
            )
        )
        self.transactional_id = f"{settings.group_id}-{settings.instance_id()}"
        self.producer = self._new_producer()
        self.producer_restarts: list[float] = []
        # Producers whose call never returned: kept (never destroyed under a live call).
        self.abandoned: list[Any] = []

    @property
    def transactional(self) -> bool:
        """Exactly once (the default): a Kafka transaction per batch; else at least once."""
        return self.s.processing_guarantee == "exactly_once"

    def _new_producer(self) -> Any:
        from confluent_kafka import Producer

        if self.transactional:
            extra = {
                "transactional.id": self.transactional_id,
                "transaction.timeout.ms": self.s.transaction_timeout_ms,
            }
        else:  # idempotent; a failed delivery fails the batch before its offsets commit
            extra = {
                "enable.idempotence": True,
                "on_delivery": self._delivery_failed,
                "delivery.report.only.error": True,
            }
        self.undelivered: list[Any] = []
        return Producer(self.s.kafka(**{**extra, "linger.ms": 5}))

    def _delivery_failed(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.undelivered.append(err)

    # -- lifecycle ---------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        """Finish the batch in hand, then close. Only sets a flag: a signal handler that
        logs could interrupt the main thread's own write to the same stream."""
        self.stopping = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        if self.sink.topic_id is None:  # no broker answered at start: the group's does now
            self.sink.topic_id = self.guard.topic_id = topic_id(self.s)
        self._resume(partitions)
        consumer.assign(partitions)
        log.info("assigned partitions %s", [tp.partition for tp in partitions])
        self.assigned.set()

    def _resume(self, partitions: list[Any]) -> None:
        """Load each partition's durable state and choose where to start: right after the
        state's high-water mark; messages before the committed offset are replayed into the
        tables only (they were published and committed already)."""
        self._settle()  # the state and tables as the commit behind the stream leaves them
        committed = {
            tp.partition: tp.offset for tp in self.consumer.committed(partitions, timeout=30)
        }
        for kind in ("predictions", "alerts", "trouble"):
            self.tables.table(kind, refresh=True)  # the previous owner's commits
        for tp in partitions:
            state = self.core.load(tp.partition, self.sink.load(tp.partition))
            self.guard.load(tp.partition)
            hwm, done = state.hwm, committed.get(tp.partition, -1001)
            self.replay_until.pop(tp.partition, None)
            plan = resume_plan(hwm, done)
            tp.offset = plan.start
            if plan.replay_until is not None:
                self.replay_until[tp.partition] = plan.replay_until
                log.warning(
                    "partition %d: state ends at offset %d, committed %d: replaying into tables",
                    tp.partition,
                    hwm,
                    done,
                )

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # Batches run between polls and commit before the next one, so nothing is in flight;
        # what the tables have not committed yet goes now, before the next owner starts.
        self.flush()
        self._forget(partitions)
        log.info("revoked partitions %s", [tp.partition for tp in partitions])

    def _forget(self, partitions: list[Any]) -> None:
        for tp in partitions:
            self.core.states.pop(tp.partition, None)
            self.replay_until.pop(tp.partition, None)
            self.guard.drop(tp.partition)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        # Another member may own them already; its transactions fence ours, and it replays
        # into the tables what was pending here (from the partitions' state).
        log.warning("lost partitions %s (session timed out)", [tp.partition for tp in partitions])
        if self.flushing is not None:  # nothing of theirs is written once they are gone
            wait([self.flushing[0]])  # its error, if any, is raised at the next poll
            self.flushing[1].drop(tp.partition for tp in partitions)
        self.pending.drop(tp.partition for tp in partitions)
        self._forget(partitions)

    def flush(self) -> None:
        """Commit what is pending to the tables, then the partitions' state (after the
        commit running behind the stream, if any)."""
        self._settle()
        self.pending.flush(self.sink.write)

    def _flush_behind(self) -> None:
        """Hand what is pending to the commit thread, which commits it to the tables and
        then writes the partitions' state, as `flush` does; one commit at a time, in order,
        so no state is ever ahead of the tables. While one runs, batches gather for the
        next, up to twice `SMOKE_TABLE_COMMIT_MAX_ROWS`: then the stream waits for it."""
        if self.flushing is not None:
            held = sum(len(rows) for rows in self.pending.rows.values())
            if held < 2 * self.pending.max_rows:
                return
            self._settle()
        taken = self.pending.take(self.flush_tables)
        self.flushing = (self.flusher.submit(taken.flush, self.sink.write), taken)

    def _settle(self) -> None:
        """Wait for the commit running behind the stream. Its error (the tables or the disk
        failing) is raised here, what it held pending again in front of what came since:
        a flush made again commits both; else the restarted worker replays them."""
        flushing, self.flushing = self.flushing, None
        if flushing is None:
            return
        future, taken = flushing
        try:
            future.result()
        except BaseException:
            if future.done():  # failed (not this thread interrupted while it runs)
                self.pending.put_back(taken)
            raise

    def open(self) -> None:
        """Serve metrics, start loading the local fallback model, learn the topic's id (see
        `PartitionSink`; at the first assignment when no broker answers yet), fence an
        earlier incarnation of this instance (init_transactions), join the group."""
        from confluent_kafka import KafkaException

        self.preflight()
        if self.stopping:
            raise StopRequested("answer its first request")
        # The platform conditions this instance left open when it last ran.
        self.platform_stored = self.sink.load_platform(self.platform.subject)
        self.platform.open = dict(self.platform_stored)
        self.metrics.serve(self.s.worker_metrics_port, self.s.worker_metrics_host)
        loading = self.scorer.local.preload()
        # The served model's explainer, before a batch's raised alert (inside its
        # transaction) would have to wait for the load.
        self.explainers.warm(served_model_tag())
        self.sink.topic_id = self.guard.topic_id = topic_id(self.s)
        try:
            self._init_producer()
        except KafkaException as exc:
            if exc.args[0].retriable():
                raise BrokerUnavailable(
                    f"no Kafka broker at SMOKE_KAFKA_BOOTSTRAP={self.s.kafka_bootstrap} "
                    f"answered while the worker initialised its transactions "
                    f"({exc.args[0].str()}): start the brokers, or fix the address"
                ) from None
            if exc.args[0].name() != "TRANSACTIONAL_ID_AUTHORIZATION_FAILED":
                raise
            raise ConfigError(
                f"the broker's ACLs deny {self._principal()} WRITE transactional-id "
                f"{self.transactional_id} (SMOKE_GROUP_ID-SMOKE_WORKER_ID), which the worker's "
                "exactly-once output needs: grant it, e.g. kafka-acls.sh --add "
                f"--allow-principal {self._principal()} --operation Write "
                f"--transactional-id {self.transactional_id}"
            ) from None
        self.consumer.subscribe(
            [self.s.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        gc.freeze()  # see `_then_freeze`; and again once the local model is loaded
        threading.Thread(target=_then_freeze(loading.join), name="gc-freeze", daemon=True).start()
        self.opened_at = time.time()
        self.started = True

    def _principal(self) -> str:
        return principal(self.s.kafka())

    def preflight(self) -> None:
        """Before anything starts: the broker accepts these credentials and its ACLs allow
        what the worker does, else one line naming the setting or the ACL (`ConfigError`:
        exit code 78, which `smoke up` does not restart). No broker answering within 10 s
        is no setting's fault (they may be starting): the worker goes on and waits. Output
        of an earlier release (Parquet files) under SMOKE_STREAM_DIR is never written over."""
        legacy = legacy_folders(self.tables.root)
        if legacy:
            raise ConfigError(
                f"SMOKE_STREAM_DIR holds Parquet output of an earlier release ({legacy[0]}): "
                f"move {self.tables.root} aside, then `smoke tables import <its new path>` "
                "copies it into the tables"
            )
        conn = self.s.kafka()
        why = probe(conn, timeout=10.0)
        if why is not None and why.startswith("no Kafka broker answers"):
            log.warning("%s: waiting for it (librdkafka retries)", why)
            return  # not a setting's fault: the brokers may be starting
        if why is not None:
            raise ConfigError(why)
        s = self.s
        outputs = [s.dlq_topic, s.predictions_topic, s.alerts_topic, s.trouble_topic]
        missing = missing_acls(conn, reads=[s.topic], writes=outputs, group=s.group_id)
        if missing:
            raise ConfigError(
                f"the broker's ACLs deny {self._principal()} what the worker needs: "
                f"{'; '.join(missing)} (grant each with kafka-acls.sh --add "
                f"--allow-principal {self._principal()} --operation <op> --topic|--group <name>)"
            )

    def poll_once(self) -> int:
        """Consume and process one batch; returns how many new messages it handled."""
        # As Kafka's own poll(): wait for a first message, then take what has arrived (up to
        # a batch) without waiting for a batch to fill: a quiet stream is scored at once,
        # a busy one in full batches.
        msgs = self.consumer.consume(1, self.s.poll_timeout_s)
        if msgs and self.s.batch_size > 1:
            msgs += self.consumer.consume(self.s.batch_size - 1, 0)
        handled = self.process([_in(m) for m in msgs if self._usable(m)])
        if self.flushing is not None and self.flushing[0].done():
            self._settle()  # the commit behind the stream is done: its error is raised now
        if self.pending.due():  # after a batch, or on a quiet poll: nothing waits for long
            self._flush_behind()
        if time.monotonic() - self.lag_at >= 5.0:
            self._update_lag()
        if time.monotonic() - self.judged_at >= self.supervision_interval_s:
            self.supervise()
        return handled

    def _update_lag(self) -> None:
        """Consumer lag per assigned partition, as a metric."""
        self.lag_at = time.monotonic()
        self.metrics.lag.clear()
        for partition, lag in self._lags().items():
            if lag is not None:
                self.metrics.lag.labels(str(partition)).set(lag)

    def close(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("could not commit the pending outputs to the tables")
        self.flusher.shutdown(wait=True)
        self.offsets_adder.shutdown(wait=False)  # a call stuck in librdkafka is abandoned
        self.consumer.close()  # leaves the group; offsets were committed per batch
        self.notifier.close()
        log.info("worker stopped")

    def run(self, idle_stop_s: float | None = None, max_seconds: float | None = None) -> None:
        """Consume until stopped (or idle for `idle_stop_s`, or after `max_seconds`). A stop
        while it waits for the brokers to start ends it before it has begun."""
        try:
            self.open()
            started = last_data = time.monotonic()
            while not self.stopping:
                if self.poll_once() or not self.consumer.assignment():
                    last_data = time.monotonic()  # idle only counts once partitions are ours
                now = time.monotonic()
                last_data = max(last_data, self.recovered_at)  # a recovery is not idleness
                if idle_stop_s is not None and now - last_data >= idle_stop_s:
                    break
                if max_seconds is not None and now - started >= max_seconds:
                    break
            if self.stopping:
                log.info("stop requested: the batch in hand is finished; closing")
        except StopRequested as exc:
            log.info("stop requested while waiting for the brokers to %s: closing", exc)
        finally:
            self.close()

    @staticmethod
    def _usable(msg: Any) -> bool:
        if msg.error() is None:
            return True
        log.warning("consumer error: %s", msg.error())
        return False

    # -- one batch ---------------------------------------------------------------------
    def process(self, msgs: list[InMessage]) -> int:
        """Process a batch end to end; returns how many new messages it handled. The poison
        guard may split it (`streaming.poison`): each step is a transaction of its own, and
        the first that fails ends the batch (the consumer is rewound to what is durable)."""
        hwm = {p: self.core.hwm(p) for p in {m.partition for m in msgs}}
        fresh = [m for m in msgs if m.offset > hwm[m.partition]]
        self.metrics.skipped.inc(len(msgs) - len(fresh))
        if not fresh:
            return 0
        self.metrics.consumed.inc(len(fresh))
        handled = 0
        for step in self.guard.plan(fresh):
            if not self._step(step):
                break
            handled += len(step.messages)
        return handled

    def _step(self, step: Step) -> bool:
        """One transaction of the batch; False when it failed (and the consumer was rewound).
        A failure of the messages' processing is counted by the poison guard and never ends
        the process; one of infrastructure (broker, disk, memory) is not counted."""
        from confluent_kafka import KafkaException

        fresh = step.messages
        replaying = bool(self.replay_until)  # after a restart, until the committed offsets
        live = (
            [m for m in fresh if m.offset >= self.replay_until.get(m.partition, -1)]
            if replaying
            else fresh
        )
        live_at = {(m.partition, m.offset) for m in live}
        self.guard.begin(step)
        try:
            out = self._transact(fresh, live_at, step.poisoned)
        except KafkaException as exc:
            self.guard.take_back(step)
            self._recover(exc.args[0])
            return False
        except TransactionStuck as exc:
            self.guard.take_back(step)
            log.warning("%s: abandoning the producer, rewinding to the committed offsets", exc)
            self._renew_producer(exc)
            self._after_failed_transaction()
            return False
        except INFRASTRUCTURE:
            self.guard.take_back(step)
            raise  # the supervisor restarts the worker; nothing was committed
        except Exception as exc:  # the messages' processing: counted, never an exit
            log.exception("processing %s failed: rewinding", describe(step))
            self.guard.failed(step, exc)
            self.metrics.failed_batches.inc()
            self._abort_after_failure()
            return False
        try:
            self._persist(fresh, out)
        except INFRASTRUCTURE:
            self.guard.take_back(step)
            raise  # committed: the restarted worker replays it into the tables
        self._observe(out, live_at)
        for m in fresh if replaying else ():  # a partition's replay ends at its committed offset
            if self.replay_until.get(m.partition, -1) <= m.offset + 1:
                self.replay_until.pop(m.partition, None)
        return True

    def _abort_after_failure(self) -> None:
        """After a processing failure: abort the open transaction (a producer that cannot,
        replaced), then back to the durable state and committed offsets."""
        from confluent_kafka import KafkaException

        try:
            if self.in_transaction and self.transactional:
                self._txn(lambda p: p.abort_transaction(self.call_timeout_s), "abort")
        except (KafkaException, TransactionStuck) as exc:
            log.warning("could not abort (%s): starting a new producer", exc)
            if not isinstance(exc, TransactionStuck):
                self.producer.purge()
            self._renew_producer(exc)
        self._after_failed_transaction()

    def _transact(
        self,
        fresh: list[InMessage],
        live: set[tuple[int, int]],
        poisoned: dict[tuple[int, int], str] | None = None,
    ) -> BatchOutput:
        """Validate and score `fresh`; publish the outputs of `live` messages and their
        offsets in one transaction."""
        valid, dead = self.core.validate(fresh, poisoned)
        publishing = bool(live)
        offsets = self._next_offsets(fresh, live)
        adding: Future[None] | None = None
        if publishing:
            self._begin()
            adding = self._add_offsets(offsets)
        try:
            out = self._score_and_publish(fresh, live, valid, dead)
        except BaseException as exc:
            if adding is not None:  # nothing runs beside the abort
                wait([adding])
                if isinstance(adding.exception(), TransactionStuck):
                    # its call still holds the producer: abandon it, never abort on it
                    raise adding.exception() from exc  # type: ignore[misc]
            raise
        if publishing:
            self._commit(offsets, adding)
        return out

    def _add_offsets(self, offsets: list[Any]) -> Future[None] | None:
        """The batch's offsets added to its transaction on another thread while the batch
        is scored and published: they are known before, and the call waits on two round
        trips to the group's and the transaction's coordinators."""
        if not (self.transactional and offsets):
            return None
        group = self.consumer.consumer_group_metadata()
        # A coordinator moving to another broker (one died) is retriable: `_txn` retries.
        return self.offsets_adder.submit(
            self._txn,
            lambda p: p.send_offsets_to_transaction(offsets, group, self.call_timeout_s),
            "add the offsets to the transaction",
        )

    def _score_and_publish(
        self,
        fresh: list[InMessage],
        live: set[tuple[int, int]],
        valid: list[Any],
        dead: list[DeadLetter],
    ) -> BatchOutput:
        publishing = bool(live)
        if publishing:
            for letter in dead:
                if (letter.message.partition, letter.message.offset) in live:
                    self._dead_letter(letter)
        started = time.perf_counter()
        out = self.core.score(valid, self.scorer, dead)
        if out.scored_by:
            out.trouble += self.platform.update(
                "scoring_fallback",
                out.scored_by == "local",
                time.time(),
                "scoring with the local model: the service does not answer"
                if out.scored_by == "local"
                else "the service scores again",
            )
        rejected = self._unwritable(out, fresh)
        out.dead_letters = dead + rejected
        if valid:
            self.metrics.scoring_latency.observe(time.perf_counter() - started)
            self.metrics.fallback.set(1 if out.scored_by == "local" else 0)
        if publishing:
            for letter in rejected:
                if (letter.message.partition, letter.message.offset) in live:
                    self._dead_letter(letter)
            self._publish(out, live)
            live_partitions = {p for p, _ in live}
            self._publish_trouble(
                [
                    e
                    for e in out.trouble
                    if e["partition"] in live_partitions or e["partition"] is None
                ]
            )
        return out

    def _begin(self) -> None:
        """Open a batch's outputs: a Kafka transaction (exactly once), or nothing to open."""
        if self.transactional:
            self.producer.begin_transaction()
        self._transaction(open_=True)

    def _commit(self, offsets: list[Any], adding: Future[None] | None = None) -> None:
        """Outputs and the consumed offsets: one transaction's commit (the offsets added
        by `adding`, or now); or, at least once, every output delivered, then the offsets
        committed (a crash in between publishes the batch again; the tables keep each row
        once)."""
        if self.transactional:
            if adding is None:
                adding = self._add_offsets(offsets)
            if adding is not None:
                adding.result()  # its error (a KafkaException, TransactionStuck) is ours
            self._txn(lambda p: p.commit_transaction(self.call_timeout_s), "commit the transaction")
        else:
            self._txn(self._deliver, "deliver the outputs")
            if offsets:
                _retrying(
                    lambda: self.consumer.commit(offsets=offsets, asynchronous=False),
                    "commit the offsets",
                )
        self._transaction(open_=False)

    def _deliver(self, producer: Any) -> None:
        """Every output produced so far acknowledged by the brokers, or the first error."""
        from confluent_kafka import KafkaError, KafkaException

        left = producer.flush(self.call_timeout_s)
        failed, self.undelivered = self.undelivered, []
        if failed:
            raise KafkaException(failed[0])
        if left:
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} outputs undelivered")
            )

    def _init_producer(self) -> None:
        if self.transactional:  # fences an earlier incarnation, aborts what it left open
            self._txn(lambda p: p.init_transactions(self.call_timeout_s), "initialise transactions")

    def _unwritable(self, out: BatchOutput, fresh: list[InMessage]) -> list[DeadLetter]:
        """Take the rows the output files cannot hold out of `out`: dead letters instead of
        a write that would fail after the commit, at every restart."""
        bad = unwritable_rows(out.rows)
        if not bad:
            return []
        by_offset = {(m.partition, m.offset): m for m in fresh}
        letters = [
            DeadLetter(
                by_offset[(out.rows[i]["partition"], out.rows[i]["offset"])],
                "sink_rejected",
                "<row>",
                f"the output files cannot hold this reading: {error}",
            )
            for i, error in sorted(bad.items())
        ]
        out.rows = [row for i, row in enumerate(out.rows) if i not in bad]
        return letters

    def _recover(self, err: Any) -> None:
        """After a failed transaction: abort it, or, when the producer itself failed
        (fenced: the coordinator aborted the transaction on its timeout while a broker was
        down, or another instance with our id started), start a new producer under the same
        transactional id; then rewind to the durable state and committed offsets."""
        from confluent_kafka import KafkaException

        log.warning("transaction failed (%s): aborting, rewinding to the committed offsets", err)
        try:
            if err.fatal():
                raise KafkaException(err)
            if self.in_transaction and self.transactional:
                self._txn(
                    lambda p: p.abort_transaction(self.call_timeout_s), "abort the transaction"
                )
        except KafkaException as exc:
            fatal = exc.args[0]
            if not fatal.fatal():
                raise
            log.warning("producer failed (%s): starting a new one", fatal)
            self.producer.purge()
            self._renew_producer(fatal)
        except TransactionStuck as exc:
            log.warning("%s: abandoning the producer", exc)
            self._renew_producer(exc)
        self._after_failed_transaction()

    def _renew_producer(self, why: Any) -> None:
        """A new producer under the same transactional id: `init_transactions` fences the
        old one and aborts its open transaction. More than 3 a minute: raise, and let the
        supervisor back off."""
        now = time.monotonic()
        self.producer_restarts = [t for t in self.producer_restarts if now - t < 60] + [now]
        if len(self.producer_restarts) > 3:
            raise RuntimeError(f"4 new producers within a minute, the last because: {why}")
        if isinstance(why, TransactionStuck):
            self.abandoned.append(self.producer)  # the stuck call still holds it
        self.producer = self._new_producer()
        self._init_producer()

    def _after_failed_transaction(self) -> None:
        self._transaction(open_=False)
        self._rewind()
        self.recovered_at = time.monotonic()

    def _txn(self, call: Any, what: str) -> None:
        """`call(producer)` on the call thread, again while it fails with a retriable error
        (a coordinator is moving after a broker died); other errors go to the caller, and a
        call that is still running `call_grace_s` past its own timeout raises
        `TransactionStuck`."""
        producer = self.producer
        deadline = self.call_timeout_s + self.call_grace_s

        def bounded() -> None:
            failed: list[BaseException] = []

            def run() -> None:
                try:
                    call(producer)
                except BaseException as exc:  # handed to the caller's thread
                    failed.append(exc)

            # A daemon thread: one stuck in librdkafka never holds up the process's exit.
            thread = threading.Thread(target=run, name="txn-call", daemon=True)
            thread.start()
            ends = time.monotonic() + deadline
            while thread.is_alive() and time.monotonic() < ends:
                thread.join(0.2)
                if self.stopping and not self.started:  # waiting for the brokers at start
                    self.abandoned.append(producer)  # the call still holds it
                    raise StopRequested(what)
            if thread.is_alive():
                raise TransactionStuck(f"could not {what}: no answer in {deadline:.0f} s")
            if failed:
                raise failed[0]

        _retrying(bounded, what, stop=lambda: self.stopping and not self.started)

    def _transaction(self, open_: bool) -> None:
        self.in_transaction = open_
        self.metrics.transaction_open.set(1 if open_ else 0)

    def _rewind(self) -> None:
        """After an aborted transaction: back to the durable state and committed offsets.
        What is pending is dropped, not committed: the partitions may be another member's
        by now (a fenced transaction), and the failed batch may have changed the state it
        would store; the replay from the stored state derives it again."""
        self.pending.clear()
        self.platform.open = dict(self.platform_stored)  # signals of the batch unstored
        assignment = self.consumer.assignment()
        self._resume(assignment)
        for tp in assignment:
            self.consumer.seek(tp)

    def _next_offsets(self, fresh: list[InMessage], live: set[tuple[int, int]]) -> list[Any]:
        from confluent_kafka import TopicPartition

        last: dict[int, int] = {}
        for m in fresh:
            if (m.partition, m.offset) in live:
                last[m.partition] = max(last.get(m.partition, -1), m.offset)
        return [TopicPartition(self.s.topic, p, o + 1) for p, o in last.items()]

    def _dead_letter(self, letter: Any) -> None:
        msg = letter.message
        limit = self.s.max_message_bytes
        self.producer.produce(
            self.s.dlq_topic, value=letter.value(limit), key=msg.key, headers=letter.headers(limit)
        )
        self.metrics.dlq.labels(letter.reason).inc()
        log.warning(
            "DLQ %s p%d@%d: %s", letter.reason, msg.partition, msg.offset, letter.error[:300]
        )

    def _publish(self, out: BatchOutput, live: set[tuple[int, int]]) -> None:
        now = _now_iso()
        for row in out.rows:
            row["processed_at"] = now
            if (row["partition"], row["offset"]) in live:
                self.producer.produce(
                    self.s.predictions_topic,
                    key=row["sensor_id"].encode(),
                    value=to_json(row),
                )
        for event in out.alerts:
            event["emitted_at"] = now
            if (event["partition"], event["offset"]) in live:
                self.producer.produce(
                    self.s.alerts_topic,
                    key=str(event["alert_id"]).encode(),
                    value=to_json(event),
                )

    def app(self, partition: int) -> str:
        """The tables' application-transaction id of a source partition."""
        return app_id(self.s.group_id, self.s.topic, self.sink.topic_id, partition)

    def _persist(self, msgs: list[InMessage], out: BatchOutput) -> None:
        """The batch's rows, pending with each partition's next offset
        (the tables' application-transaction version) and state; committed together every
        `SMOKE_TABLE_COMMIT_INTERVAL_S` by `poll_once` (`PendingCommits`)."""
        ends: dict[int, int] = {}
        firsts: dict[int, int] = {}
        for m in msgs:
            ends[m.partition] = max(ends.get(m.partition, -1), m.offset)
            firsts[m.partition] = min(firsts.get(m.partition, m.offset), m.offset)
        apps = {p: self.app(p) for p in ends}
        # Everything that can fail first; then the batch is pending as a whole, or not at all.
        # rows the tables hold already (a replay) are left out when they commit (`flush`)
        fresh = {"predictions": out.rows, "alerts": out.alerts}
        trouble = [t for t in out.trouble if t["partition"] in ends]
        fresh["trouble"] = (
            self.tables.new_events("trouble", trouble, firsts, apps) if trouble else []
        )
        for kind, rows in fresh.items():
            self.pending.add(kind, rows)
        for partition, last in ends.items():
            self.core.state(partition).hwm = last
            self.pending.mark(partition, apps[partition], last + 1, self.core.snapshot(partition))

    def _observe(self, out: BatchOutput, live: set[tuple[int, int]]) -> None:
        now = time.time()
        if out.dead_letters:
            self.dead_times.append((now, len(out.dead_letters)))
        live_partitions = {p for p, _ in live}
        self._store_platform(out.trouble)
        self._announce_trouble(
            [e for e in out.trouble if e["partition"] in live_partitions or e["partition"] is None]
        )
        if out.rows and out.scored_by:  # one batch is scored by one scorer
            self.metrics.scored.labels(out.scored_by).inc(len(out.rows))
            self.metrics.fire_predictions.labels(out.scored_by).inc(
                sum(1 for row in out.rows if row["is_fire"])
            )
            self.metrics.anomalies.inc(sum(1 for row in out.rows if row["anomaly"]))
        if out.model_version and self.metrics.model_version != out.model_version:
            self.metrics.model.clear()
            self.metrics.model.labels(out.model_version).set(1)
            self.metrics.model_version = out.model_version
            self.explainers.warm(out.model_version)  # before its first alert needs it
        for row in out.rows:
            self.metrics.e2e_latency.observe(max(0.0, now - _epoch(row["ts"])))
        for event in out.alerts:
            if (event["partition"], event["offset"]) not in live:
                continue  # replayed into the tables: announced when it was published
            self.metrics.alerts.labels(event["event"], event["severity"]).inc()
            if event["event"] in ("open", "escalate"):
                self.metrics.sensor_alarms.labels(event["sensor_id"], event["severity"]).inc()
            log.warning(
                "ALERT %s %s %s p=%.3f%s",
                event["event"],
                event["severity"],
                event["alert_id"],
                event["probability"],
                _why(event),
            )
            if event["event"] == "open":  # durable and committed by now: tell people
                why = _why(event)
                self.notifier.notify(
                    f"Smoke alert ({event['severity']}) on {event['sensor_id']}",
                    f"fire probability {event['probability']:.2f} since {event['ts']}{why}",
                    level=event["severity"],
                    background=True,
                    alert_id=event["alert_id"],
                )


def _then_freeze(load: Any) -> Any:
    """`load`, then what the process holds frozen (`gc.freeze`). What is loaded once and
    kept (the modules, a model version's explainer) is moved out of the cyclic garbage
    collector's reach: a full collection walked all of it, holding the stream each
    time. Objects frozen are still freed when their last reference goes."""

    def call(*args: Any) -> Any:
        loaded = load(*args)
        gc.freeze()
        return loaded

    return call


def _why(event: dict[str, Any]) -> str:
    """An alert's explanation as a log or notification tail ("" when it has none)."""
    parts = [(k, event.get(k)) for k in ("reasons", "drivers")]
    return "".join(f"; {k}: {v}" for k, v in parts if v)


def _retrying(
    call: Any, what: str, timeout_s: float = 120.0, stop: Callable[[], bool] = lambda: False
) -> None:
    """Call a transactional producer method, again while it fails with a retriable error
    (a coordinator is moving after a broker died) unless `stop()`; other errors go to the
    caller."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            err = exc.args[0]
            if not err.retriable() or time.monotonic() > deadline:
                raise
            if stop():
                raise StopRequested(what) from None
            log.warning("could not %s yet (%s): retrying", what, err)
            time.sleep(0.5)


def _in(msg: Any) -> InMessage:
    return InMessage(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()
