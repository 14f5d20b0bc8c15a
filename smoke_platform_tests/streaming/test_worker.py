"""The stream worker against a real broker and a real `bentoml serve`."""

import itertools
import json
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pandas as pd
import pytest

from smoke_platform.core.explain import EXPLAINED, driver_names
from smoke_platform.core.features import MODEL_FEATURES
from smoke_platform.core.schema import HISTORY_FIELDS, MEASUREMENTS
from smoke_platform.dashboard import RecentAlerts, serve
from smoke_platform.procs import free_port
from smoke_platform.serving import bentoml_serve
from smoke_platform_tests.streaming.conftest import worker_process
from streaming.admin import read_topic
from streaming.producer import ReadingProducer, live_source, produce, scenario_records
from streaming.tables import read_outputs
from streaming.worker import StreamWorker

pytestmark = [pytest.mark.kafka, pytest.mark.bentoml]


def _produce(settings, count, **kwargs):
    records = list(itertools.islice(live_source(**kwargs), count))
    stats = produce(records, settings, echo=lambda *_: None)
    assert (stats.sent, stats.delivered, stats.failed) == (count, count, 0)
    return records


def test_every_reading_appears_exactly_once(make_settings, open_service):
    settings = make_settings(open_service)
    records = _produce(settings, 3_000, seed=3, sensors=4)
    StreamWorker(settings).run(idle_stop_s=4)
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == 3_000
    assert not preds.duplicated(["partition", "offset"]).any()
    sent = {(r["sensor_id"], r["ts"]) for r in records}
    got = {
        (s, t.replace("Z", "+00:00")) for s, t in zip(preds["sensor_id"], preds["ts"], strict=True)
    }
    assert got == sent
    assert set(preds["scored_by"]) == {"service"}
    assert len(read_topic(settings.kafka_bootstrap, settings.predictions_topic)) == 3_000


BAD = {
    "malformed_json": b'{"sensor_id": "x", ',
    "missing_field": "drop:raw_h2",
    "wrong_type": "set:temperature_c=hot",
    "out_of_range": "set:humidity_pct=140",
    "unknown_field": "set:colour=red",
    "oversized": "pad",
}


def _bad_message(kind, good):
    spec = BAD[kind]
    if isinstance(spec, bytes):
        return spec
    rec = dict(good)
    if spec.startswith("drop:"):
        rec.pop(spec[5:])
    elif spec.startswith("set:"):
        key, value = spec[4:].split("=")
        rec[key] = float(value) if value.replace(".", "").isdigit() else value
    else:
        rec["scenario"] = "x" * 3_000
    return json.dumps(rec).encode()


