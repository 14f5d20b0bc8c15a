"""Closing the loop on a real broker: the worker raises an alert; an operator acknowledges
it and marks it a false alarm with `smoke alerts`; every reader sees the same state."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from smoke_platform.core.settings import environment
from streaming.broker import read_topic
from streaming.producer import produce, scenario_records
from streaming.worker import StreamWorker

pytestmark = [pytest.mark.kafka, pytest.mark.bentoml]


def _smoke(settings, *args):
    env = {**os.environ, **environment(settings)}
    return subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", "alerts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_operator_acknowledges_and_resolves_an_alert_every_reader_sees_it(
    make_settings, open_service
):
    settings = make_settings(open_service)
    produce(scenario_records(["wood_fire"], seconds=600, seed=11), settings, echo=lambda *_: None)
    StreamWorker(settings).run(idle_stop_s=4)
    listed = _smoke(settings, "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    [alert] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert alert["status"] == "open" and alert["source"] == "alert"

    acked = _smoke(settings, "ack", alert["alert_id"], "--by", "Ana")
    assert acked.returncode == 0, acked.stderr
    done = _smoke(
        settings, "resolve", alert["alert_id"], "--verdict", "false_alarm", "--by", "Ana",
        "--note", "burnt toast",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # On the compacted topic, keyed by the alert id, the last event holds the whole story.
    events = read_topic(settings.kafka_bootstrap, settings.verdicts_topic)
    assert [m.key().decode() for m in events] == [alert["alert_id"]] * 2
    last = json.loads(events[-1].value())
    assert (last["verdict"], last["acknowledged_by"], last["note"]) == (
        "false_alarm", "Ana", "burnt toast",
    )  # fmt: skip
    # Another process reads the same state.
    again = _smoke(settings, "ls", "--status", "resolved")
    assert again.returncode == 0 and alert["alert_id"] in again.stdout
    assert "false_alarm (burnt toast)" in again.stdout and "by Ana" in again.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["ack", "no-such-alert", "--by", "Ana"], "alert_id='no-such-alert'"),
        (["resolve", "X", "--verdict", "maybe", "--by", "Ana"], "verdict='maybe'"),
    ],
)
def test_bad_operator_input_is_refused_naming_the_field(make_settings, open_service, args, named):
    settings = make_settings(open_service)
    done = _smoke(settings, *args)
    assert done.returncode == 2
    assert named in done.stderr and "allowed" in done.stderr
    assert "Traceback" not in done.stderr
