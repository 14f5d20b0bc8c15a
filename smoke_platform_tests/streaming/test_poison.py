"""No message can stop the worker or hold a partition (a real broker, a real service).

- A corpus of hostile bytes between good readings: the worker stays up, every bad message
  is in the dead-letter topic once with its reason, every good reading is scored once.
- The poison guard: a fault the decoder cannot handle (a test double of the decoder: such a
  fault cannot be caused for real any more) fails the batch around one message; raised in
  process, or crashing the process at every attempt, the message ends in the dead-letter
  topic alone with reason `poison` and the partition moves on.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from smoke_platform.core.settings import environment
from smoke_platform_tests.hostile_bytes import (
    HOSTILE_ESCAPES,
    INVALID_UTF8,
    PREFIXES,
    every_string_filled,
    message,
)
from streaming.admin import read_topic
from streaming.alerts import AlertConfig
from streaming.processor import InMessage, Processor
from streaming.producer import ReadingProducer, live_source
from streaming.tables import read_outputs
from streaming.worker import StreamWorker

pytestmark = [pytest.mark.kafka, pytest.mark.bentoml]

PILL = "POISON-PILL"


def _corpus(good: bytes) -> list[bytes]:
    """A sample of the byte-level corpus: the reported case, invalid UTF-8 in strings,
    hostile escapes, prefixes, NUL, a cut and random-looking bytes."""
    filled = every_string_filled(good)
    out = [good.replace(b'"sensor-', b'"\xff\xfe\xfa', 1), *filled[:: max(1, len(filled) // 20)]]
    at = good.index(b'"scenario": "') + len(b'"scenario": "')
    out += [good[:at] + esc + good[at:] for esc in HOSTILE_ESCAPES]
    out += [p + good for p in PREFIXES if p.strip()]  # (whitespace first is valid JSON)
    out += [good[:-7], good.replace(b":", b"\x00:", 1), bytes(range(256)), *INVALID_UTF8]
    return out


def _sent(settings, goods, bads):
    """Goods with a bad one after every third; returns the bad ones' values in order."""
    producer = ReadingProducer(settings)
    queue = list(bads)
    for i, good in enumerate(goods):
        producer.send(good)
        if i % 3 == 2 and queue:
            producer.send_raw(queue.pop(0), good["sensor_id"].encode())
    for raw in queue:
        producer.send_raw(raw, b"tail")
    assert producer.flush() == 0 and producer.stats.failed == 0


def _expected(bads: list[bytes], max_bytes: int) -> dict[bytes, str]:
    """What the core decides of each bad message, in process (a dead letter's reason)."""
    msgs = [InMessage("t", 0, i, None, v) for i, v in enumerate(bads)]
    valid, dead = Processor(AlertConfig(), max_bytes).validate(msgs)
    assert not valid  # every one of them is bad
    return {d.message.value: d.reason for d in dead}  # type: ignore[misc]


def test_hostile_bytes_between_good_readings_never_stop_the_worker(make_settings, open_service):
    settings = make_settings(open_service, batch_size=25)
    goods = list(itertools.islice(live_source(seed=31, sensors=3), 150))
    bads = _corpus(message(goods[0]))
    expected = _expected(bads, settings.max_message_bytes)
    _sent(settings, goods, bads)
    worker = StreamWorker(settings)
    worker.run(idle_stop_s=4)  # returns: it never died

    dlq = read_topic(settings.kafka_bootstrap, settings.dlq_topic)
    got = Counter((m.value(), dict(m.headers())["reason"].decode()) for m in dlq)
    assert got == Counter(expected.items())  # each once, with the core's reason
    assert got[(bads[0], "malformed_json")] == 1  # the reported case
    for value, reason in expected.items():
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            assert reason == "malformed_json", (value[:80], reason)
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == len(goods) and not preds.duplicated(["partition", "offset"]).any()
    assert sorted(preds["ts"]) == sorted(g["ts"] for g in goods)
    assert worker.metrics.value("smoke_worker_failed_batches_total") == 0


