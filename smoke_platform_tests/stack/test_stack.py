"""The Docker-free stack end to end: `smoke up` starts broker, service, worker, producer,
Spark job and Dagster (webserver + daemon); a fire streams through to an alert, the daemon's
sensor runs a Dagster job that succeeds, and `smoke down` leaves no process behind."""

import json
import os
import subprocess
import sys
import time

import dagster as dg
import httpx
import pytest

from smoke_platform.procs import free_port, port_open
from streaming.tables import read_outputs

pytestmark = [pytest.mark.kafka, pytest.mark.bentoml, pytest.mark.spark, pytest.mark.dagster]


def _smoke(env, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"not within {timeout} s: {what}")


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


API_KEY = "stack-key-" + "7Hq2xZp9"  # built here: no file holds it whole but this one
KAFKA_PASSWORD = "kafka-pw-" + "Lm4Rt8Wv"


def test_stack_streams_a_fire_to_an_alert_runs_dagster_and_stops_cleanly(served_model, tmp_path):
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SMOKE_STACK_DIR": str(tmp_path / "stack"),
        "SMOKE_DATA_DIR": str(tmp_path / "data"),
        "SMOKE_REPORTS_DIR": str(tmp_path / "reports"),
        "SMOKE_STREAM_DIR": str(tmp_path / "stream"),
        "SMOKE_WINDOWED_DIR": str(tmp_path / "windowed"),
        "SMOKE_SPARK_CHECKPOINT_DIR": str(tmp_path / "checkpoint"),
        # Secrets every process gets and none may print: the service's API key (the worker,
        # the dashboard and Dagster send it) and a Kafka password. The shell's security
        # is a cluster's: the stack's own broker is PLAINTEXT, and the stack says so.
        "SMOKE_API_KEY": API_KEY,
        "SMOKE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SMOKE_KAFKA_SASL_USERNAME": "someone-elsewhere",
        "SMOKE_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        # The fixture's model is the champion (the initial training path is the demo's).
        "SMOKE_MODEL_TAG": served_model.version,
    }
    names = ("broker", "service", "dagster", "metrics", "dashboard")
    ports = {name: free_port() for name in names}
    up = _smoke(
        env, "up",
        "--broker-port", str(ports["broker"]), "--service-port", str(ports["service"]),
        "--dagster-port", str(ports["dagster"]), "--worker-metrics-port", str(ports["metrics"]),
        "--dashboard-port", str(ports["dashboard"]),
        "--scenario", "wood_fire", "--sensors", "2", "--speed", "10", "--count", "4000",
    )  # fmt: skip
    pids = json.loads((tmp_path / "stack" / "pids.json").read_text()) if up.returncode == 0 else {}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "SMOKE_KAFKA_SECURITY_PROTOCOL (set in this shell) is not used" in up.stdout
        assert list(pids) == [
            "broker", "service", "worker-0", "dashboard", "producer", "spark", "dagster"
        ]  # fmt: skip
        assert _smoke(env, "up").returncode != 0  # a second `up` refuses: already running
        service = f"http://127.0.0.1:{ports['service']}"
        assert httpx.get(f"{service}/readyz", timeout=10).status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10).text
        assert "smoke_worker_consumed_total" in metrics

        def fire_alert():
            alerts = read_outputs(tmp_path / "stream", "alerts")
            return not alerts.empty and (alerts["event"] == "open").any()

        _wait("an alert for the streamed fire", fire_alert, 240)
        dashboard = f"http://127.0.0.1:{ports['dashboard']}"

        def dashboard_shows_the_alarm():
            live = httpx.get(f"{dashboard}/api/summary", timeout=10).json()
            return live["predictions"] > 0 and live["alerts_opened"] >= 1

        _wait("the dashboard showing predictions and the alarm", dashboard_shows_the_alarm, 60)
        live = httpx.get(f"{dashboard}/api/summary", timeout=10).json()
        assert live["service_ready"] and live["alarms_by_sensor"] and not live["errors"]
        _screenshot(dashboard, tmp_path / "dashboard.png")

        # The worker is supervised: SIGKILLed, it is restarted and `smoke status` says so.
        status_file = tmp_path / "stack" / "status" / "worker-0.json"
        first_pid = json.loads(status_file.read_text())["pid"]
        os.kill(first_pid, 9)

        def restarted():
            st = json.loads(status_file.read_text())
            return st["state"] == "running" and st["restarts"] == 1 and st["pid"] != first_pid

        _wait("the supervisor restarting the killed worker", restarted, 60)
        status = _smoke(env, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        [line] = [ln for ln in status.stdout.splitlines() if ln.startswith("worker-0")]
        assert " up " in line and "restarts 1" in line and "last exit -9" in line

        def dagster_run_succeeded():
            with dg.DagsterInstance.from_config(str(home)) as instance:
                runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
                return any(r.job_name == "stream_outputs_job" for r in runs)

        # The daemon's stream_partition_sensor registers the day and runs the job.
        _wait("a successful Dagster run of stream_outputs_job", dagster_run_succeeded, 300)
    finally:
        down = _smoke(env, "down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "had to kill" not in down.stdout
    assert pids and not [name for name, pgid in pids.items() if _group_alive(pgid)]
    assert not [name for name, port in ports.items() if port_open(port)]
    # Logs that people read: no line repeats more than 10 times without new information
    # (times and run ids aside), e.g. one httpx line per request, one warning per tick.
    for name in ("dagster", "worker-0", "producer"):
        repeated = _repeated_lines(tmp_path / "stack" / "logs" / f"{name}.log", limit=10)
        assert not repeated, (name, repeated)
    # No secret in any log, report, state or output file, nor in `smoke config`.
    config = _smoke(env, "config")
    assert config.returncode == 0 and "SMOKE_API_KEY" in config.stdout
    written = [f for f in tmp_path.rglob("*") if f.is_file() and f.stat().st_size < 50_000_000]
    assert len(written) > 20
    for secret in (API_KEY, KAFKA_PASSWORD):
        assert secret not in config.stdout + config.stderr
        leaked = [str(f) for f in written if secret.encode() in f.read_bytes()]
        assert not leaked, leaked


def _screenshot(url, path):
    """The page in Debian's headless Chromium (`make test` installs it): the tiles filled
    in from the live stream, saved for people to look at."""
    import shutil

    from playwright.sync_api import sync_playwright

    from smoke_platform_tests.ui.test_dagster_ui import CHROMIUM_ARGS

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required (make test installs it when run as root)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(url, wait_until="load", timeout=60_000)
            page.wait_for_function(
                "() => document.querySelector('#t-predictions b').textContent !== '-'"
                " && document.querySelectorAll('#alarms td').length >= 3"
                " && !document.querySelector('#alarms').innerText.includes('none yet')"
                " && document.querySelector('#chart polyline').getAttribute('points')"
                ".split(' ').length >= 2",
                timeout=60_000,
            )
            page.screenshot(path=str(path), full_page=True)
            text = page.inner_text("body")
        finally:
            browser.close()
    assert "predictions" in text and ("warning" in text or "critical" in text), text[:1000]
    print(f"screenshot: {path}")


def _repeated_lines(path, limit):
    import re
    from collections import Counter

    stamp = r"\d{2,4}[-/]\d\d[-/]\d\d[ T]\d\d:\d\d:\d\d[.,\d]*( ?[+-]\d{4}| ?Z)?"
    ident = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    shapes = Counter(
        re.sub(ident, "<id>", re.sub(stamp, "<time>", line)).strip()
        for line in path.read_text(errors="replace").splitlines()
        if line.strip()
    )
    return {shape[:200]: n for shape, n in shapes.items() if n > limit}
