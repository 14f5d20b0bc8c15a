"""`smoke demo` as a user runs it (what `make demo` runs after installing): end to end on
embedded defaults, quiet, with a summary of what to open, in a folder of its own."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.dagster, pytest.mark.kafka, pytest.mark.spark]


SECRETS = ("demo-key-" + "Qw3rT7yU", "kafka-pw-" + "Zx8Cv2Bn")  # whole only in memory


def test_the_demo_runs_end_to_end_quietly_and_leaves_what_was_there(tmp_path):
    home = tmp_path / "home"
    marker = home / "data" / "processed_stream" / "predictions" / "date=2026-01-01" / "mine.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("a deployment's file")
    (tmp_path / "dagster").mkdir()  # as `make demo` prepares it
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "SMOKE_HOME": str(home),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "SMOKE_STREAM_DIR": str(home / "data" / "processed_stream"),  # ignored by the demo
        # Secrets in the environment (the demo's own service is open, its broker PLAINTEXT):
        # whatever the demo prints or writes, neither may appear in it.
        "SMOKE_API_KEY": SECRETS[0],
        "SMOKE_KAFKA_SASL_PASSWORD": SECRETS[1],
    }
    result = subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", "demo"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    lines = out.splitlines()
    assert not [line for line in lines if " - DEBUG - " in line], out[:3000]
    assert "Traceback" not in out
    assert len(lines) < 60, f"{len(lines)} lines:\n{out}"
    # Every report as one HTML file to open, and where everything is.
    reports = re.findall(r"^  \w+: (\S+\.html)$", out, re.MULTILINE)
    assert len(reports) == 5 and all(Path(r).is_file() for r in reports), out
    assert "ALERT open" in out and "ignores SMOKE_STREAM_DIR" in out
    # Each raised alert says which measurements drove it (the demo's champion's profile).
    assert re.search(r"why: \w+=\S+ \(normal \S+, z=[+-]\d", out), out
    # ... and what the model itself weighed: its features' contributions to the score.
    model_why = r"why \(the model\): \w+=\S+ \([+-]\d+\.\d\d (log-odds|probability)\)"
    assert re.search(model_why, out), out
    [run] = re.findall(r"stream outputs are under (\S+)/;", out, re.MULTILINE)
    assert re.search(r"Delta tables: alerts, predictions(, trouble)?\)", out), out
    assert Path(run).parent == home / "data" / "demo"
    assert all(Path(r).is_relative_to(run) for r in reports)
    # The reports ran while the demo's service was up: its health is a fact, not an alarm.
    [performance] = [Path(r) for r in reports if "/performance/" in r]
    assert ": ready; serving model" in performance.with_suffix(".md").read_text()
    assert marker.read_text() == "a deployment's file"
    assert sorted(p.name for p in marker.parent.iterdir()) == ["mine.txt"]
    written = [f for f in tmp_path.rglob("*") if f.is_file() and f.stat().st_size < 50_000_000]
    for secret in SECRETS:
        assert secret not in out
        assert not [str(f) for f in written if secret.encode() in f.read_bytes()]
