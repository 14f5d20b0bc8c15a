"""Closing the loop on a real broker: the worker raises an alert; an operator acknowledges
it and marks it a false alarm with `smoke alerts`; every reader sees the same state."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from smoke_platform.core.settings import environment
from streaming.admin import read_topic
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


@pytest.mark.ui
def test_an_operator_marks_a_false_alarm_in_the_dashboard_and_a_second_dashboard_sees_it(
    make_settings, open_service, tmp_path
):
    import shutil

    import httpx
    from playwright.sync_api import sync_playwright
    from pydantic import SecretStr

    from smoke_platform.dashboard import serve
    from smoke_platform.procs import ManagedProcess, free_port
    from smoke_platform_tests.ui.test_dagster_ui import CHROMIUM_ARGS

    settings = make_settings(open_service)
    produce(scenario_records(["wood_fire"], seconds=600, seed=11), settings, echo=lambda *_: None)
    StreamWorker(settings).run(idle_stop_s=4)
    guarded = settings.model_copy(update={"api_key": SecretStr("ops-key")})
    port = free_port()
    server = serve(port, [], open_service, settings=guarded)
    other_port = free_port()
    env = {**environment(guarded), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "smoke_platform.cli", "dashboard", "--port", str(other_port)]
    other = ManagedProcess("second dashboard", cmd, tmp_path / "dash.log", env=env).start()
    base = f"http://127.0.0.1:{port}"
    try:
        other.wait_port(other_port, timeout=60)
        [alert] = httpx.get(f"{base}/api/alerts", timeout=30).json()
        quoted = f"{base}/api/alerts/{httpx.URL(alert['alert_id']).raw_path.decode()}"
        # HTTP refuses what is wrong, naming it: no key, unknown verdict, unknown id.
        post = lambda url, body, key="ops-key": httpx.post(  # noqa: E731
            url, json=body, headers={"x-api-key": key}, timeout=30
        )
        assert post(f"{quoted}/ack", {"by": "Ana"}, key="wrong").status_code == 401
        bad = post(f"{quoted}/resolve", {"by": "Ana", "verdict": "maybe"})
        assert bad.status_code == 400 and bad.json()["field"] == "verdict"
        unknown = post(f"{base}/api/alerts/nope/ack", {"by": "Ana"})
        assert unknown.status_code == 404 and unknown.json()["field"] == "alert_id"

        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        assert chromium, "Debian's chromium is required (make test installs it when run as root)"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(base + "/")
            page.fill("#key", "ops-key")
            page.fill("#who", "Ana")
            row = page.locator(f'#handle tr[data-id="{alert["alert_id"]}"]')
            row.get_by_role("button", name="acknowledge").click()
            page.wait_for_function(
                "document.getElementById('handled').textContent.includes('acknowledged')"
            )
            row = page.locator(f'#handle tr[data-id="{alert["alert_id"]}"]')
            row.locator("select").select_option("false_alarm")
            row.locator("input").fill("burnt toast")
            row.get_by_role("button", name="resolve").click()
            page.wait_for_function(
                "document.getElementById('handled').textContent.includes('resolved')"
            )
            browser.close()
        events = read_topic(settings.kafka_bootstrap, settings.verdicts_topic)
        last = json.loads(events[-1].value())
        assert (last["verdict"], last["acknowledged_by"], last["note"]) == (
            "false_alarm", "Ana", "burnt toast",
        )  # fmt: skip
        listed = _smoke(settings, "ls", "--status", "resolved")
        assert alert["alert_id"] in listed.stdout and "false_alarm" in listed.stdout
        seen = httpx.get(f"http://127.0.0.1:{other_port}/api/alerts", timeout=30).json()
        assert [(a["alert_id"], a["status"], a["verdict"]) for a in seen] == [
            (alert["alert_id"], "resolved", "false_alarm")
        ]
    finally:
        other.stop()
        server.shutdown()
        server.server_close()


def test_a_lifecycle_view_follows_the_topics_without_rereading_them(make_settings, open_service):
    import time

    from confluent_kafka import Producer

    from smoke_platform.core.verdicts import resolve
    from streaming.verdicts import LifecycleView, lifecycles, publish

    settings = make_settings(open_service)
    produce(scenario_records(["wood_fire"], seconds=600, seed=11), settings, echo=lambda *_: None)
    StreamWorker(settings).run(idle_stop_s=4)
    view = LifecycleView(settings).start()
    try:
        [alert] = view.snapshot().values()
        assert alert.status == "open" and view.caught_up.is_set()
        stray = Producer(settings.kafka())
        stray.produce(settings.verdicts_topic, key=b"x", value=b"\xff not json")
        stray.produce(settings.verdicts_topic, key=b"y", value=b'{"alert_id": 7}')
        assert stray.flush(10) == 0
        publish(settings, resolve(lifecycles(settings), alert.alert_id, "fire", "Bo", "real"))
        deadline = time.monotonic() + 10
        while view.snapshot()[alert.alert_id].verdict is None and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = view.snapshot()
        assert list(seen) == [alert.alert_id]  # stray events became no lifecycle
        rec = seen[alert.alert_id]
        assert (rec.status, rec.verdict, rec.resolved_by, rec.note) == (
            "resolved",
            "fire",
            "Bo",
            "real",
        )
    finally:
        view.stop()
