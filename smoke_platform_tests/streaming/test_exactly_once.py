"""Exactly-once outputs on Apache Kafka: SIGKILLed workers (one inside an open
transaction), lost output files, and consumer-group failover. Every topic is read with
`isolation.level=read_committed`; the files must agree with the topics."""

import json
import sys
import threading
import time
import urllib.request

import pandas as pd
import pytest

from smoke_platform.core.settings import environment
from smoke_platform.procs import ManagedProcess, ProcessFailed, free_port
from smoke_platform.serving import bentoml_serve
from streaming.admin import create_topics, platform_topics, read_topic
from streaming.producer import ReadingProducer, produce, scenario_records
from streaming.tables import is_table, read_outputs
from streaming.worker import StreamWorker

pytestmark = [pytest.mark.kafka, pytest.mark.bentoml, pytest.mark.slow]

FIRES = ["wood_fire", "normal_indoor", "gas_fire", "cooking_steam"]


def _worker(settings, log_path, model_tag, worker_id, idle_stop=None):
    env = environment(settings)
    env |= {"SMOKE_WORKER_ID": worker_id, "SMOKE_MODEL_TAG": model_tag}
    cmd = [sys.executable, "-m", "smoke_platform.cli", "worker"]
    if idle_stop is not None:
        cmd += ["--idle-stop", str(idle_stop)]
    return ManagedProcess(f"worker {worker_id}", cmd, log_path, env=env).start()


def _metric(port, name):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _committed(settings):
    """What read_committed consumers see on each output topic."""
    preds = [
        json.loads(m.value())
        for m in read_topic(settings.kafka_bootstrap, settings.predictions_topic)
    ]
    alerts = [
        json.loads(m.value()) for m in read_topic(settings.kafka_bootstrap, settings.alerts_topic)
    ]
    dlq = read_topic(settings.kafka_bootstrap, settings.dlq_topic)
    return pd.DataFrame(preds), pd.DataFrame(alerts), dlq


def _uncommitted_count(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "raw", "isolation.level": "read_uncommitted"}
    )
    try:
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in c.list_topics(topic, timeout=10).topics[topic].partitions
        )
    finally:
        c.close()


def _assert_exactly_once(settings, n_good, n_bad):
    preds, alerts, dlq = _committed(settings)
    keys = ["partition", "offset"]
    assert len(preds) == n_good, f"committed predictions {len(preds)} != {n_good}"
    assert not preds.duplicated(keys).any()
    files = read_outputs(settings.stream_dir, "predictions")
    assert len(files) == n_good and not files.duplicated(keys).any()
    assert set(map(tuple, files[keys].to_numpy())) == set(map(tuple, preds[keys].to_numpy()))
    assert len(dlq) == n_bad
    sources = [dict(m.headers())["source_offset"] for m in dlq]
    assert len(set(sources)) == n_bad
    assert not alerts.duplicated(["alert_id", "event"]).any()
    file_alerts = read_outputs(settings.stream_dir, "alerts")
    assert set(zip(alerts["alert_id"], alerts["event"], strict=True)) == set(
        zip(file_alerts["alert_id"], file_alerts["event"], strict=True)
    )
    return preds, alerts


def _records_with_poison(n_sensors_sets, seconds, seed, every=97):
    """Readings in time order with a malformed message after every `every` readings
    (so most batches hold a dead letter: the transaction carries output before scoring)."""
    records = scenario_records(FIRES * n_sensors_sets, seconds=seconds, seed=seed)
    out = []
    for i, rec in enumerate(records):
        out.append(rec)
        if i % every == every - 1:
            out.append(
                {
                    "poison": f'{{"sensor_id": "{rec["sensor_id"]}", "temperature_c": ',
                    "key": rec["sensor_id"],
                }
            )
    return out


def _produce_mixed(settings, items):
    producer = ReadingProducer(settings)
    for item in items:
        if "poison" in item:
            # Keyed like the reading before it, so every partition carries poison: a batch
            # drawn from any one partition holds dead letters.
            producer.send_raw(item["poison"].encode(), item["key"].encode())
        else:
            producer.send(item)
    assert producer.flush() == 0
    assert producer.stats.failed == 0