class _FragileProcessor(Processor):
    """The decoder's test double: a fault it cannot handle takes the batch down whenever the
    batch holds the pill (unless the guard already gave the pill up)."""

    def validate(self, msgs, poisoned=None):
        for m in msgs:
            if PILL.encode() in (m.value or b"") and (m.partition, m.offset) not in (
                poisoned or {}
            ):
                raise RuntimeError(f"decoder fault at offset {m.offset}")
        return super().validate(msgs, poisoned)


def _with_pill(settings, n_goods, at, seed):
    goods = list(itertools.islice(live_source(seed=seed, sensors=1), n_goods))
    producer = ReadingProducer(settings)
    for i, good in enumerate(goods):
        producer.send(good)
        if i == at:
            producer.send_raw(json.dumps({**good, "scenario": PILL}).encode(), b"pill")
    assert producer.flush() == 0
    return goods


def _assert_pill_alone_in_the_dlq(settings, goods):
    [letter] = read_topic(settings.kafka_bootstrap, settings.dlq_topic)
    headers = dict(letter.headers())
    assert headers["reason"] == b"poison", headers
    assert PILL.encode() in letter.value()
    preds = read_outputs(settings.stream_dir, "predictions")
    assert len(preds) == len(goods) and not preds.duplicated(["partition", "offset"]).any()
    assert PILL not in set(preds["scenario"])
    assert len(read_topic(settings.kafka_bootstrap, settings.predictions_topic)) == len(goods)
    return headers


def test_a_batch_that_keeps_failing_in_process_gives_up_only_its_poison(
    make_settings, open_service
):
    settings = make_settings(open_service, partitions=1, batch_size=40)
    goods = _with_pill(settings, 200, at=117, seed=32)
    worker = StreamWorker(settings)
    worker.core.__class__ = _FragileProcessor
    worker.run(idle_stop_s=4)  # never an exit
    headers = _assert_pill_alone_in_the_dlq(settings, goods)
    assert b"RuntimeError: decoder fault" in headers["error"]
    # Two failed batches, then the suspect range one by one: the pill failed twice alone.
    assert worker.metrics.value("smoke_worker_failed_batches_total") == 4
    assert worker.metrics.value("smoke_worker_dlq_total", reason="poison") == 1


# `smoke worker` in a child process whose decoder crashes the process on the pill (a fault
# no exception handler sees: the guard counts attempts before the work).
_CRASHING_WORKER = f"""
import os
import streaming.processor
from smoke_platform.cli import stream as cli

validate = streaming.processor.Processor.validate

def crashing(self, msgs, poisoned=None):
    for m in msgs:
        if b"{PILL}" in (m.value or b"") and (m.partition, m.offset) not in (poisoned or {{}}):
            os._exit(70)
    return validate(self, msgs, poisoned)

streaming.processor.Processor.validate = crashing
cli.worker(idle_stop=3)
"""


def test_a_message_that_crashes_the_worker_is_given_up_across_restarts(
    make_settings, open_service, tmp_path
):
    settings = make_settings(open_service, partitions=1, batch_size=40)
    goods = _with_pill(settings, 120, at=50, seed=33)
    script = tmp_path / "crashing_worker.py"
    script.write_text(_CRASHING_WORKER)
    env = environment(settings)
    import os

    codes = []
    for _ in range(8):  # the supervisor's part: restart it until it ends cleanly
        done = subprocess.run(
            [sys.executable, str(script)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
            cwd=Path(__file__).resolve().parents[2],
        )
        codes.append(done.returncode)
        if done.returncode == 0:
            break
    # Two crashes of the batch, two of the pill alone, then a clean run to the end.
    assert codes == [70, 70, 70, 70, 0], (codes, done.stderr[-2_000:])
    headers = _assert_pill_alone_in_the_dlq(settings, goods)
    assert b"process ended" in headers["error"]
