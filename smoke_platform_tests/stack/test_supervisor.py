"""`smoke up`'s supervisor: restarts a crashed process, not one that a setting stops."""

import json
import signal
import sys

import pytest

from smoke_platform.errors import EXIT_CONFIG
from smoke_platform.procs import Supervisor


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """`Supervisor.run` installs its SIGTERM/SIGINT handlers: pytest's come back after."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_exit_code_78_is_a_wrong_setting_and_is_not_restarted(tmp_path, capsys):
    runs = tmp_path / "runs"
    script = f"open({str(runs)!r}, 'a').write('x'); raise SystemExit({EXIT_CONFIG})"
    status = tmp_path / "status.json"
    sup = Supervisor("worker", [sys.executable, "-c", script], status, min_backoff_s=0.1)
    assert sup.run() == EXIT_CONFIG
    assert runs.read_text() == "x" and sup.restarts == 0
    state = json.loads(status.read_text())
    assert state["state"] == "failed" and state["last_exit"] == EXIT_CONFIG
    assert "a setting is wrong" in capsys.readouterr().out


def test_a_crash_is_restarted(tmp_path):
    runs = tmp_path / "runs"
    script = (
        f"import pathlib; p = pathlib.Path({str(runs)!r}); "
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); "
        "raise SystemExit(0 if len(p.read_text()) >= 3 else 1)"
    )
    sup = Supervisor("worker", [sys.executable, "-c", script], tmp_path / "s.json", 0.05, 0.1)
    assert sup.run() == 0
    assert runs.read_text() == "xxx" and sup.restarts == 2