def test_sigkill_twice_one_inside_a_transaction_loses_and_duplicates_nothing(
    make_settings, served_model, tmp_path
):
    svc, url = bentoml_serve(
        "bentos.service:SmokeDetector",
        tmp_path / "svc.log",
        env={"SMOKE_MODEL_TAG": served_model.version, "SMOKE_API_KEY": ""},
    )
    metrics_port = free_port()
    settings = make_settings(
        url,
        batch_size=500,
        scoring_deadline_s=4.0,  # a frozen service holds the transaction open this long
        breaker_failures=1,
        breaker_reset_s=1.0,
        worker_metrics_port=metrics_port,
        transaction_timeout_ms=60_000,
    )
    items = _records_with_poison(2, seconds=2_500, seed=12)  # 8 sensors x 2,500 s = 20,000
    n_good = sum(1 for i in items if "poison" not in i)
    n_bad = len(items) - n_good
    assert n_good == 20_000
    _produce_mixed(settings, items)
    tag = served_model.version
    try:
        first = _worker(settings, tmp_path / "w1.log", tag, "kill-test")
        # Progress from the worker's metrics: its tables commit every 10 s (what a SIGKILL
        # leaves pending there, the next worker replays into them).
        first.wait_until(
            lambda: (_metric(metrics_port, "smoke_worker_consumed_total") or 0) > 3_000,
            180,
            "scoring",
        )
        # Freeze the service: the next batch opens its transaction, dead-letters its poison
        # message and then waits on the frozen service with the transaction open.
        svc.freeze()
        first.wait_until(
            lambda: _metric(metrics_port, "smoke_worker_transaction_open") == 1.0,
            60,
            "inside an open transaction",
        )
        time.sleep(0.5)
        first.kill()  # SIGKILL inside the open transaction
        svc.freeze(False)
        aborted_dlq = _uncommitted_count(settings.kafka_bootstrap, settings.dlq_topic)

        second = _worker(settings, tmp_path / "w2.log", tag, "kill-test")
        second.wait_until(
            lambda: len(read_outputs(settings.stream_dir, "predictions")) > 11_000, 240, "scoring"
        )
        second.kill()  # SIGKILL wherever it is

        third = _worker(settings, tmp_path / "w3.log", tag, "kill-test", idle_stop=6)
        assert third.proc is not None and third.proc.wait(300) == 0, third.log_tail()
    finally:
        svc.freeze(False)
        svc.stop()
    # The first kill left dead letters of an open (then aborted) transaction in the log.
    committed_dlq = len(read_topic(settings.kafka_bootstrap, settings.dlq_topic))
    assert (
        aborted_dlq > 0
        and _uncommitted_count(settings.kafka_bootstrap, settings.dlq_topic) > committed_dlq
    )
    _preds, alerts = _assert_exactly_once(settings, n_good, n_bad)
    # Same alerts as one uninterrupted worker over the same topic.
    clean = make_settings(url, topic=settings.topic)
    clean_worker = StreamWorker(clean, scorer=_local(served_model))
    clean_worker.run(idle_stop_s=4)
    reference = read_outputs(clean.stream_dir, "alerts")
    assert set(alerts["alert_id"]) == set(reference["alert_id"])
    assert (alerts["event"] == "open").sum() >= 4  # the fires were alerted


def _local(model):
    """Score with the model in-process (the reference run needs no service)."""
    from streaming.scoring import CircuitBreaker, FallbackScorer, LocalScorer, RemoteScorer

    return FallbackScorer(
        RemoteScorer("http://127.0.0.1:9", "", 0.1),
        LocalScorer(model.version),
        CircuitBreaker(1, 3600),
    )


def test_files_lost_after_the_commit_are_replayed_without_republishing(
    make_settings, served_model, tmp_path
):
    """A crash between the transaction's commit and the file write leaves the files behind
    the committed offsets. Caused for real: the files of the second half are taken away
    after the worker committed it. The next worker replays them into the files only."""
    import shutil

    settings = make_settings(batch_size=300)
    records = scenario_records(FIRES, seconds=600, seed=4)
    half = len(records) // 2
    produce(records[:half], settings, echo=lambda *_: None)
    StreamWorker(settings, scorer=_local(served_model)).run(idle_stop_s=3)
    snapshot = tmp_path / "snapshot"
    shutil.copytree(settings.stream_dir, snapshot)
    produce(records[half:], settings, echo=lambda *_: None)
    StreamWorker(settings, scorer=_local(served_model)).run(idle_stop_s=3)
    shutil.rmtree(settings.stream_dir)
    shutil.copytree(snapshot, settings.stream_dir)  # the second half's files are gone
    assert len(read_outputs(settings.stream_dir, "predictions")) == half

    replaying = StreamWorker(settings, scorer=_local(served_model))
    replaying.run(idle_stop_s=3)
    assert replaying.metrics.value("smoke_worker_consumed_total") == len(records) - half
    _assert_exactly_once(settings, len(records), 0)
    # The replayed files equal an uninterrupted run's.
    clean = make_settings(topic=settings.topic)
    StreamWorker(clean, scorer=_local(served_model)).run(idle_stop_s=3)
    keys = ["partition", "offset"]
    got = read_outputs(settings.stream_dir, "predictions").sort_values(keys)
    ref = read_outputs(clean.stream_dir, "predictions").sort_values(keys)
    cols = [*keys, "probability", "anomaly", "max_abs_z"]
    pd.testing.assert_frame_equal(
        got[cols].reset_index(drop=True), ref[cols].reset_index(drop=True)
    )
    got_alerts = read_outputs(settings.stream_dir, "alerts")
    ref_alerts = read_outputs(clean.stream_dir, "alerts")
    assert sorted(got_alerts["alert_id"] + got_alerts["event"]) == sorted(
        ref_alerts["alert_id"] + ref_alerts["event"]
    )


