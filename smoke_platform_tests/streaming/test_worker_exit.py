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
