"""The producer CLI against a real broker: SIGTERM (as `make down` or `docker stop` send)
stops it cleanly with every reading it sent delivered."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from streaming.admin import read_topic

pytestmark = pytest.mark.kafka


def test_sigterm_delivers_everything_sent_then_exits(make_settings):
    settings = make_settings()
    env = {
        **os.environ,
        "SMOKE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SMOKE_TOPIC": settings.topic,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "smoke_platform.cli", "produce", "--sensors", "4", "--speed", "20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Signal only once it is sending (its first progress line), not while it starts up.
    assert proc.stdout is not None
    head = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        head.append(line)
        if line.startswith("sent ") or not line:
            break
    assert head[-1].startswith("sent "), "".join(head)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    out = "".join(head) + rest
    assert proc.returncode == 0, out
    assert "stopping: delivering what was already sent" in out
    done = re.search(r"done: sent ([\d,]+)\s+delivered ([\d,]+)\s+failed 0", out)
    assert done, out
    sent, delivered = (int(g.replace(",", "")) for g in done.groups())
    assert sent == delivered > 0
    assert len(read_topic(settings.kafka_bootstrap, settings.topic)) == delivered


def test_stop_ends_a_paced_replay_inside_a_long_gap():
    """A replay at 1 Hz timing waiting out a long gap between sessions stops at once."""
    import threading

    from smoke_platform.procs import StopFlag
    from streaming.producer import paced

    records = [{"ts": "2026-01-01T00:00:00+00:00"}, {"ts": "2026-01-01T01:00:00+00:00"}]
    stop = StopFlag()  # set from another thread
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    released = list(paced(records, speed=1.0, stop=stop))
    assert released == records[:1]  # the reading an hour later is never released
    assert time.monotonic() - started < 30


_SIGNALLED_STOPS = """
import random, signal, time
from smoke_platform.procs import StopFlag
from streaming.producer import paced
records = [{"ts": f"2026-01-01T00:00:{s:02d}+00:00"} for s in range(60)]
stops, started = 0, time.monotonic()
while time.monotonic() - started < 2:
    stop = StopFlag.on_signals(signal.SIGALRM)  # as the CLI installs it for SIGTERM
    signal.setitimer(signal.ITIMER_REAL, random.uniform(1e-5, 3e-3))
    assert len(list(paced(records, speed=1000.0, stop=stop))) < len(records)
    stops += 1
print(stops)
"""


def test_a_stop_set_by_a_signal_handler_at_any_moment_ends_the_replay():
    """The CLI's SIGTERM handler sets the stop flag wherever the main thread is, even on its
    way into or out of a pacing wait. With a threading.Event there, set() waits for the
    lock the interrupted wait holds, for ever: this script hung within its first few
    hundred stops with one (a producer that never exited in CI)."""
    cmd = [sys.executable, "-c", _SIGNALLED_STOPS]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("a stop set by a signal handler deadlocked the replay")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 100  # that many stops, each at a random moment


def test_readings_sent_by_hand_never_share_the_fleets_sensor_ids(make_settings):
    import json

    settings = make_settings()
    env = {
        **os.environ,
        "SMOKE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SMOKE_TOPIC": settings.topic,
    }
    cmd = [sys.executable, "-m", "smoke_platform.cli", "produce", "--sensors", "3"]
    sent = subprocess.run([*cmd, "--count", "30"], env=env, capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr
    assert "sensor ids: manual-000, manual-001, manual-002" in sent.stdout
    values = [json.loads(m.value()) for m in read_topic(settings.kafka_bootstrap, settings.topic)]
    assert {v["sensor_id"] for v in values} == {"manual-000", "manual-001", "manual-002"}
    assert all(v["session_id"].startswith("manual-") for v in values)
    # The fleet `smoke up` runs keeps its own ids; a prefix outside the id contract is refused.
    from smoke_platform.stack import StackConfig

    fleet = StackConfig().producer_args()
    assert fleet[fleet.index("--sensor-prefix") + 1] == "sensor-"
    bad = subprocess.run([*cmd, "--sensor-prefix", "a/b"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "--sensor-prefix='a/b'" in bad.stderr + bad.stdout