def test_bad_messages_go_to_the_dlq_and_good_ones_are_scored(make_settings, open_service):
    settings = make_settings(open_service, max_message_bytes=2_000)
    goods = list(itertools.islice(live_source(seed=4, sensors=2), 60))
    producer = ReadingProducer(settings)
    for i, good in enumerate(goods):
        producer.send(good)
        kind = list(BAD)[(i // 10) % len(BAD)] if i % 10 == 0 else None
        if kind:
            producer.send_raw(_bad_message(kind, good), good["sensor_id"].encode())
    assert producer.flush() == 0
    StreamWorker(settings).run(idle_stop_s=4)
    dlq = read_topic(settings.kafka_bootstrap, settings.dlq_topic)
    headers = [dict(m.headers()) for m in dlq]
    assert sorted(h["reason"].decode() for h in headers) == sorted(BAD)
    for msg, h in zip(dlq, headers, strict=True):
        assert {"field", "error", "source_topic", "source_partition", "source_offset"} <= set(h)
        assert h["source_topic"].decode() == settings.topic
        assert msg.value()  # the original bytes are kept
    by_reason = {h["reason"].decode(): h for h in headers}
    assert b"humidity_pct" in by_reason["out_of_range"]["field"]
    assert b"0 to 100" in by_reason["out_of_range"]["error"]
    assert b"colour" in by_reason["unknown_field"]["field"]
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == len(goods)


def test_sigkill_and_restart_lose_nothing_and_duplicate_no_alert(
    make_settings, open_service, tmp_path
):
    # Table commits every second: the stream (4,400 readings) takes a few seconds, and
    # the kill must come after some are in the tables with their partitions' state.
    settings = make_settings(open_service, batch_size=200, table_commit_interval_s=1.0)
    records = scenario_records(["wood_fire"] * 4, seconds=1_100, seed=0)
    produce(records, settings, echo=lambda *_: None)
    proc = worker_process(settings, tmp_path / "worker1.log")
    state_dir = tmp_path.joinpath(settings.stream_dir, "_state")
    proc.wait_until(
        lambda: (
            len(read_outputs(settings.stream_dir, "predictions")) > 1_000
            and any(state_dir.glob("*.json"))
        ),
        120,
        "writing predictions and the partitions' state",
    )
    proc.kill()  # SIGKILL mid-stream
    restarted = worker_process(settings, tmp_path / "worker2.log")
    restarted.proc.wait(180)
    assert restarted.proc.returncode == 0, restarted.log_tail()

    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == len(records) and not preds.duplicated(["partition", "offset"]).any()
    alerts = read_outputs(settings.stream_dir, "alerts")
    assert not alerts.duplicated(["alert_id", "event"]).any()
    # The same stream processed without a crash gives the same alerts.
    clean = make_settings(open_service, topic=settings.topic, batch_size=500)
    StreamWorker(clean).run(idle_stop_s=4)
    reference = read_outputs(clean.stream_dir, "alerts")
    assert set(alerts["alert_id"]) == set(reference["alert_id"])
    assert (alerts["event"] == "open").sum() == 4  # one alert per fire session


def test_service_down_falls_back_locally_and_switches_back(make_settings, served_model, tmp_path):
    proc, url = bentoml_serve(
        "bentos.service:SmokeDetector",
        tmp_path / "svc.log",
        env={"SMOKE_MODEL_TAG": served_model.version, "SMOKE_API_KEY": ""},
    )
    settings = make_settings(url, breaker_failures=1, breaker_reset_s=1.0, request_timeout_s=2.0)
    import os

    os.environ["SMOKE_MODEL_TAG"] = served_model.version  # what the local fallback loads
    worker = StreamWorker(settings)
    worker.open()
    try:
        _drain(worker, _produce(settings, 300, seed=7, sensors=2))
        assert worker.metrics.value("smoke_worker_fallback_active") == 0
        proc.stop()  # the service goes away mid-stream
        during_outage = _produce(settings, 300, seed=8, sensors=2)
        _drain(worker, during_outage)
        assert worker.metrics.value("smoke_worker_fallback_active") == 1
        assert worker.metrics.value("smoke_worker_scored_total", scored_by="local") >= 300
        proc, _ = bentoml_serve(
            "bentos.service:SmokeDetector",
            tmp_path / "svc2.log",
            port=int(url.rsplit(":", 1)[1]),
            env={"SMOKE_MODEL_TAG": served_model.version, "SMOKE_API_KEY": ""},
        )
        time.sleep(1.2)
        # The first batch after the reset time is scored locally while a probe checks the
        # service in the background; once it answered, batches go to the service again.
        probing = _produce(settings, 300, seed=9, sensors=2)
        _drain(worker, probing)
        time.sleep(1.0)
        _drain(worker, _produce(settings, 300, seed=10, sensors=2))
        assert worker.metrics.value("smoke_worker_fallback_active") == 0
    finally:
        worker.close()
        proc.stop()
        os.environ.pop("SMOKE_MODEL_TAG", None)
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == 1_200
    assert set(preds["scored_by"]) == {"service", "local"}
    # The outage was a trouble signal of the platform's, restored when the service was back.
    trouble = [
        json.loads(m.value()) for m in read_topic(settings.kafka_bootstrap, settings.trouble_topic)
    ]
    fallback = [(t["kind"], t["event"]) for t in trouble if "scoring_fallback" in t["subject"]]
    assert fallback == [("platform", "open"), ("platform", "restored")]
    stored = read_outputs(settings.stream_dir, "trouble")
    stored = stored[stored["kind"] == "platform"]
    assert sorted(stored["trouble_id"] + stored["event"]) == sorted(
        t["trouble_id"] + t["event"] for t in trouble if t["kind"] == "platform"
    )
    # The fallback is the same promoted model: same probabilities as the model itself on
    # the readings and the rises the worker measured (each row carries what it scored).
    local = preds[preds["scored_by"] == "local"].sort_values(["sensor_id", "ts"])
    assert len(local) >= 300  # the outage (and batches scored while the probe ran)
    frame = pd.DataFrame(during_outage + probing)
    frame = frame[frame["ts"].isin(set(local["ts"]))].sort_values(["sensor_id", "ts"])
    np.testing.assert_array_equal(
        local[list(MEASUREMENTS)].to_numpy(), frame[list(MEASUREMENTS)].to_numpy()
    )
    assert (local[list(HISTORY_FIELDS)] > 0).any().all()  # the rises were measured
    np.testing.assert_allclose(
        local["probability"].to_numpy(), served_model.predict_proba(local), rtol=1e-9
    )


def _drain(worker, records, timeout=60):
    deadline, seen = time.monotonic() + timeout, 0
    while seen < len(records) and time.monotonic() < deadline:
        seen += worker.poll_once()
    assert seen == len(records)


def test_one_fire_one_alert_and_nuisance_none(make_settings, open_service, webhook):
    settings = make_settings(open_service, webhook_url=webhook.url)
    records = scenario_records(["wood_fire", "cooking_steam"], seconds=900, seed=11)
    produce(records, settings, echo=lambda *_: None)
    StreamWorker(settings).run(idle_stop_s=4)
    alerts = read_outputs(settings.stream_dir, "alerts")
    opened = alerts[alerts["event"] == "open"]
    assert list(opened["sensor_id"]) == ["sensor-000"]  # the wood fire
    assert "sensor-001" not in set(alerts["sensor_id"])  # the kitchen
    # The alert says why: three measurements, from the served model's clean-air profile.
    why = opened["drivers"].iloc[0]
    assert len(driver_names(why)) == 3 and set(driver_names(why)) <= set(EXPLAINED), why
    # ... and the served model's own reasons: its features' contributions (TreeSHAP).
    reasons = opened["reasons"].iloc[0]
    assert len(driver_names(reasons)) == 3 and "log-odds" in reasons, reasons
    assert set(driver_names(reasons)) <= set(MODEL_FEATURES), reasons
    # One notification, for the opened alert (sent before the worker exited).
    [post] = webhook.posts
    assert "sensor-000" in post["text"] and opened["alert_id"].iloc[0] in str(post["blocks"])
    assert why in post["text"] and reasons in post["text"]
    # The dashboard's latest-alerts table reads them from the topic, drivers and all; what
    # else a topic may hold (not JSON, not an object) is passed over.
    from confluent_kafka import Producer

    stray = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for junk in (b"not json", b"[1, 2]", b"null"):
        stray.produce(settings.alerts_topic, junk)
    stray.flush(10)
    recent = RecentAlerts(settings.kafka(), settings.alerts_topic, keep=5).start()
    port = free_port()
    server = serve(port, [], settings.service_url, alerts=recent)
    try:
        deadline = time.monotonic() + 30
        while not recent.events and time.monotonic() < deadline:
            time.sleep(0.2)
        api = httpx.get(f"http://127.0.0.1:{port}/api/summary", timeout=10).json()
        shown = [a for a in api["recent_alerts"] if a["event"] == "open"]
        assert [(a["sensor_id"], a["drivers"], a["reasons"]) for a in shown] == [
            ("sensor-000", why, reasons)
        ]
        assert not any("alerts topic" in e for e in api["errors"])
    finally:
        server.shutdown()
        server.server_close()
        recent.stop()


def test_a_new_incarnation_of_the_topic_is_processed_not_skipped(
    make_settings, open_service, tmp_path
):
    """Offsets restart at 0 when a topic is recreated (or an embedded broker restarts empty):
    the worker must not skip the new messages as 'already durable', nor lose the old rows."""
    from streaming.admin import create_topics, platform_topics
    from streaming.embedded import start_broker

    first = make_settings(open_service)
    produce(scenario_records(["normal_indoor"], seconds=120, seed=1), first, echo=lambda *_: None)
    StreamWorker(first).run(idle_stop_s=4)
    assert len(read_outputs(first.stream_dir, "predictions")) == 120
    broker, bootstrap = start_broker(tmp_path / "second-broker.log")
    try:
        again = first.model_copy(update={"kafka_bootstrap": bootstrap})
        create_topics(bootstrap, platform_topics(again))
        produce(scenario_records(["wood_fire"], seconds=90, seed=2), again, echo=lambda *_: None)
        StreamWorker(again).run(idle_stop_s=4)
    finally:
        broker.stop()
    preds = read_outputs(first.stream_dir, "predictions")
    assert len(preds) == 210  # 120 from the first incarnation (kept) + 90 new
    assert set(preds["scenario"]) == {"normal_indoor", "wood_fire"}
    states = [json.loads(p.read_text()) for p in tmp_path.glob("stream-*/_state/*.json")]
    assert states and len({s.get("topic_id") for s in states}) == 1  # the new topic's id


def test_a_worker_started_before_its_broker_learns_the_topics_id_when_assigned(
    make_settings, open_service, tmp_path, caplog
):
    """No broker answers at start (it is still starting): the worker waits, and learns the
    topic's id once its group assigns it partitions, so its state and table transactions
    name this incarnation of the topic (a recreated topic is then recognised)."""
    import logging

    from streaming.admin import create_topics, platform_topics, topic_id
    from streaming.embedded import start_broker

    port = free_port()
    settings = make_settings(open_service).model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{port}"}
    )
    worker = StreamWorker(settings)
    worker.call_timeout_s = 180.0  # init_transactions waits for the broker still starting
    caplog.set_level(logging.WARNING, logger="smoke")
    runner = threading.Thread(target=worker.run, kwargs={"idle_stop_s": 6}, daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while not any("topic id of" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline and runner.is_alive(), caplog.text
        time.sleep(0.2)
    broker, bootstrap = start_broker(tmp_path / "late-broker.log", port)
    try:
        create_topics(bootstrap, platform_topics(settings))
        produce(scenario_records(["normal_indoor"], seconds=60, seed=3), settings, echo=print)
        runner.join(timeout=240)
        assert not runner.is_alive()
        known = topic_id(settings)
    finally:
        broker.stop()
    assert known and len(read_outputs(settings.stream_dir, "predictions")) == 60
    states = [json.loads(p.read_text()) for p in tmp_path.glob("stream-*/_state/*.json")]
    assert states and {s.get("topic_id") for s in states} == {known}


def test_a_restarted_worker_keeps_its_open_platform_signal_and_restores_it(
    make_settings, open_service, served_model
):
    """The service is down across a restart of the worker: one `scoring_fallback` signal,
    not one per run; the run that sees the service again restores that one."""
    from streaming.scoring import CircuitBreaker, FallbackScorer, LocalScorer, RemoteScorer

    settings = make_settings()  # a service URL nothing answers

    def without_service():
        return FallbackScorer(
            RemoteScorer(settings.service_url, "", 2.0),
            LocalScorer(served_model.version),
            CircuitBreaker(3, 30.0),
        )

    for seed in (21, 22):  # two runs of the same instance, the service down in both
        _produce(settings, 50, seed=seed, sensors=2)
        StreamWorker(settings, scorer=without_service()).run(idle_stop_s=4)
    _produce(settings, 50, seed=23, sensors=2)
    StreamWorker(settings.model_copy(update={"service_url": open_service})).run(idle_stop_s=4)
    _assert_opened_and_restored_once(settings, "scoring_fallback")
    assert len(read_outputs(settings.stream_dir, "predictions")) == 150
    # A signal of a transaction that failed was never stored: the rewind forgets it too.
    worker = StreamWorker(settings)
    worker.platform_stored = {"consumer_lag": 1.0}
    worker.platform.open = dict(worker.platform_stored)
    assert worker.platform.update("scoring_fallback", True, 2.0, "down")
    worker._rewind()
    assert worker.platform.open == {"consumer_lag": 1.0}
    worker.consumer.close()


def _assert_opened_and_restored_once(settings, condition: str) -> None:
    """The platform signal `condition` on the trouble topic: one open, one restored."""
    trouble = [
        json.loads(m.value()) for m in read_topic(settings.kafka_bootstrap, settings.trouble_topic)
    ]
    mine = [t for t in trouble if t["subject"].startswith(f"{condition}:")]
    assert [t["event"] for t in mine] == ["open", "restored"], mine
    assert len({t["trouble_id"] for t in mine}) == 1


def test_a_backlog_is_a_consumer_lag_signal_restored_once_caught_up(make_settings, open_service):
    """Far behind its topic at start (more than SMOKE_TROUBLE_LAG_MESSAGES), the worker
    says so as a platform trouble signal, and restores it once it has caught up."""
    settings = make_settings(open_service, trouble_lag_messages=40, batch_size=20)
    _produce(settings, 600, seed=31, sensors=3)
    StreamWorker(settings).run(idle_stop_s=4)
    _assert_opened_and_restored_once(settings, "consumer_lag")
    assert len(read_outputs(settings.stream_dir, "predictions")) == 600


def test_no_model_to_score_with_ends_the_worker_and_dead_letters_nothing(
    make_settings, open_service
):
    """The service is down and the local model cannot be loaded (none promoted): good
    readings are not the fault. The worker ends naming the problem, commits nothing and
    dead-letters nothing; a worker that has a model then scores every reading."""
    from streaming.scoring import (
        CircuitBreaker,
        FallbackScorer,
        LocalScorer,
        ModelUnavailable,
        RemoteScorer,
    )

    settings = make_settings()  # a service URL nothing answers
    produce(scenario_records(["normal_indoor"], seconds=30, seed=4), settings, echo=print)
    scorer = FallbackScorer(
        RemoteScorer(settings.service_url, "", 2.0),
        LocalScorer("smoke_detector:nosuchversion"),
        CircuitBreaker(3, 30.0),
    )
    with pytest.raises(ModelUnavailable, match="smoke_detector:nosuchversion"):
        StreamWorker(settings, scorer=scorer).run(idle_stop_s=10)
    # The same instance with the service: it fences the transaction left open, and finds
    # every reading still to do (no offset committed, none dead-lettered).
    scored = settings.model_copy(update={"service_url": open_service})
    StreamWorker(scored).run(idle_stop_s=4)
    assert len(read_outputs(settings.stream_dir, "predictions")) == 30
    assert read_topic(settings.kafka_bootstrap, settings.dlq_topic) == []


def test_oversized_and_coerced_messages_never_stop_the_worker(make_settings, open_service):
    """A 1.0 MB and a 5 MB message (the input topic holds up to 6 MB) and readings with
    numbers sent as strings, mixed with good neighbours: the worker stays alive, the
    oversized ones go to the DLQ cut to the limit (with their size), the coerced ones go
    there as wrong types, every good reading is scored exactly once, and a restart
    reprocesses nothing."""
    from streaming.admin import create_topics

    base = make_settings(open_service)
    settings = base.model_copy(update={"topic": f"{base.topic}-big"})
    create_topics(
        settings.kafka_bootstrap, {settings.topic: 3}, config={"max.message.bytes": "6291456"}
    )
    goods = list(itertools.islice(live_source(seed=5, sensors=2), 40))
    producer = ReadingProducer(settings, **{"message.max.bytes": 7_000_000})
    for i, good in enumerate(goods):
        if i % 4 == 1:  # numbers as strings: not JSON numbers
            coerced = {**good, "temperature_c": str(good["temperature_c"]), "fire_alarm": "0"}
            producer.send_raw(json.dumps(coerced).encode(), good["sensor_id"].encode())
        else:
            producer.send(good)
        if i == 10:
            producer.send_raw(b'{"sensor_id": "' + b"a" * 1_000_000 + b'"}', b"big-1")
        if i == 20:
            producer.send_raw(b"x" * 5_000_000, b"big-5")
    assert producer.flush() == 0 and producer.stats.failed == 0
    StreamWorker(settings).run(idle_stop_s=4)
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == 30 and not preds.duplicated(["partition", "offset"]).any()
    assert preds["temperature_c"].dtype == "float64"
    dlq = read_topic(settings.kafka_bootstrap, settings.dlq_topic)
    reasons = Counter(dict(m.headers())["reason"] for m in dlq)
    assert reasons == {b"oversized": 2, b"wrong_type": 10}
    big = sorted(
        (m for m in dlq if dict(m.headers())["reason"] == b"oversized"),
        key=lambda m: int(dict(m.headers())["original_bytes"]),
    )
    assert [dict(m.headers())["original_bytes"] for m in big] == [b"1000017", b"5000000"]
    assert all(len(m.value()) == settings.max_message_bytes for m in big)
    assert len(read_topic(settings.kafka_bootstrap, settings.predictions_topic)) == 30
    again = StreamWorker(settings)
    again.run(idle_stop_s=3)
    assert again.metrics.value("smoke_worker_consumed_total") == 0


def test_a_row_the_files_cannot_hold_is_dead_lettered_not_retried_forever(
    make_settings, open_service
):
    """A validated reading whose row the Parquet files still cannot hold: validation has
    no such gap today, so the fault is injected after validation (a session id no UTF-8
    file can store). The real sink check dead-letters it with the reason, its neighbours
    are scored once, the worker stays alive, and a restart reprocesses nothing."""
    settings = make_settings(open_service)
    goods = list(itertools.islice(live_source(seed=9, sensors=2), 30))
    stats = produce(goods, settings, echo=lambda *_: None)
    assert stats.delivered == 30
    worker = StreamWorker(settings)
    validate = worker.core.validate

    def with_a_gap(msgs, poisoned=None):
        valid, dead = validate(msgs, poisoned)
        for _, record in valid:
            if record["ts"] == goods[7]["ts"] and record["sensor_id"] == goods[7]["sensor_id"]:
                record["session_id"] = "\ud800"
        return valid, dead

    worker.core.validate = with_a_gap
    worker.run(idle_stop_s=4)
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == 29 and not preds.duplicated(["partition", "offset"]).any()
    [letter] = read_topic(settings.kafka_bootstrap, settings.dlq_topic)
    headers = dict(letter.headers())
    assert headers["reason"] == b"sink_rejected" and b"surrogates" in headers["error"]
    assert json.loads(letter.value())["ts"] == goods[7]["ts"]
    assert len(read_topic(settings.kafka_bootstrap, settings.predictions_topic)) == 29
    again = StreamWorker(settings)
    again.run(idle_stop_s=3)
    assert again.metrics.value("smoke_worker_consumed_total") == 0


def test_a_frozen_service_costs_at_most_one_deadline(make_settings, served_model, tmp_path):
    """The service hangs (SIGSTOP) for 15 s under 100 readings/s: the batch in flight waits
    one scoring deadline, then everything is scored locally until a background probe finds
    the service again. No reading waits longer than the deadline plus one batch interval
    (plus producing and committing the batch)."""
    import os
    import threading

    from streaming.demo import latency_ms, wait_for_assignment

    proc, url = bentoml_serve(
        "bentos.service:SmokeDetector",
        tmp_path / "svc.log",
        env={"SMOKE_MODEL_TAG": served_model.version, "SMOKE_API_KEY": ""},
    )
    deadline, interval = 0.5, 0.2
    settings = make_settings(
        url, scoring_deadline_s=deadline, poll_timeout_s=interval, breaker_reset_s=2.0
    )
    os.environ["SMOKE_MODEL_TAG"] = served_model.version  # what the local fallback loads
    worker = StreamWorker(settings)
    runner = threading.Thread(target=worker.run, kwargs={"idle_stop_s": 6}, daemon=True)
    try:
        runner.start()
        wait_for_assignment(worker)
        sender = threading.Thread(
            target=produce,
            args=(live_source(seed=12, sensors=10), settings),
            kwargs={"count": 3_000, "speed": 10.0, "stamp_now": True, "echo": lambda *_: None},
        )
        sender.start()  # 10 sensors at 10x = 100 readings/s for 30 s
        time.sleep(6)
        assert worker.scorer.local.ready  # loaded at start, not when the service fails
        proc.freeze()
        time.sleep(15)
        proc.freeze(False)
        sender.join(120)
        runner.join(120)
    finally:
        proc.freeze(False)
        proc.stop()
        os.environ.pop("SMOKE_MODEL_TAG", None)
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == 3_000
    waits = latency_ms(preds) / 1000
    budget = deadline + interval + 0.3  # 0.3 s: produce, commit, clocks
    print(f"frozen service: max wait {waits.max():.3f} s, p99 {waits.quantile(0.99):.3f} s")
    assert waits.max() <= budget, waits.sort_values().tail(5).tolist()
    by = preds.sort_values("ts")["scored_by"]
    assert by.iloc[0] == "service" and by.iloc[-1] == "service"  # the probe closed it
    assert (by == "local").sum() >= 1_000  # the 15 s of the freeze


def _committed(settings, partitions: int = 3) -> dict[int, int]:
    """The group's committed offset per partition of the input topic."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(settings.kafka(**{"group.id": settings.group_id}))
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


def test_at_least_once_a_kill_may_publish_twice_but_the_tables_hold_each_reading_once(
    make_settings, open_service, tmp_path
):
    settings = make_settings(
        open_service,
        batch_size=200,
        processing_guarantee="at_least_once",
        table_commit_interval_s=1.0,
    )
    records = scenario_records(["wood_fire"] * 3, seconds=1_100, seed=1)
    produce(records, settings, echo=lambda *_: None)
    proc = worker_process(settings, tmp_path / "worker1.log")
    proc.wait_until(
        lambda: len(read_outputs(settings.stream_dir, "predictions")) > 1_000,
        120,
        "writing predictions",
    )
    proc.kill()  # SIGKILL mid-stream: between a delivery and its offsets, perhaps
    restarted = worker_process(settings, tmp_path / "worker2.log")
    restarted.proc.wait(180)
    assert restarted.proc.returncode == 0, restarted.log_tail()

    published = read_topic(settings.kafka_bootstrap, settings.predictions_topic)
    keys = Counter(
        (json.loads(m.value())["partition"], json.loads(m.value())["offset"]) for m in published
    )
    preds = read_outputs(settings.stream_dir, "predictions")
    stored = set(zip(preds["partition"], preds["offset"], strict=True))
    assert len(preds) == len(records) == len(stored)  # the tables: each reading once
    assert set(keys) == stored  # the topic: each reading at least once
    assert sum(keys.values()) >= len(records)
    ends = preds.groupby("partition")["offset"].max() + 1
    committed = {p: o for p, o in _committed(settings).items() if o >= 0}  # -1001: none
    assert committed == {int(p): int(o) for p, o in ends.items()}
    alerts = read_outputs(settings.stream_dir, "alerts")
    assert not alerts.duplicated(["alert_id", "event"]).any()
    assert (alerts["event"] == "open").sum() == 3


def test_a_quiet_stream_is_scored_without_waiting_for_a_batch_to_fill(make_settings, open_service):
    """poll_timeout_s bounds the wait for a first message; a batch is what has arrived."""
    settings = make_settings(open_service, batch_size=5_000, poll_timeout_s=30.0)
    _produce(settings, 12, seed=5, sensors=3)
    worker = StreamWorker(settings)
    started = time.monotonic()
    worker.open()
    try:
        handled = 0
        while handled < 12 and time.monotonic() - started < 25:
            handled += worker.poll_once()
        # All 12 within 25 s, group join included: a consume of a whole batch would have
        # waited the full 30 s for 5,000 messages that never come.
        assert handled == 12
        assert time.monotonic() - started < 25
    finally:
        worker.close()


def test_the_stream_goes_on_while_a_table_commit_runs_and_states_follow_the_tables(
    make_settings, open_service
):
    """The periodic table commit runs on a thread of its own: batches are handled while it
    runs, and no partition's state is written before its rows are in the tables."""
    settings = make_settings(open_service, batch_size=50, table_commit_interval_s=0.05)
    records = _produce(settings, 600, seed=4, sensors=3)
    worker = StreamWorker(settings)
    committing, release = threading.Event(), threading.Event()
    append = worker.flush_tables.append

    def held(*args, **kwargs):  # the commit thread's first table commit, held open
        committing.set()
        assert release.wait(120)
        return append(*args, **kwargs)

    worker.flush_tables.append = held
    worker.open()
    try:
        handled, deadline = 0, time.monotonic() + 90
        while not committing.is_set() and time.monotonic() < deadline:
            handled += worker.poll_once()
        assert committing.is_set(), "no table commit started"
        during = 0
        while handled + during < len(records) and time.monotonic() < deadline:
            during += worker.poll_once()
        assert during > 0 and handled + during == len(records)  # the stream went on
        assert read_outputs(settings.stream_dir, "predictions").empty
        assert all(worker.sink.load(p).get("hwm", -1) < 0 for p in range(3))
        release.set()
    finally:
        release.set()
        worker.close()
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == len(records) and not preds.duplicated(["partition", "offset"]).any()
    ends = preds.groupby("partition")["offset"].max()
    assert {p: worker.sink.load(p)["hwm"] for p in ends.index} == ends.to_dict()


def test_a_table_commit_failing_behind_the_stream_is_raised_and_loses_nothing(
    make_settings, open_service
):
    """A failed commit on the commit thread (a full disk) is raised on the polling thread
    at its next poll (the supervisor restarts the worker); what it held is committed with
    what came after it by the worker's close."""
    settings = make_settings(open_service, batch_size=50, table_commit_interval_s=0.05)
    _produce(settings, 300, seed=6, sensors=3)
    worker = StreamWorker(settings)
    append, failed = worker.flush_tables.append, threading.Event()

    def disk_full(*_args, **_kwargs):  # a fault this test cannot cause for real
        failed.set()
        raise OSError(28, "No space left on device")

    worker.flush_tables.append = disk_full
    worker.open()
    handled, deadline = 0, time.monotonic() + 90
    with pytest.raises(OSError, match="No space"):
        while time.monotonic() < deadline:
            handled += worker.poll_once()
    assert failed.is_set() and read_outputs(settings.stream_dir, "predictions").empty
    done = {p: state.hwm for p, state in worker.core.states.items() if state.hwm >= 0}
    assert handled > 0 and done
    worker.flush_tables.append = append  # the disk has room again
    worker.close()
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == sum(last + 1 for last in done.values())  # every reading handled
    assert not preds.duplicated(["partition", "offset"]).any()
    assert preds.groupby("partition")["offset"].max().to_dict() == done
    assert {p: worker.sink.load(p)["hwm"] for p in done} == done
