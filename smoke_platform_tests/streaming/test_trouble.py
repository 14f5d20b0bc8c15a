"""Trouble signals on a real broker: a sensor that stops, a feed that stops, exactly once."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from smoke_platform.core.quality import STUCK_CHANNELS, STUCK_RUN_SECONDS
from smoke_platform_tests.streaming.conftest import worker_process
from streaming.admin import read_topic
from streaming.demo import wait_for_assignment
from streaming.producer import ReadingProducer, live_source
from streaming.tables import read_outputs
from streaming.worker import StreamWorker

pytestmark = [pytest.mark.kafka, pytest.mark.bentoml]


def _send_live(producer, sensors, seconds, hz=2.0):
    """Readings of `sensors`, stamped now, `hz` per sensor per second, for `seconds`."""
    source = live_source(seed=41, sensors=1)
    template = next(iter(source))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        stamp = datetime.now(UTC).isoformat()
        for sensor in sensors:
            producer.send({**template, "sensor_id": sensor, "ts": stamp})
        producer.flush(10)
        time.sleep(1.0 / hz)


def _running(settings):
    worker = StreamWorker(settings)
    thread = threading.Thread(target=worker.run, kwargs={"max_seconds": 600}, daemon=True)
    thread.start()
    wait_for_assignment(worker)
    return worker, thread


def _stop(worker, thread):
    worker.stop()
    thread.join(60)
    assert not thread.is_alive()


def _trouble(settings):
    return [
        json.loads(m.value()) for m in read_topic(settings.kafka_bootstrap, settings.trouble_topic)
    ]


def test_a_sensor_that_stops_is_silent_once_and_restored_when_it_resumes(
    make_settings, open_service
):
    settings = make_settings(open_service, partitions=1, silent_after_s=3.0)
    worker, thread = _running(settings)
    producer = ReadingProducer(settings)
    sensors = [f"room-{i}" for i in range(6)]
    try:
        _send_live(producer, sensors, 6)  # a full period caught up: armed
        stopped_at = time.time()
        _send_live(producer, sensors[1:], 6)  # room-0 stops
        _send_live(producer, sensors, 3)  # and comes back
    finally:
        _stop(worker, thread)
    trouble = _trouble(settings)
    assert [(t["kind"], t["event"], t["subject"]) for t in trouble] == [
        ("silent", "open", "room-0"),
        ("silent", "restored", "room-0"),
    ]
    opened = datetime.fromisoformat(trouble[0]["ts"]).timestamp()
    since = datetime.fromisoformat(trouble[0]["since"]).timestamp()
    # Within its bound (max(3 s, 10 x its 0.5 s interval)) plus one supervision tick and one
    # poll of its last reading.
    bound = max(settings.silent_after_s, 10 * 0.5)
    assert "bound 5 s" in trouble[0]["detail"]
    assert bound <= opened - since <= bound + 1.0 + settings.poll_timeout_s + 0.5, trouble[0]
    assert since <= stopped_at + 0.5
    stored = read_outputs(settings.stream_dir, "trouble")
    assert sorted(stored["trouble_id"] + stored["event"]) == sorted(
        t["trouble_id"] + t["event"] for t in trouble
    )
    assert worker.metrics.value("smoke_worker_trouble_total", kind="silent", event="open") == 1


def test_a_producer_of_200_sensors_stopping_is_one_feed_silent(make_settings, open_service):
    settings = make_settings(open_service, partitions=1, silent_after_s=3.0)
    worker, thread = _running(settings)
    producer = ReadingProducer(settings)
    try:
        _send_live(producer, [f"floor-{i:03d}" for i in range(200)], 6, hz=4.0)
        time.sleep(6)  # the producer is down; the worker is caught up
        assert worker.metrics.value("smoke_worker_sensors", state="silent") == 200
    finally:
        _stop(worker, thread)
    trouble = _trouble(settings)
    assert [(t["kind"], t["event"], t["sensors"]) for t in trouble] == [
        ("feed_silent", "open", 200)
    ]


class _Feed(threading.Thread):
    """Live readings of `sending` (changeable while it runs), 2 per sensor per second."""

    def __init__(self, settings, sensors):
        super().__init__(daemon=True)
        self.settings, self.sending, self.done = settings, set(sensors), threading.Event()

    def run(self):
        producer = ReadingProducer(self.settings)
        while not self.done.is_set():
            _send_live(producer, sorted(self.sending), 0.5)

    def stop(self):
        self.done.set()
        self.join(30)


def test_a_worker_killed_and_restarted_on_a_backlog_raises_each_signal_once_and_no_false_silence(
    make_settings, open_service, tmp_path
):
    settings = make_settings(open_service, partitions=1, silent_after_s=3.0)
    sensors = [f"room-{i}" for i in range(6)]
    feed = _Feed(settings, sensors)
    feed.start()
    worker = worker_process(settings, tmp_path / "worker1.log", idle_stop=120)
    restarted = None
    try:
        worker.wait_until(
            lambda: len(read_outputs(settings.stream_dir, "predictions")) > 0, 120, "scoring"
        )
        time.sleep(6)  # a full period caught up: silence is judged
        feed.sending.discard("room-0")
        worker.wait_until(lambda: _trouble(settings), 30, "raising room-0's silence")
        worker.kill()  # SIGKILL, mid-stream
        time.sleep(6)  # the others keep sending: a backlog longer than any bound
        before = len(read_outputs(settings.stream_dir, "predictions"))
        restarted = worker_process(settings, tmp_path / "worker2.log", idle_stop=120)
        restarted.wait_until(
            lambda: len(read_outputs(settings.stream_dir, "predictions")) > before + 60,
            120,
            "catching up",
        )
        time.sleep(8)  # caught up, judging again, the five still sending
    finally:
        feed.stop()
        if restarted is not None:
            assert restarted.stop() == 0, restarted.log_tail()
        worker.stop()
    trouble = _trouble(settings)
    # room-0's silence once (not again after the restart), none for those that kept sending.
    assert [(t["kind"], t["event"], t["subject"]) for t in trouble] == [
        ("silent", "open", "room-0")
    ], trouble
    stored = read_outputs(settings.stream_dir, "trouble")
    assert sorted(stored["trouble_id"] + stored["event"]) == sorted(
        t["trouble_id"] + t["event"] for t in trouble
    )


def test_a_channel_stuck_on_one_value_raises_stuck_and_restored_when_it_moves(
    make_settings, open_service
):
    settings = make_settings(open_service, partitions=1)
    template = next(iter(live_source(seed=41, sensors=1)))
    producer = ReadingProducer(settings)
    start = datetime.now(UTC).timestamp() - 3_600
    # Temperature frozen for the batch check's run; every other channel moves.
    for i in range(STUCK_RUN_SECONDS + 20):
        stamp = datetime.fromtimestamp(start + i, UTC).isoformat()
        moving = {c: template[c] * (1 + 0.001 * (i % 7)) for c in STUCK_CHANNELS[1:]}
        frozen = i < STUCK_RUN_SECONDS + 10
        temperature = template["temperature_c"] + (0 if frozen else 0.1 * (i % 3 + 1))
        producer.send(
            {**template, **moving, "temperature_c": temperature, "sensor_id": "lab-1", "ts": stamp}
        )
    assert producer.flush(10) == 0
    StreamWorker(settings).run(idle_stop_s=4)
    trouble = _trouble(settings)
    assert [(t["kind"], t["event"], t["subject"]) for t in trouble] == [
        ("stuck", "open", "lab-1"),
        ("stuck", "restored", "lab-1"),
    ], trouble
    assert "temperature_c" in trouble[0]["detail"]
