"""`smoke worker` leaves when its worker ends, even with a producer it abandoned."""

import subprocess
import sys
from pathlib import Path

import pytest

# `smoke worker` in a child process whose worker ends with an abandoned producer; the
# producer's finalisation blocks at exit, as a librdkafka handle with a call that never
# returned may (the one fault simulated: it cannot be caused on demand).
_EXITING_WORKER = """
import sys, time, weakref
import streaming.worker
from smoke_platform.cli import stream as cli

class Producer:
    pass

class Worker:
    def __init__(self, settings):
        self.abandoned = []
    def install_signal_handlers(self):
        pass
    def run(self, idle_stop_s=None):
        stuck = Producer()
        weakref.finalize(stuck, time.sleep, 3600)  # its destruction never returns
        if sys.argv[1] == "abandoned":
            self.abandoned.append(stuck)
        if sys.argv[2] == "fails":
            raise RuntimeError("4 new producers within a minute")

streaming.worker.StreamWorker = Worker
cli.worker(idle_stop=None)
"""


@pytest.mark.parametrize("ending", ["fails", "stops"])
def test_a_worker_with_an_abandoned_producer_still_exits(ending, tmp_path):
    """The supervisor restarts a worker that exits; one that hangs on its way out (in a
    finaliser of the producer it abandoned) would never be restarted."""
    script = tmp_path / "exiting_worker.py"
    script.write_text(_EXITING_WORKER)
    done = subprocess.run(  # a worker that hangs on its way out: TimeoutExpired
        [sys.executable, str(script), "abandoned", ending],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    if ending == "fails":
        assert done.returncode == 1, done.stderr
        assert "worker failed" in done.stderr and "4 new producers" in done.stderr
    else:
        assert done.returncode == 0, done.stderr


def test_a_worker_without_an_abandoned_producer_fails_as_usual(tmp_path):
    script = tmp_path / "exiting_worker.py"
    script.write_text(_EXITING_WORKER.replace("time.sleep, 3600", "time.sleep, 0"))
    done = subprocess.run(
        [sys.executable, str(script), "kept", "fails"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert "RuntimeError: 4 new producers within a minute" in done.stderr


@pytest.mark.slow  # the worker's first request waits 10 s for an answer
def test_sigterm_while_no_broker_answers_ends_the_worker_at_once(tmp_path):
    """A worker waiting for brokers that never come (a wrong address, brokers still
    starting) stops on SIGTERM, as `docker stop` and `make down` expect: it does not go
    on retrying its start-up for minutes."""
    import os
    import signal
    import time

    from smoke_platform.procs import free_port

    env = {
        **os.environ,
        "SMOKE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "SMOKE_SERVICE_URL": "http://127.0.0.1:9",
        "SMOKE_WORKER_ID": "stop-test",
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smoke_platform.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "waiting for it" not in log.read_text():  # its first request went unanswered
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(12)  # into the start-up's retries
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    assert code == 0, log.read_text()
    assert time.monotonic() - stopped < 15
    assert "stop requested while waiting for the brokers" in log.read_text()
