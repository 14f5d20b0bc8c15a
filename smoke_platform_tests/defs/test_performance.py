"""Model performance on a small labelled stream equals a hand computation."""

import dagster as dg
import pandas as pd
import pytest

from smoke_platform import modelstore
from smoke_platform.core.scoring import ScoringModel
from smoke_platform.defs.common.resources import (
    ModelStoreResource,
    NotifierResource,
    PlatformSettingsResource,
)
from smoke_platform.defs.monitoring.assets import model_performance_report
from smoke_platform.defs.monitoring.checks import model_performance_report_no_degradation
from smoke_platform.defs.monitoring.sensors import degradation_notifier
from smoke_platform_tests.conftest import assert_html_twin
from streaming.tables import Tables

pytestmark = pytest.mark.dagster


def test_performance_metrics_equal_a_hand_computation(
    tmp_path, webhook, open_service, served_model
):
    # Session a: fire from t=2; alarms at t=1 (false), t=3, t=4. Session b: no fire,
    # one false alarm. The model that scored them: threshold 0.5, no training metrics.
    model = ScoringModel(served_model.pipeline, 0.5, served_model.features)
    version = modelstore.save_model(model, "perf_test_model", metadata={"trained_at": "test"})
    labels = [0, 0, 1, 1, 1, 0, 0, 0, 0]
    probs = [0.1, 0.7, 0.3, 0.8, 0.9, 0.2, 0.6, 0.1, 0.2]
    _stream(tmp_path, ["a"] * 5 + ["b"] * 4, labels, probs, version)
    settings = PlatformSettingsResource(
        stream_dir=str(tmp_path / "processed_stream"),
        reports_dir=str(tmp_path / "r"),
        service_url=open_service,
    )
    instance = dg.DagsterInstance.ephemeral()
    notifier = NotifierResource(webhook_url=webhook.url)
    result = dg.materialize(
        [model_performance_report, model_performance_report_no_degradation],
        resources={
            "settings": settings,
            "model_store": ModelStoreResource(),
            "notifier": notifier,
        },
        instance=instance,
    )
    meta = result.asset_materializations_for_node("model_performance_report")[0].metadata
    tp, fn, fp, tn = 2, 1, 2, 4  # by hand
    assert meta["recall"].value == pytest.approx(tp / (tp + fn))
    assert meta["false_alarm_rate"].value == pytest.approx(fp / (fp + tn))
    assert meta["precision"].value == pytest.approx(tp / (tp + fp))
    assert meta["f1"].value == pytest.approx(2 * tp / (2 * tp + fp + fn))
    text = (tmp_path / "r" / "performance" / "report.md").read_text()
    assert_html_twin(tmp_path / "r" / "performance" / "report.md", charts=1)
    assert "Detection latency: median 1.0 s" in text  # onset t=2, first alarm t=3
    assert "in event time (from the fire's first labelled reading" in text
    assert "compressed" not in text  # readings a second apart, as sensors send them
    # Service health from the running service's own endpoints.
    assert meta["service_ready"].value is True
    assert meta["service_model_version"].value == served_model.version
    assert f"Service {open_service}: ready; serving model {served_model.version}" in text
    # This model has no training metrics: nothing to compare with is a failed check (never
    # a comparison with NaN that passes), and the notifier sensor says so, once.
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "cannot compare" in check.description and "training_recall" in check.description
    assert webhook.posts == []  # the check itself tells no one
    tick = degradation_notifier.evaluate_tick(
        dg.build_sensor_context(instance=instance, resources={"notifier": notifier})
    )
    assert tick.run_requests == [] and "notified" in tick.skip_message
    [post] = webhook.posts
    assert "cannot compare" in post["text"]


def _meta(**figures):
    return {k: dg.MetadataValue.float(v) for k, v in figures.items()}


@pytest.mark.parametrize(
    ("figures", "passed", "said"),
    [
        (
            dict(
                recall=0.9,
                false_alarm_rate=0.01,
                training_recall=0.92,
                training_false_alarm_rate=0.01,
            ),
            True,
            "in line",
        ),
        (
            dict(
                recall=0.8,
                false_alarm_rate=0.01,
                training_recall=0.92,
                training_false_alarm_rate=0.01,
            ),
            False,
            "live recall 0.800",
        ),
        (
            dict(
                recall=0.9,
                false_alarm_rate=0.05,
                training_recall=0.92,
                training_false_alarm_rate=0.01,
            ),
            False,
            "live FAR 0.0500",
        ),
        (
            dict(
                recall=float("nan"),
                false_alarm_rate=0.01,
                training_recall=0.92,
                training_false_alarm_rate=0.01,
            ),
            False,
            "recall missing or NaN",
        ),
        (
            dict(recall=0.9, false_alarm_rate=0.01),
            False,
            "training_recall, training_false_alarm_rate",
        ),
    ],
)
def test_the_degradation_verdict(figures, passed, said):
    from smoke_platform.defs.monitoring.checks import degradation

    verdict, why = degradation(_meta(**figures))
    assert verdict is passed and said in why


def test_a_report_on_a_model_missing_from_the_store_fails_saying_what_to_do(tmp_path):
    """Never a guessed threshold: the model that scored the stream must be in the store."""
    _stream(tmp_path, ["a"] * 3, [0, 1, 1], [0.1, 0.9, 0.9], "smoke_detector:absent")
    settings = PlatformSettingsResource(
        stream_dir=str(tmp_path / "processed_stream"), reports_dir=str(tmp_path / "r")
    )
    result = dg.materialize(
        [model_performance_report],
        resources={"settings": settings, "model_store": ModelStoreResource()},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message
    assert "smoke_detector:absent" in message and "BENTOML_HOME" in message
    assert "smoke materialize" in message


def _stream(tmp_path, sessions, labels, probs, version, period="s"):
    """Worker output for labelled readings at 1 Hz (sensor = session), threshold 0.5."""
    n = len(labels)
    ts = pd.date_range("2026-11-27T10:00:00Z", periods=n, freq=period).map(lambda t: t.isoformat())
    preds = pd.DataFrame(
        {
            "sensor_id": [f"sensor-{s}" for s in sessions],
            "session_id": sessions,
            "ts": ts,
            "fire_alarm": labels,
            "probability": probs,
            "is_fire": [p >= 0.5 for p in probs],
            "model_version": version,
            "scored_by": "service",
            "partition": 0,
            "offset": range(n),
        }
    )
    Tables(tmp_path / "processed_stream").append("predictions", preds)


def test_latencies_of_a_replay_stamped_as_sent_are_said_to_be_compressed(tmp_path):
    """`make demo` replays at 30x and stamps each reading as it is sent: the report says
    its latencies are that much shorter than a sensor's, from the readings' spacing."""
    from smoke_platform.reports.performance import write_performance_report
    from streaming.tables import read_outputs

    labels = [0, 0, 1, 1, 1, 1, 1, 0]
    probs = [0.1, 0.1, 0.2, 0.3, 0.9, 0.9, 0.9, 0.1]
    _stream(tmp_path, ["a"] * 8, labels, probs, "perf_test_model:v1", period="40ms")
    preds = read_outputs(tmp_path / "processed_stream", "predictions")
    path, _ = write_performance_report(preds, 0.5, {}, tmp_path / "r")
    text = path.read_text()
    assert "Detection latency: median 0.1 s" in text  # 2 readings after the onset
    assert "0.04 s apart" in text and "about 25x faster than real time" in text