def _members(bootstrap, group):
    """{member client host/id: set of partitions} of a consumer group ({} while the
    group's coordinator is still being elected or loaded: a retriable state)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    [desc] = admin.describe_consumer_groups([group], request_timeout=10).values()
    try:
        group_desc = desc.result()
    except KafkaException as exc:
        not_yet = ("NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE")
        if exc.args[0].name() not in not_yet:
            raise
        return {}
    return {
        m.member_id: {tp.partition for tp in m.assignment.topic_partitions}
        for m in group_desc.members
    }


def _writers(settings):
    from deltalake import DeltaTable

    path = f"{settings.stream_dir}/predictions"
    if not is_table(path):
        return set()
    return {c.get("writer") for c in DeltaTable(path).history() if c.get("operation") == "WRITE"}


def test_failover_the_survivor_owns_every_partition_and_nothing_is_lost(
    make_settings, served_model, tmp_path, broker
):
    settings = make_settings(batch_size=200, partitions=4, session_timeout_ms=6_000)
    records = scenario_records(FIRES * 2, seconds=1_500, seed=21)  # 12,000 readings
    tag = served_model.version
    stop = threading.Event()
    sender = threading.Thread(
        target=produce,
        args=(records, settings),
        kwargs={"speed": 100.0, "echo": lambda *_: None, "stop": stop},  # 15 s of sending
        daemon=True,
    )
    sender.start()
    a = _worker(settings, tmp_path / "a.log", tag, "member-a")
    b = _worker(settings, tmp_path / "b.log", tag, "member-b", idle_stop=20)
    try:
        a.wait_until(
            lambda: (
                len(_members(broker, settings.group_id)) == 2
                and all(_members(broker, settings.group_id).values())
            ),
            120,
            "sharing the partitions",
        )
        owned = _members(broker, settings.group_id)
        assert sorted(p for ps in owned.values() for p in ps) == [0, 1, 2, 3]
        # Both members append to the same tables at once: each one's commits are in the
        # predictions table's history before one of them is killed.
        writers = {f"{settings.group_id}-member-a", f"{settings.group_id}-member-b"}
        a.wait_until(lambda: writers <= _writers(settings), 120, "both members committing")
        a.wait_until(
            lambda: len(read_outputs(settings.stream_dir, "predictions")) > 1_000, 120, "scoring"
        )
        a.kill()
        killed_at = time.monotonic()
        while True:
            members = _members(broker, settings.group_id)
            if len(members) == 1 and next(iter(members.values())) == {0, 1, 2, 3}:
                break
            assert time.monotonic() - killed_at < 30, members
            time.sleep(0.2)
        takeover_s = time.monotonic() - killed_at
        print(f"failover: survivor owns all 4 partitions {takeover_s:.1f} s after SIGKILL")
        # Session timeout 6 s: the coordinator notices the dead member, the survivor
        # rejoins within one heartbeat.
        assert takeover_s <= 6.0 * 1.5
        sender.join(120)
        assert b.proc is not None and b.proc.wait(300) == 0, b.log_tail()
    finally:
        stop.set()
        a.stop()
        b.stop()
    _assert_exactly_once(settings, len(records), 0)


def _java_hash(text):
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h


def _txn_coordinator(bootstrap, transactional_id, partitions=50):
    """The broker id leading the `__transaction_state` partition of a transactional id
    (Kafka: abs(id.hashCode()) % transaction.state.log.num.partitions)."""
    from confluent_kafka.admin import AdminClient

    partition = (_java_hash(transactional_id) & 0x7FFFFFFF) % partitions
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = admin.list_topics("__transaction_state", timeout=10).topics["__transaction_state"]
    return topic.partitions[partition].leader


def test_a_broker_dies_mid_stream_and_rejoins_producer_and_worker_carry_on(served_model, tmp_path):
    """Three Apache Kafka nodes (KRaft quorum of 3, replication factor 3,
    `min.insync.replicas=2`); one is SIGKILLed mid-stream and restarted."""
    from confluent_kafka.admin import AdminClient

    from streaming.config import StreamSettings
    from streaming.embedded import KafkaCluster

    cluster = KafkaCluster(tmp_path / "cluster", nodes_count=3, heap="384m").start()
    try:
        bootstrap = cluster.bootstrap
        settings = StreamSettings(
            kafka_bootstrap=bootstrap,
            service_url="http://127.0.0.1:9",  # no service: the local model scores
            api_key="",
            stream_dir=str(tmp_path / "stream"),
            session_timeout_ms=6_000,
            transaction_timeout_ms=10_000,
            worker_id="rf3",
            poll_timeout_s=0.3,
        )
        create_topics(
            bootstrap,
            platform_topics(settings),
            replication=3,
            config={"min.insync.replicas": "2"},
        )
        records = scenario_records(FIRES * 2, seconds=1_000, seed=5)  # 8,000 readings
        stats = {}
        sender = threading.Thread(
            target=lambda: stats.update(
                s=produce(records, settings, speed=80.0, echo=lambda *_: None)
            ),
            daemon=True,
        )
        sender.start()
        # No idle stop: with acks=all every partition's writes wait until the dead broker
        # leaves the in-sync replicas (up to replica.lag.time.max.ms, 30 s), and a worker
        # with nothing to read is not a stalled one. It is stopped once all is scored.
        worker = _worker(settings, tmp_path / "w.log", served_model.version, "rf3")
        try:
            worker.wait_until(
                lambda: len(read_outputs(settings.stream_dir, "predictions")) > 1_500,
                180,
                "scoring",
            )
            # SIGKILL the broker that coordinates the worker's transactions, mid-stream:
            # the hardest one to lose (the coordinator moves; the worker must carry on).
            coordinator = _txn_coordinator(bootstrap, f"{settings.group_id}-rf3")
            cluster.kill(coordinator - 1)
            try:
                worker.wait_until(
                    lambda: len(read_outputs(settings.stream_dir, "predictions")) > 5_000,
                    180,
                    "scoring with a broker down",
                    stacks=True,  # a stalled worker: its threads' stacks say where
                )
            except ProcessFailed:
                raise AssertionError(f"stalled; stacks and log:\n{worker.log_tail(250)}") from None
            cluster.restart(coordinator - 1)
            sender.join(180)
            assert (stats["s"].sent, stats["s"].delivered, stats["s"].failed) == (8_000, 8_000, 0)
            worker.wait_until(
                lambda: len(read_outputs(settings.stream_dir, "predictions")) >= len(records),
                300,
                "scoring every reading",
                stacks=True,
            )
            assert worker.stop() == 0, worker.log_tail()  # SIGTERM: finish, commit, leave
        finally:
            worker.stop()
        _assert_exactly_once(settings, len(records), 0)
        # The restarted broker rejoins: back in every partition's in-sync replicas.
        admin = AdminClient({"bootstrap.servers": bootstrap})
        deadline = time.monotonic() + 120
        while True:
            meta = admin.list_topics(timeout=10)
            isrs = [
                len(p.isrs)
                for t in platform_topics(settings)
                for p in meta.topics[t].partitions.values()
            ]
            if len(meta.brokers) == 3 and min(isrs) == 3:
                break
            assert time.monotonic() < deadline, (len(meta.brokers), isrs)
            time.sleep(1)
    finally:
        cluster.stop()


class _Blocking:
    """A real transactional producer whose first `send_offsets_to_transaction` never
    returns: librdkafka's own hang when the group coordinator's broker dies
    (confluentinc/librdkafka#5456, #5511), a fault no test can cause on demand."""

    def __init__(self, producer, release):
        self._producer, self._release = producer, release

    def __getattr__(self, name):
        return getattr(self._producer, name)

    def send_offsets_to_transaction(self, *args):
        self._release.wait()
        return self._producer.send_offsets_to_transaction(*args)


def test_a_transactional_call_that_never_returns_is_abandoned_and_nothing_lost(
    make_settings, served_model
):
    settings = make_settings(batch_size=500)
    records = _records_with_poison(2, seconds=300, seed=8)
    n_bad = sum(1 for r in records if "poison" in r)
    _produce_mixed(settings, records)
    release = threading.Event()

    class Worker(StreamWorker):
        call_timeout_s, call_grace_s = 2.0, 1.0
        made = 0

        def _new_producer(self):
            producer = super()._new_producer()
            Worker.made += 1
            return _Blocking(producer, release) if Worker.made == 1 else producer

    worker = Worker(settings, scorer=_local(served_model))
    try:
        worker.run(idle_stop_s=4)
    finally:
        release.set()  # the abandoned call now meets a fenced producer
    assert Worker.made == 2 and len(worker.abandoned) == 1
    _assert_exactly_once(settings, len(records) - n_bad, n_bad)
